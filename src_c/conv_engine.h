/* Training (a chunk of mini-batches in one OpenMP team) and inference, written
 * once for REAL = float/double (included twice by convnet.c).
 *
 * Parallel scheme of one mini-batch of m examples (train_batch), phase by
 * phase. Every phase is an `omp for nowait` with a static schedule (dynamic
 * for the sparse dense layers) over work items that do not depend on the
 * thread count, ended by the team's barrier
 * (nf_runtime.h), and every reduction runs in a fixed order, so the results
 * are bitwise the same for 1 and N threads. The static schedule gives every
 * thread the same items in every loop of the same length: with two threads,
 * the owner of a filter group of the first conv layer owns the rows of the
 * next dense layer its outputs feed, so they never move between cores.
 *
 *  1. conv_forward_groups (the first conv layer, by filter group and image;
 *     conv_direct.h's kernels for one-channel float32 images) and
 *     conv_forward_bands (other conv layers, by image and band of rows);
 *  2. dense_forward, per dense layer, by blocks of input rows;
 *  3. softmax_delta, privately in every thread;
 *  4. dense_backward, per dense layer from the top, by the same row blocks;
 *  5. conv_backward_groups (the first conv layer), or conv_backward_bands
 *     then conv_backward_images (other conv layers), from the top conv layer;
 *  6. conv_update_groups (the first conv layer) or conv_update_tiles.
 */

#ifndef NF_GW_SLICE
#define NF_GW_SLICE 192
#endif
#ifndef NF_GW_ROWS
#define NF_GW_ROWS 128
#endif

typedef struct {
    REAL *col, *z, *pm, *a, *delta, *gwp, *gbp;   /* conv */
    REAL *dcol, *dzt;     /* conv, banded: W^T·dz (l > 0) and dz transposed (P, F) */
    REAL *xd, *mask, *part;                       /* dense */
    int block, n_blocks;                          /* dense: rows per block */
    int sparse;           /* dense: products by sparse_layer.h (inputs mostly zeros) */
    int n_parts;                                  /* conv: parts of each image */
    int n_groups;                                 /* first conv layer: filter groups */
    int direct;           /* first conv layer by conv_direct.h: col holds per thread */
    int pw_pad;           /* a padded image (xp_len) and a group's dz (dz_len); z */
    size_t xp_len, dz_len;   /* positions pw_pad apart per filter */
} SFX(nf_buf);

#define NF_GEMM(net) (SFX_GEMM(net))

static int SFX(alloc_all)(REAL **p, size_t n, int *ok)
{
    *p = NULL;
    if (n == 0)
        return 1;
    *p = (REAL *)malloc(n * sizeof(REAL));
    if (!*p)
        *ok = 0;
    return *ok;
}

static void SFX(free_bufs)(SFX(nf_buf) *B, int L)
{
    for (int l = 0; l < L; l++) {
        free(B[l].col); free(B[l].z); free(B[l].pm); free(B[l].a); free(B[l].delta);
        free(B[l].gwp); free(B[l].gbp); free(B[l].dcol); free(B[l].dzt);
        free(B[l].xd); free(B[l].mask); free(B[l].part);
    }
}

/* Conv layer forward of filters f0 .. f0+nf-1 for pooled rows oy0..oy1 of one
 * image: im2col of those rows into col, z = W·col, max-pool, act(pooled + b)
 * (the last band, oy1 == ho, also covers the ignored border rows). */
static void SFX(conv_forward_image)(const nf_net *net, const nf_layer *ly, const REAL *in,
                                    REAL *col, REAL *z, REAL *pm, REAL *a, int f0, int nf,
                                    int oy0, int oy1)
{
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc, Q = ly->ho * ly->wo;
    const int y0 = oy0 * ly->ph, y1 = oy1 == ly->ho ? ly->hc : oy1 * ly->ph;
    const int c0 = y0 * ly->wc, c1 = y1 * ly->wc;
    const REAL *w = (const REAL *)ly->w + (size_t)f0 * K, *b = (const REAL *)ly->b;
#if NF_DIRECT
    if (NF_DIRECT_NARROW(ly) && nf_ck->im2col_narrow)
        nf_ck->im2col_narrow(in, col, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw, y0, y1);
    else
#endif
        SFX(im2col_rows)(in, col, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw, y0, y1);
    NF_GEMM(net)(0, 0, nf, c1 - c0, K, (REAL)1, w, K, col + c0, P, (REAL)0,
                 z + (size_t)f0 * P + c0, P);
    NF_K(pool_max)(z + (size_t)f0 * P, pm + (size_t)f0 * Q, nf, ly->hc, ly->wc, ly->ph, ly->pw,
                   oy0, oy1, ly->wc, (size_t)P);
    for (int f = f0; f < f0 + nf; f++)
        NF_K(act_rows)(ly->act, pm + (size_t)f * Q + oy0 * ly->wo, b[f],
                       a + (size_t)f * Q + oy0 * ly->wo, (oy1 - oy0) * ly->wo);
}

#if NF_DIRECT
/* Filters g·F/G .. (g+1)·F/G - 1 of the first conv layer on one image by the
 * direct kernels (conv_direct.h): z in wide layout. */
static void SFX(conv_group_forward_direct)(const nf_layer *ly, const REAL *in, REAL *xp,
                                           REAL *z, REAL *pm, REAL *a, int g, int G, int pw_pad)
{
    const int K = ly->kh * ly->kw, F = ly->n_filt, Q = ly->ho * ly->wo, FG = F / G, f0 = g * FG;
    const REAL *b = (const REAL *)ly->b;
    memcpy(xp, in, (size_t)ly->h_in * ly->w_in * sizeof(REAL));
    nf_ck->direct_fwd(xp, ly->w_in, ly->kh, ly->kw, (const REAL *)ly->w + (size_t)f0 * K, FG,
                      z + (size_t)f0 * pw_pad, pw_pad);
    if (NF_DIRECT_POOL2(ly) && nf_ck->pool2)
        nf_ck->pool2(z + (size_t)f0 * pw_pad, pm + (size_t)f0 * Q, FG, ly->ho, ly->wo, ly->w_in,
                     pw_pad);
    else
        NF_K(pool_max)(z + (size_t)f0 * pw_pad, pm + (size_t)f0 * Q, FG, ly->hc, ly->wc,
                       ly->ph, ly->pw, 0, ly->ho, ly->w_in, (size_t)pw_pad);
    for (int f = f0; f < f0 + FG; f++)
        NF_K(act_rows)(ly->act, pm + (size_t)f * Q, b[f], a + (size_t)f * Q, Q);
}
#endif

/* Finish a dense layer's outputs for columns j0..j1 of its m examples: the sum
 * of its blocks' partial products (in block order), + b, act. */
static void SFX(dense_finish)(const nf_layer *pl, const SFX(nf_buf) *pbuf, int m, int j0, int j1)
{
    const int n = pl->n_out;
    const REAL *b = (const REAL *)pl->b;
    for (int i = 0; i < m; i++) {
        REAL *ai = pbuf->a + (size_t)i * n;
        SFX(sum_parts)(pbuf->part + (size_t)i * n + j0, (size_t)m * n, pbuf->n_blocks, j1 - j0,
                       ai + j0);
        SFX(act_bias)(pl->act, ai + j0, b + j0, j1 - j0);
    }
}

/* ------------------------------------------------------------ training */

/* The buffers of conv layer l for mini-batches of m (nt threads); *ok = 0 when
 * memory ran out. */
static void SFX(alloc_conv)(const nf_layer *ly, int l, int m, int nt, SFX(nf_buf) *b, int *ok)
{
    const size_t K = (size_t)ly->c_in * ly->kh * ly->kw, P = (size_t)ly->hc * ly->wc;
    size_t col_len = m * K * P, z_len = (size_t)m * ly->n_filt * P;
    b->n_parts = nf_conv_parts(ly);
    b->n_groups = l == 0 ? nf_conv_groups(ly) : 1;
#if NF_DIRECT
    b->direct = b->n_groups > 1 && ly->c_in == 1 && K <= NF_DIRECT_MAX_TAPS;
#endif
    if (b->direct) {   /* one padded image per thread; z in wide layout */
        b->pw_pad = nf_direct_pw_pad(ly->hc, ly->w_in);
        b->xp_len = nf_direct_xp_len(ly->hc, ly->w_in, ly->kh, ly->kw);
        b->dz_len = (size_t)(ly->n_filt / b->n_groups) * b->pw_pad + 32;
        col_len = (size_t)nt * (b->xp_len + b->dz_len);
        z_len = (size_t)m * ly->n_filt * b->pw_pad;
    } else if (b->n_groups > 1) {   /* a copy of each image's columns per group */
        col_len = (size_t)b->n_groups * m * K * P;
    }
    SFX(alloc_all)(&b->col, col_len, ok);
    SFX(alloc_all)(&b->z, z_len, ok);
    if (*ok && b->direct)   /* the padding of the images stays zero */
        memset(b->col, 0, col_len * sizeof(REAL));
    SFX(alloc_all)(&b->pm, (size_t)m * ly->n_out, ok);
    SFX(alloc_all)(&b->a, (size_t)m * ly->n_out, ok);
    SFX(alloc_all)(&b->delta, (size_t)m * ly->n_out, ok);
    /* filter gradients: per (group, image) (F, K), or per image (banded path;
     * transposed, (K, F)) */
    SFX(alloc_all)(&b->gwp, (size_t)m * ly->n_filt * K, ok);
    if (b->n_groups == 1)
        SFX(alloc_all)(&b->dzt, (size_t)m * P * ly->n_filt, ok);
    if (l > 0)
        SFX(alloc_all)(&b->dcol, m * K * P, ok);
    SFX(alloc_all)(&b->gbp, (size_t)m * b->n_parts * ly->n_filt, ok);
}

/* The buffers of dense layer l (of L) for mini-batches of m; *ok = 0 when memory
 * ran out. */
static void SFX(alloc_dense)(const nf_layer *ly, int l, int L, int m, SFX(nf_buf) *b, int *ok)
{
    b->block = nf_dense_block(ly->n_in, ly->n_out, m);
    b->n_blocks = (ly->n_in + b->block - 1) / b->block;
    SFX(alloc_all)(&b->part, (size_t)b->n_blocks * m * ly->n_out, ok);
    if (ly->p_dropout > 0) {
        SFX(alloc_all)(&b->xd, (size_t)m * ly->n_in, ok);
        SFX(alloc_all)(&b->mask, (size_t)m * ly->n_in, ok);
    }
    if (l < L - 1) {
        SFX(alloc_all)(&b->a, (size_t)m * ly->n_out, ok);
        SFX(alloc_all)(&b->delta, (size_t)m * ly->n_out, ok);
    }
}

/* One thread's view of a training call: the network and its buffers, the
 * mini-batch in hand, this thread's private scratch and the team's barrier. */
typedef struct {
    const nf_net *net;
    SFX(nf_buf) *B;
    int m, tid;
    double eta, reg;
    const REAL *xb;             /* the batch: inputs (m, n_in of layer 0), labels */
    const int64_t *yb;
    int64_t step;               /* its step number (dropout) */
    REAL *dz, *zs, *ps;         /* private: dz (m, max_out), logits, probabilities */
    int *ks;                    /* private: sparse_layer.h's scratch, ks and vs */
    REAL *vs;
    nf_barrier *bar;
    int sense;
} SFX(nf_ctx);

/* Phase 1, the first conv layer by (filter group, image), when its filters
 * split in two (nf_conv_groups): by conv_direct.h's kernels where b->direct
 * (each thread pads the image into its own scratch), else by im2col into the
 * item's own copy of the image's columns. Ends at a barrier. */
static void SFX(conv_forward_groups)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const SFX(nf_buf) *b = &c->B[l];
    const int G = b->n_groups, m = c->m, n_in0 = c->net->layers[0].n_in;
    const size_t K = (size_t)ly->c_in * ly->kh * ly->kw, P = (size_t)ly->hc * ly->wc;
#pragma omp for schedule(static) nowait
    for (int t = 0; t < G * m; t++) {
        const int i = t % m;
        const REAL *in = c->xb + (size_t)i * n_in0;
        REAL *pm = b->pm + (size_t)i * ly->n_out, *a = b->a + (size_t)i * ly->n_out;
#if NF_DIRECT
        if (b->direct) {
            REAL *xp = b->col + (size_t)c->tid * (b->xp_len + b->dz_len);
            SFX(conv_group_forward_direct)(ly, in, xp, b->z + (size_t)i * ly->n_filt * b->pw_pad,
                                           pm, a, t / m, G, b->pw_pad);
            continue;
        }
#endif
        SFX(conv_forward_image)(c->net, ly, in, b->col + (size_t)t * K * P,
                                b->z + (size_t)i * ly->n_filt * P, pm, a, t / m * (ly->n_filt / G),
                                ly->n_filt / G, 0, ly->ho);
    }
    NF_BARRIER(c);
}

/* Phase 1, any other conv layer by (image, part): a part is a band of pooled
 * rows (nf_conv_parts), whose im2col, product, pooling and activation it
 * computes. Ends at a barrier. */
static void SFX(conv_forward_bands)(SFX(nf_ctx) *c, int l)
{
    const nf_net *net = c->net;
    const nf_layer *ly = &net->layers[l];
    const SFX(nf_buf) *b = &c->B[l];
    const int np = b->n_parts, n_in0 = net->layers[0].n_in;
    const size_t K = (size_t)ly->c_in * ly->kh * ly->kw, P = (size_t)ly->hc * ly->wc;
#pragma omp for schedule(static) nowait
    for (int t = 0; t < c->m * np; t++) {
        const int i = t / np, q = t % np;
        const REAL *in = l == 0 ? c->xb + (size_t)i * n_in0 : c->B[l - 1].a + (size_t)i * ly->n_in;
        SFX(conv_forward_image)(net, ly, in, b->col + i * K * P, b->z + i * ly->n_filt * P,
                                b->pm + (size_t)i * ly->n_out, b->a + (size_t)i * ly->n_out, 0,
                                ly->n_filt, q * ly->ho / np, (q + 1) * ly->ho / np);
    }
    NF_BARRIER(c);
}

/* Phase 2, dense layer l by blocks of its input rows r0..r1: finish the
 * previous dense layer's outputs for columns r0..r1 (its partial products
 * summed in block order, + b, act), dropout, then this block's partial product
 * x[:, r0:r1]·W[r0:r1, :] (by sparse_layer.h where the inputs are mostly
 * zeros: then the blocks' work is uneven, and they go to whichever thread is
 * free; a block's result is the same whoever computes it). With few blocks
 * (the softmax after a hidden layer) finishing inside them would leave the
 * other threads idle: the previous layer is then finished first, in column
 * chunks (same sums, same order), behind a barrier of its own. Ends at a
 * barrier. */
static void SFX(dense_forward_block)(SFX(nf_ctx) *c, int l, int blk, int finish)
{
    const nf_net *net = c->net;
    const nf_layer *ly = &net->layers[l];
    SFX(nf_buf) *B = c->B;
    const int n_in = ly->n_in, n_out = ly->n_out, m = c->m;
    const int r0 = blk * B[l].block;
    const int r1 = r0 + B[l].block < n_in ? r0 + B[l].block : n_in;
    const REAL *src = l == 0 ? c->xb : B[l - 1].a;
    const REAL *w = (const REAL *)ly->w;
    if (finish)   /* the previous layer's columns r0..r1 */
        SFX(dense_finish)(&net->layers[l - 1], &B[l - 1], m, r0, r1);
    if (ly->p_dropout > 0) {
        NF_K(dropout_rows)(net->dropout_seed, l, c->step, ly->p_dropout, m, n_in, r0, r1, src,
                           B[l].mask, B[l].xd);
        src = B[l].xd;
    }
    if (B[l].sparse)
        NF_K(sp_forward)(m, n_in, r0, r1, src, w, n_out, B[l].part + (size_t)blk * m * n_out,
                         c->ks, c->vs);
    else
        NF_GEMM(net)(0, 0, m, n_out, r1 - r0, (REAL)1, src + r0, n_in, w + (size_t)r0 * n_out,
                     n_out, (REAL)0, B[l].part + (size_t)blk * m * n_out, n_out);
}

static void SFX(dense_forward)(SFX(nf_ctx) *c, int l)
{
    const nf_net *net = c->net;
    SFX(nf_buf) *B = c->B;
    const int n_in = net->layers[l].n_in, nb = B[l].n_blocks, m = c->m;
    const int NC = net->n_conv, finish_apart = l > NC && nb < 4;
    if (finish_apart) {
        const int n_chunks = (n_in + 15) / 16;
#pragma omp for schedule(static) nowait
        for (int ch = 0; ch < n_chunks; ch++)
            SFX(dense_finish)(&net->layers[l - 1], &B[l - 1], m, ch * 16,
                              ch * 16 + 16 < n_in ? ch * 16 + 16 : n_in);
        NF_BARRIER(c);
    }
    if (B[l].sparse) {   /* blocks of uneven work (their nonzeros): first come, first served */
#pragma omp for schedule(dynamic, 1) nowait
        for (int blk = 0; blk < nb; blk++)
            SFX(dense_forward_block)(c, l, blk, l > NC && !finish_apart);
    } else {
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < nb; blk++)
            SFX(dense_forward_block)(c, l, blk, l > NC && !finish_apart);
    }
    NF_BARRIER(c);
}

/* Phase 3, privately in every thread: the last layer's partial products
 * summed, + b, softmax, and its delta dz. Ends at a barrier: everyone has
 * read the softmax bias before its owner updates it. */
static void SFX(softmax_delta)(SFX(nf_ctx) *c)
{
    const int L = c->net->n_layers, m = c->m;
    const nf_layer *last = &c->net->layers[L - 1];
    const int n_cls = last->n_out;
    const REAL *lb = (const REAL *)last->b;
    SFX(sum_parts)(c->B[L - 1].part, (size_t)m * n_cls, c->B[L - 1].n_blocks, m * n_cls, c->zs);
    for (int i = 0; i < m; i++)
        SFX(act_bias)(NF_LINEAR, c->zs + (size_t)i * n_cls, lb, n_cls);
    SFX(nf_softmax_nll)(c->zs, c->yb, c->ps, c->dz, m, n_cls);
    NF_BARRIER(c);
}

/* Phase 4, dense layer l (from the top) by the same row blocks as its forward:
 * dx[:, r0:r1] = dz·W[r0:r1]^T (old weights), then W[r0:r1] ←
 * (1 − η·reg)·W[r0:r1] − η·x[:, r0:r1]^T·dz (sparse_layer.h's products, in
 * any thread, as in phase 2); the bias by block 0's owner. A block's rows of W
 * are read and written by its own thread only, so no one updates what another
 * still reads. Every thread first forms this layer's dz privately. Ends at a
 * barrier. */
static void SFX(dense_backward_block)(SFX(nf_ctx) *c, int l, int blk)
{
    const nf_net *net = c->net;
    const nf_layer *ly = &net->layers[l];
    SFX(nf_buf) *B = c->B;
    const int n_in = ly->n_in, n_out = ly->n_out, m = c->m;
    const int r0 = blk * B[l].block;
    const int r1 = r0 + B[l].block < n_in ? r0 + B[l].block : n_in;
    REAL *w = (REAL *)ly->w, *dz = c->dz;
    const REAL *xin = ly->p_dropout > 0 ? B[l].xd : (l == 0 ? c->xb : B[l - 1].a);
    REAL *din = l > 0 ? B[l - 1].delta : NULL;
    const REAL alpha = (REAL)(-c->eta), beta = (REAL)(1.0 - c->eta * c->reg);
    if (B[l].sparse) {
        /* din only where the layer below needs it: where its activation's
         * derivative can be nonzero (ReLU and sigmoid have none where they are
         * 0) and its input was kept */
        const int below = l > 0 ? net->layers[l - 1].act : NF_LINEAR;
        const REAL *need = below == NF_RELU || below == NF_SIGMOID ? xin
                           : ly->p_dropout > 0 ? B[l].mask : NULL;
        NF_K(sp_backward)(m, n_in, r0, r1, xin, need, dz, w, n_out, din, alpha, beta, c->ks,
                          c->vs);
    } else {
        if (din) {
            NF_GEMM(net)(0, 1, m, r1 - r0, n_out, (REAL)1, dz, n_out, w + (size_t)r0 * n_out,
                         n_out, (REAL)0, din + r0, n_in);
            if (ly->p_dropout > 0)
                for (int i = 0; i < m; i++)
                    for (int j = r0; j < r1; j++)
                        din[(size_t)i * n_in + j] *= B[l].mask[(size_t)i * n_in + j];
        }
        NF_GEMM(net)(1, 0, r1 - r0, n_out, m, alpha, xin + r0, n_in, dz, n_out, beta,
                     w + (size_t)r0 * n_out, n_out);
    }
    if (blk == 0) {
        REAL *b = (REAL *)ly->b;
        for (int j = 0; j < n_out; j++) {
            REAL s = 0;
            for (int i = 0; i < m; i++)
                s += dz[(size_t)i * n_out + j];
            b[j] -= (REAL)c->eta * s;
        }
    }
}

static void SFX(dense_backward)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    SFX(nf_buf) *B = c->B;
    const int nb = B[l].n_blocks;
    if (l < c->net->n_layers - 1)
        SFX(times_act_prime)(ly->act, B[l].a, B[l].delta, c->dz, c->m * ly->n_out);
    if (B[l].sparse) {
#pragma omp for schedule(dynamic, 1) nowait
        for (int blk = 0; blk < nb; blk++)
            SFX(dense_backward_block)(c, l, blk);
    } else {
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < nb; blk++)
            SFX(dense_backward_block)(c, l, blk);
    }
    NF_BARRIER(c);
}

/* Phase 5, the first conv layer by (filter group, image), with no input
 * gradient below it: deltas through the activation and the bias gradient, the
 * pool gradient, and the group's filter gradient. By conv_direct.h's kernels
 * where b->direct (the pool gradient into this thread's scratch, the filter
 * gradient straight from the image, padded again into the scratch), else
 * dz·col^T by slices of NF_GW_SLICE positions. Ends at a barrier. */
static void SFX(conv_backward_groups)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const SFX(nf_buf) *b = &c->B[l];
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc;
    const int F = ly->n_filt, Q = ly->ho * ly->wo, G = b->n_groups, FG = F / G, m = c->m;
#pragma omp for schedule(static) nowait
    for (int t = 0; t < G * m; t++) {
        const int i = t % m, f0 = t / m * FG;
        REAL *gi = b->delta + (size_t)i * ly->n_out + (size_t)f0 * Q;
        const REAL *pi = b->pm + (size_t)i * ly->n_out + (size_t)f0 * Q;
        REAL *gw = b->gwp + (size_t)t * FG * K;
        SFX(pooled_deltas)(ly->act, b->a + (size_t)i * ly->n_out + (size_t)f0 * Q, gi, FG, Q, 0,
                           Q, b->gbp + (size_t)t * FG);
#if NF_DIRECT
        if (b->direct) {
            const int pwp = b->pw_pad, n_in0 = c->net->layers[0].n_in;
            REAL *xp = b->col + (size_t)c->tid * (b->xp_len + b->dz_len), *dzi = xp + b->xp_len;
            const REAL *zi = b->z + ((size_t)i * F + f0) * pwp;
            if (NF_DIRECT_POOL2(ly) && nf_ck->pool2_grad)
                nf_ck->pool2_grad(zi, pi, gi, dzi, FG, ly->ho, ly->wo, ly->w_in, pwp);
            else
                NF_K(pool_max_grad)(zi, pi, gi, dzi, FG, ly->hc, ly->wc, ly->ph, ly->pw, 0,
                                    ly->ho, ly->w_in, (size_t)pwp);
            memcpy(xp, c->xb + (size_t)i * n_in0, (size_t)n_in0 * sizeof(REAL));
            nf_ck->direct_gw(xp, ly->w_in, ly->kh, ly->kw, dzi, FG, pwp, gw);
            continue;
        }
#endif
        REAL *zi = b->z + (size_t)i * F * P + (size_t)f0 * P;
        const REAL *col = b->col + (size_t)t * K * P;
        NF_K(pool_max_grad)(zi, pi, gi, zi, FG, ly->hc, ly->wc, ly->ph, ly->pw, 0, ly->ho,
                            ly->wc, (size_t)P);
        for (int p0 = 0; p0 < P; p0 += NF_GW_SLICE) {
            const int ns = P - p0 < NF_GW_SLICE ? P - p0 : NF_GW_SLICE;
            NF_GEMM(c->net)(0, 1, FG, K, ns, (REAL)1, zi + p0, P, col + p0, P, (REAL)(p0 > 0),
                            gw, K);
        }
    }
    NF_BARRIER(c);
}

/* Phase 5a, any other conv layer by (image, part): deltas and the part's bias
 * gradient, the pool gradient of its band, the band's dz transposed (for the
 * filter gradient) and, above the first layer, dcol = W^T·dz. Ends at a
 * barrier (5b reads whole images). */
static void SFX(conv_backward_bands)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const SFX(nf_buf) *b = &c->B[l];
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc;
    const int F = ly->n_filt, Q = ly->ho * ly->wo, np = b->n_parts;
#pragma omp for schedule(static) nowait
    for (int t = 0; t < c->m * np; t++) {
        const int i = t / np, q = t % np;
        const int oy0 = q * ly->ho / np, oy1 = (q + 1) * ly->ho / np;
        const int y0 = oy0 * ly->ph, y1 = oy1 == ly->ho ? ly->hc : oy1 * ly->ph;
        const int c0 = y0 * ly->wc, c1 = y1 * ly->wc;
        REAL *zi = b->z + (size_t)i * F * P, *g = b->delta + (size_t)i * ly->n_out;
        REAL *dt = b->dzt + (size_t)i * P * F;
        SFX(pooled_deltas)(ly->act, b->a + (size_t)i * ly->n_out, g, F, Q, oy0 * ly->wo,
                           (oy1 - oy0) * ly->wo, b->gbp + (size_t)t * F);
        NF_K(pool_max_grad)(zi, b->pm + (size_t)i * ly->n_out, g, zi, F, ly->hc, ly->wc, ly->ph,
                            ly->pw, oy0, oy1, ly->wc, (size_t)P);
        for (int p = c0; p < c1; p++)
            for (int f = 0; f < F; f++)
                dt[(size_t)p * F + f] = zi[(size_t)f * P + p];
        if (l > 0)   /* dcol = W^T dz */
            NF_GEMM(c->net)(1, 0, K, c1 - c0, F, (REAL)1, (const REAL *)ly->w, K, zi + c0, P,
                            (REAL)0, b->dcol + (size_t)i * K * P + c0, P);
    }
    NF_BARRIER(c);
}

/* Phase 5b, the same layer per image: the filter gradient, transposed (gw^T =
 * col·dz^T: a product whose operands are not both laid out along the sum,
 * which OpenBLAS's small-matrix kernels take), by chunks of NF_GW_ROWS of its
 * K rows, and the input gradient's col2im (bands overlap there). One partial
 * filter gradient per image, not per part: the update reads a fraction as
 * much. Ends at a barrier. */
static void SFX(conv_backward_images)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const SFX(nf_buf) *b = &c->B[l];
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc, F = ly->n_filt;
    const int nkc = (K + NF_GW_ROWS - 1) / NF_GW_ROWS, per = nkc + (l > 0);
#pragma omp for schedule(static) nowait
    for (int t = 0; t < c->m * per; t++) {
        const int i = t / per, ch = t % per;
        if (ch == nkc) {
            const REAL *dc = b->dcol + (size_t)i * K * P;
            REAL *dx = c->B[l - 1].delta + (size_t)i * ly->n_in;
#if NF_DIRECT
            if (NF_DIRECT_NARROW(ly) && nf_ck->col2im_narrow)
                nf_ck->col2im_narrow(dc, dx, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw);
            else
#endif
                SFX(col2im)(dc, dx, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw);
            continue;
        }
        const int k0 = ch * NF_GW_ROWS, kn = K - k0 < NF_GW_ROWS ? K - k0 : NF_GW_ROWS;
        const REAL *dt = b->dzt + (size_t)i * P * F;
        const REAL *col = b->col + (size_t)i * K * P + (size_t)k0 * P;
        REAL *gwt = b->gwp + (size_t)i * F * K + (size_t)k0 * F;
        for (int p0 = 0; p0 < P; p0 += NF_GW_SLICE) {
            const int ns = P - p0 < NF_GW_SLICE ? P - p0 : NF_GW_SLICE;
            NF_GEMM(c->net)(0, 0, kn, F, ns, (REAL)1, col + p0, P, dt + (size_t)p0 * F, F,
                            (REAL)(p0 > 0), gwt, F);
        }
    }
    NF_BARRIER(c);
}

/* Phase 6, the first conv layer's update by chunks of 64 weights of a filter
 * group, summing the partial gradients t = (group, image) in image order; one
 * more item updates the biases. Ends at a barrier. */
static void SFX(conv_update_groups)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const int F = ly->n_filt, K = ly->c_in * ly->kh * ly->kw, m = c->m;
    const int G = c->B[l].n_groups, FG = F / G, gc = (FG * K + 63) / 64;  /* chunks a group */
    REAL *w = (REAL *)ly->w, *b = (REAL *)ly->b;
    const REAL *gwp = c->B[l].gwp, *gbp = c->B[l].gbp;
    const double eta = c->eta, reg = c->reg;
#pragma omp for schedule(static) nowait
    for (int ch = 0; ch <= G * gc; ch++) {
        if (ch < G * gc) {
            REAL s[64];
            const int g = ch / gc, e0 = (ch % gc) * 64;
            const int n = FG * K - e0 < 64 ? FG * K - e0 : 64;
            REAL *wg = w + (size_t)g * FG * K + e0;
            SFX(sum_parts)(gwp + (size_t)g * m * FG * K + e0, (size_t)FG * K, m, n, s);
            for (int j = 0; j < n; j++)
                wg[j] -= (REAL)eta * (s[j] + (REAL)reg * wg[j]);
        } else {
            for (int f = 0; f < F; f++) {
                const REAL *pb = gbp + (size_t)(f / FG) * m * FG + f % FG;
                REAL s = pb[0];
                for (int i = 1; i < m; i++)
                    s += pb[(size_t)i * FG];
                b[f] -= (REAL)eta * s;
            }
        }
    }
    NF_BARRIER(c);
}

/* Phase 6, any other conv layer's update: the per-image partials are (K, F),
 * summed in image order by tiles of 16 x 16 (k, f), row by row, and written
 * back to w (F, K) a 16-weight run per filter; one more item sums the biases
 * in (image, part) order. Ends at a barrier. */
static void SFX(conv_update_tiles)(SFX(nf_ctx) *c, int l)
{
    const nf_layer *ly = &c->net->layers[l];
    const int F = ly->n_filt, K = ly->c_in * ly->kh * ly->kw, m = c->m;
    const int tk = (K + 15) / 16, tf = (F + 15) / 16, n_bpart = m * c->B[l].n_parts;
    REAL *w = (REAL *)ly->w, *b = (REAL *)ly->b;
    const REAL *gwp = c->B[l].gwp, *gbp = c->B[l].gbp;
    const double eta = c->eta, reg = c->reg;
#pragma omp for schedule(static) nowait
    for (int ch = 0; ch <= tk * tf; ch++) {
        if (ch < tk * tf) {
            REAL s[16][16];
            const int k0 = ch / tf * 16, f0 = ch % tf * 16;
            const int kn = K - k0 < 16 ? K - k0 : 16, fn = F - f0 < 16 ? F - f0 : 16;
            for (int kk = 0; kk < kn; kk++)
                SFX(sum_parts)(gwp + (size_t)(k0 + kk) * F + f0, (size_t)F * K, m, fn, s[kk]);
            for (int ff = 0; ff < fn; ff++) {
                REAL *wf = w + (size_t)(f0 + ff) * K + k0;
                for (int kk = 0; kk < kn; kk++)
                    wf[kk] -= (REAL)eta * (s[kk][ff] + (REAL)reg * wf[kk]);
            }
        } else {
            for (int f = 0; f < F; f++) {
                REAL s = gbp[f];
                for (int t = 1; t < n_bpart; t++)
                    s += gbp[(size_t)t * F + f];
                b[f] -= (REAL)eta * s;
            }
        }
    }
    NF_BARRIER(c);
}

/* One mini-batch, phase by phase (see the scheme at the top of this file). */
static void SFX(train_batch)(SFX(nf_ctx) *c)
{
    const int L = c->net->n_layers, NC = c->net->n_conv;
    for (int l = 0; l < NC; l++) {
        if (c->B[l].n_groups > 1)
            SFX(conv_forward_groups)(c, l);
        else
            SFX(conv_forward_bands)(c, l);
    }
    for (int l = NC; l < L; l++)
        SFX(dense_forward)(c, l);
    SFX(softmax_delta)(c);
    for (int l = L - 1; l >= NC; l--)
        SFX(dense_backward)(c, l);
    for (int l = NC - 1; l >= 0; l--) {
        if (c->B[l].n_groups > 1) {
            SFX(conv_backward_groups)(c, l);
            continue;
        }
        SFX(conv_backward_bands)(c, l);
        SFX(conv_backward_images)(c, l);
    }
    for (int l = 0; l < NC; l++) {
        if (c->B[l].n_groups > 1)
            SFX(conv_update_groups)(c, l);
        else
            SFX(conv_update_tiles)(c, l);
    }
}

int SFX(nf_train)(const nf_net *net, const REAL *x, const int64_t *y, int64_t n_batches,
                  int m, double eta, double reg, int64_t first_step)
{
    const int L = net->n_layers, nt = net->n_threads > 0 ? net->n_threads : 1;
    const int n_in0 = net->layers[0].n_in, n_cls = net->layers[L - 1].n_out;
    SFX(nf_buf) B[NF_MAX_LAYERS];
    int ok = 1, max_out = 1;
    size_t n_scr = 1;
    REAL *priv = NULL;
    int *ks = NULL;
    size_t priv_size;
    nf_barrier bar;

    memset(B, 0, sizeof(B));
    for (int l = 0; l < L; l++) {
        const nf_layer *ly = &net->layers[l];
        if (ly->kind == NF_CONV) {
            SFX(alloc_conv)(ly, l, m, nt, &B[l], &ok);
            continue;
        }
        SFX(alloc_dense)(ly, l, L, m, &B[l], &ok);
        B[l].sparse = nf_sparse_layer(net, l);
        if (ly->n_out > max_out)
            max_out = ly->n_out;
        if (NF_SP_SCRATCH(m, B[l].block) > n_scr)
            n_scr = NF_SP_SCRATCH(m, B[l].block);
    }
    /* per thread: dz (m, max_out), softmax logits and probabilities (m, n_cls),
     * the sparse products' values (n_scr) */
    priv_size = (size_t)m * max_out + 2 * (size_t)m * n_cls + n_scr;
    SFX(alloc_all)(&priv, priv_size * nt, &ok);
    ks = (int *)malloc(sizeof(int) * n_scr * nt);
    if (!ks)
        ok = 0;
    if (ok) {
#pragma omp parallel num_threads(nt) shared(bar)
        {
            SFX(nf_ctx) c = {net, B, m, nf_thread_num(), eta, reg, NULL, NULL, 0,
                             NULL, NULL, NULL, NULL, NULL, &bar, 0};
            c.dz = priv + priv_size * c.tid;
            c.zs = c.dz + (size_t)m * max_out;
            c.ps = c.zs + (size_t)m * n_cls;
            c.vs = c.ps + (size_t)m * n_cls;
            c.ks = ks + n_scr * c.tid;
#pragma omp single
            nf_barrier_init(&bar, nf_num_threads(), NF_CONV_SPINS);
            for (int64_t batch = 0; batch < n_batches; batch++) {
                c.xb = x + (size_t)batch * m * n_in0;
                c.yb = y + (size_t)batch * m;
                c.step = first_step + batch;
                SFX(train_batch)(&c);
            }
        }
    }
    SFX(free_bufs)(B, L);
    free(priv);
    free(ks);
    return ok ? 0 : -1;
}

/* Inference: chunks of NF_CHUNK images, each chunk through the whole network by
 * one thread (conv per image, dense layers as one GEMM per chunk). */
#ifndef NF_CHUNK
#define NF_CHUNK 64
#endif

/* One chunk of cnt images through every layer: each image through the conv
 * layers on its own (col, z and pm: one image's im2col, pre-pooling and pooled
 * scratch), then the whole chunk through each dense layer as one product with
 * the book's (1 - p_dropout) scaling. Layer l's outputs go to outs + off[l], the
 * last layer's (the softmax probabilities) to out. */
static void SFX(predict_chunk)(const nf_net *net, const size_t *off, REAL *col, REAL *z,
                               REAL *pm, REAL *outs, const REAL *xc, int cnt, REAL *out)
{
    const int L = net->n_layers, NC = net->n_conv, n_in0 = net->layers[0].n_in;
    for (int i = 0; i < cnt; i++) {
        const REAL *in = xc + (size_t)i * n_in0;
        for (int l = 0; l < NC; l++) {
            const nf_layer *ly = &net->layers[l];
            REAL *a = outs + off[l] + (size_t)i * ly->n_out;
            SFX(conv_forward_image)(net, ly, in, col, z, pm, a, 0, ly->n_filt, 0, ly->ho);
            in = a;
        }
    }
    for (int l = NC; l < L; l++) {
        const nf_layer *ly = &net->layers[l];
        const REAL *in = l == 0 ? xc : outs + off[l - 1];
        REAL *o = l == L - 1 ? out : outs + off[l];
        const REAL *b = (const REAL *)ly->b;
        NF_GEMM(net)(0, 0, cnt, ly->n_out, ly->n_in, (REAL)(1.0 - ly->p_dropout), in,
                     ly->n_in, (const REAL *)ly->w, ly->n_out, (REAL)0, o, ly->n_out);
        for (int i = 0; i < cnt; i++) {
            REAL *oi = o + (size_t)i * ly->n_out;
            SFX(act_bias)(ly->kind == NF_SOFTMAX ? NF_LINEAR : ly->act, oi, b, ly->n_out);
            if (ly->kind == NF_SOFTMAX)
                SFX(nf_softmax)(oi, oi, ly->n_out);
        }
    }
}

/* Class probabilities (n, n_cls) of n images: chunks of NF_CHUNK images shared
 * out among the threads (predict_chunk), each thread with its own scratch. */
int SFX(nf_predict)(const nf_net *net, const REAL *x, int64_t n, REAL *out)
{
    const int L = net->n_layers;
    const int nt = net->n_threads > 0 ? net->n_threads : 1;
    const int n_in0 = net->layers[0].n_in, n_cls = net->layers[L - 1].n_out;
    const int64_t n_chunks = (n + NF_CHUNK - 1) / NF_CHUNK;
    size_t off[NF_MAX_LAYERS + 1], col_size = 0, z_size = 0, pm_size = 0, per_thread;
    REAL *scratch = NULL;
    int ok = 1;

    /* per thread: col, z, pm of one image (largest layer), then each layer's
     * outputs for a chunk */
    off[0] = 0;
    for (int l = 0; l < L; l++) {
        const nf_layer *ly = &net->layers[l];
        if (ly->kind == NF_CONV) {
            const size_t K = (size_t)ly->c_in * ly->kh * ly->kw, P = (size_t)ly->hc * ly->wc;
            if (K * P > col_size) col_size = K * P;
            if ((size_t)ly->n_filt * P > z_size) z_size = (size_t)ly->n_filt * P;
            if ((size_t)ly->n_out > pm_size) pm_size = ly->n_out;
        }
        off[l + 1] = off[l] + (size_t)NF_CHUNK * ly->n_out;
    }
    per_thread = col_size + z_size + pm_size + off[L];
    SFX(alloc_all)(&scratch, per_thread * nt, &ok);
    if (!ok)
        return -1;

#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        REAL *col = scratch + per_thread * nf_thread_num();
        REAL *z = col + col_size, *pm = z + z_size, *outs = pm + pm_size;
        const int64_t start = ch * NF_CHUNK;
        const int cnt = (int)(n - start < NF_CHUNK ? n - start : NF_CHUNK);
        SFX(predict_chunk)(net, off, col, z, pm, outs, x + (size_t)start * n_in0, cnt,
                           out + (size_t)start * n_cls);
    }
    free(scratch);
    return 0;
}

/* ------------------------------------------------------------ test hooks */
void SFX(nf_conv_forward)(SFX_GEMM_T g, const REAL *x, const REAL *w, REAL *z, int m, int c,
                          int h, int wd, int f, int kh, int kw, int nt)
{
    const int hc = h - kh + 1, wc = wd - kw + 1, K = c * kh * kw, P = hc * wc;
#pragma omp parallel num_threads(nt)
    {
        REAL *col = (REAL *)malloc((size_t)K * P * sizeof(REAL));
#pragma omp for schedule(static)
        for (int i = 0; i < m; i++) {
            if (!col) continue;
            SFX(im2col_rows)(x + (size_t)i * c * h * wd, col, c, h, wd, kh, kw, 0, hc);
            g(0, 0, f, P, K, (REAL)1, w, K, col, P, (REAL)0, z + (size_t)i * f * P, P);
        }
        free(col);
    }
}

/* gw (F, K) = Σ_i dz_i·col_i^T (images in order); dx (m, C, h, w) when not NULL. */
int SFX(nf_conv_grad)(SFX_GEMM_T g, const REAL *x, const REAL *w, const REAL *dz, REAL *gw,
                      REAL *dx, int m, int c, int h, int wd, int f, int kh, int kw, int nt)
{
    const int hc = h - kh + 1, wc = wd - kw + 1, K = c * kh * kw, P = hc * wc;
    REAL *gwp = (REAL *)malloc(((size_t)m * f * K + 1) * sizeof(REAL));
    int ok = gwp != NULL;
    if (!ok)
        return -1;
#pragma omp parallel num_threads(nt)
    {
        REAL *col = (REAL *)malloc((size_t)K * P * sizeof(REAL));
        if (!col) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < m; i++) {
            if (!col) continue;
            const REAL *dzi = dz + (size_t)i * f * P;
            SFX(im2col_rows)(x + (size_t)i * c * h * wd, col, c, h, wd, kh, kw, 0, hc);
            g(0, 1, f, K, P, (REAL)1, dzi, P, col, P, (REAL)0, gwp + (size_t)i * f * K, K);
            if (dx) {
                g(1, 0, K, P, f, (REAL)1, w, K, dzi, P, (REAL)0, col, P);
                SFX(col2im)(col, dx + (size_t)i * c * h * wd, c, h, wd, kh, kw);
            }
        }
#pragma omp for schedule(static)
        for (int e = 0; e < f * K; e++) {
            REAL s = 0;
            for (int i = 0; i < m; i++)
                s += gwp[(size_t)i * f * K + e];
            gw[e] = s;
        }
        free(col);
    }
    free(gwp);
    return ok ? 0 : -1;
}

void SFX(nf_pool_forward)(const REAL *z, REAL *pooled, int n, int hc, int wc, int ph, int pw,
                          int nt)
{
    const int ho = hc / ph, wo = wc / pw;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++)
        NF_K(pool_max)(z + (size_t)i * hc * wc, pooled + (size_t)i * ho * wo, 1, hc, wc, ph, pw, 0,
                      ho, wc, (size_t)hc * wc);
}

void SFX(nf_pool_backward)(const REAL *z, const REAL *pooled, const REAL *dpooled, REAL *dz,
                           int n, int hc, int wc, int ph, int pw, int nt)
{
    const int ho = hc / ph, wo = wc / pw;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++)
        NF_K(pool_max_grad)(z + (size_t)i * hc * wc, pooled + (size_t)i * ho * wo,
                           dpooled + (size_t)i * ho * wo, dz + (size_t)i * hc * wc, 1, hc, wc,
                           ph, pw, 0, ho, wc, (size_t)hc * wc);
}

void SFX(nf_dropout_mask)(uint64_t seed, int layer, int64_t step, int64_t n, double p, REAL *out)
{
    NF_K(dropout_rows)(seed, layer, step, p, 1, (int)n, 0, (int)n, NULL, out, NULL);
}
