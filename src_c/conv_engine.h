/* Training (a chunk of mini-batches in one OpenMP team) and inference, written
 * once for REAL = float/double (included twice by convnet.c).
 *
 * Parallel scheme of one mini-batch (m examples); every step is an `omp for`
 * with a static schedule whose work items do not depend on the thread count,
 * and every reduction runs in a fixed order, so the results are bitwise the
 * same for 1 and N threads:
 *
 * (`omp for nowait` + our own barrier, see convnet.c; the static schedule gives
 * every thread the same iterations in every loop of the same length):
 *
 *  1. conv forward, per conv layer, per (image, part): a part is a band of
 *     pooled rows (nf_conv_parts: a fixed number per layer, so that there is
 *     work for more threads than a mini-batch has images): im2col of the band,
 *     z = W·col (GEMM), max-pool, act(pooled + b). The first conv layer goes
 *     by (filter group, image) instead (nf_conv_groups: two halves of the
 *     filters, each item with its own copy of the image's columns): with two
 *     threads, each then computes the activations and, in step 5, uses the
 *     deltas of exactly the rows of the next dense layer it owns, so they never
 *     move between cores. A one-channel first layer (MNIST's) on AVX-512
 *     float32 takes conv_direct.h's kernels there: no im2col, z in "wide"
 *     rows, the filter gradient straight from the image in step 5.      | barrier
 *  2. per dense layer, per block of input rows r0..r1 (fixed size):
 *     finish the previous dense layer's outputs for columns r0..r1 (sum of its
 *     partial products in block order, + b, act), dropout, then the partial
 *     product x[:, r0:r1]·W[r0:r1, :].                                 | barrier
 *  3. softmax: every thread sums the last partials, softmax, dz (privately).
 *  4. per dense layer from the top, per row block: dx[:, r0:r1] = dz·W[r0:r1]^T
 *     (old weights), then W[r0:r1] ← (1 − η·reg)·W[r0:r1] − η·x[:, r0:r1]^T·dz.
 *     A thread reads and writes only its own rows of W, so no one updates
 *     what another still reads; the row blocks stay in the same thread's cache
 *     for forward and backward.                                           | barrier
 *  5. conv backward, from the top conv layer down, per (image, part): pool
 *     gradient, the part's bias gradient, its dz transposed, dcol = W^T·dz;
 *                                                                          | barrier
 *     then per image the filter gradient, transposed (GEMM gw^T = col·dz^T,
 *     by chunks of its rows), and the input gradient's col2im (bands overlap
 *     there). One partial filter gradient per image, not per part: the
 *     update reads a quarter as much.                                      | barrier
 *  6. conv updates by parameter elements, summing the partial gradients in
 *     image order (biases: (image, part) order; first layer: per filter
 *     group).                                                              | barrier
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

/* Conv layer forward for pooled rows oy0..oy1 of one image (col, z, pm and a of
 * those rows; the last part, oy1 == ho, also covers the ignored border rows). */
static void SFX(conv_part_forward)(const nf_net *net, const nf_layer *ly, const REAL *in,
                                   REAL *col, REAL *z, REAL *pm, REAL *a, int oy0, int oy1)
{
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc, F = ly->n_filt;
    const int Q = ly->ho * ly->wo;
    const int y0 = oy0 * ly->ph, y1 = oy1 == ly->ho ? ly->hc : oy1 * ly->ph;
    const int c0 = y0 * ly->wc, c1 = y1 * ly->wc;
    const REAL *w = (const REAL *)ly->w, *b = (const REAL *)ly->b;
#if NF_DIRECT
    if (NF_DIRECT_NARROW(ly) && nf_ck->im2col_narrow)
        nf_ck->im2col_narrow(in, col, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw, y0, y1);
    else
#endif
        SFX(im2col_rows)(in, col, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw, y0, y1);
    NF_GEMM(net)(0, 0, F, c1 - c0, K, (REAL)1, w, K, col + c0, P, (REAL)0, z + c0, P);
    NF_K(pool_max)(z, pm, F, ly->hc, ly->wc, ly->ph, ly->pw, oy0, oy1, ly->wc, (size_t)P);
    for (int f = 0; f < F; f++)
        NF_K(act_rows)(ly->act, pm + (size_t)f * Q + oy0 * ly->wo, b[f],
                      a + (size_t)f * Q + oy0 * ly->wo, (oy1 - oy0) * ly->wo);
}

/* The first conv layer's filters g·F/G .. (g+1)·F/G - 1 on one whole image
 * (col: this item's own copy of the image's columns, kept for the backward). */
static void SFX(conv_group_forward)(const nf_net *net, const nf_layer *ly, const REAL *in,
                                    REAL *col, REAL *z, REAL *pm, REAL *a, int g, int G)
{
    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc, F = ly->n_filt;
    const int Q = ly->ho * ly->wo, FG = F / G, f0 = g * FG;
    const REAL *w = (const REAL *)ly->w, *b = (const REAL *)ly->b;
    SFX(im2col_rows)(in, col, ly->c_in, ly->h_in, ly->w_in, ly->kh, ly->kw, 0, ly->hc);
    NF_GEMM(net)(0, 0, FG, P, K, (REAL)1, w + (size_t)f0 * K, K, col, P, (REAL)0,
                 z + (size_t)f0 * P, P);
    NF_K(pool_max)(z + (size_t)f0 * P, pm + (size_t)f0 * Q, FG, ly->hc, ly->wc, ly->ph, ly->pw,
                  0, ly->ho, ly->wc, (size_t)P);
    for (int f = f0; f < f0 + FG; f++)
        NF_K(act_rows)(ly->act, pm + (size_t)f * Q, b[f], a + (size_t)f * Q, Q);
}

#if NF_DIRECT
/* conv_group_forward by the direct kernels (conv_direct.h): z in wide layout. */
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

static void SFX(conv_image_forward)(const nf_net *net, const nf_layer *ly, const REAL *in,
                                    REAL *col, REAL *z, REAL *pm, REAL *a)
{
    SFX(conv_part_forward)(net, ly, in, col, z, pm, a, 0, ly->ho);
}

int SFX(nf_train)(const nf_net *net, const REAL *x, const int64_t *y, int64_t n_batches,
                  int m, double eta, double reg, int64_t first_step)
{
    const int L = net->n_layers, NC = net->n_conv;
    const int nt = net->n_threads > 0 ? net->n_threads : 1;
    const int n_in0 = net->layers[0].n_in;
    const nf_layer *last = &net->layers[L - 1];
    const int n_cls = last->n_out;
    SFX(nf_buf) B[NF_MAX_LAYERS];
    int ok = 1, max_out = 1;
    REAL *priv = NULL;
    size_t priv_size;

    memset(B, 0, sizeof(B));
    for (int l = 0; l < L; l++) {
        const nf_layer *ly = &net->layers[l];
        if (ly->kind == NF_CONV) {
            const size_t K = (size_t)ly->c_in * ly->kh * ly->kw, P = (size_t)ly->hc * ly->wc;
            size_t col_len = m * K * P, z_len = (size_t)m * ly->n_filt * P;
            B[l].n_parts = nf_conv_parts(ly);
            B[l].n_groups = l == 0 ? nf_conv_groups(ly) : 1;
#if NF_DIRECT
            B[l].direct = B[l].n_groups > 1 && ly->c_in == 1 && K <= NF_DIRECT_MAX_TAPS;
#endif
            if (B[l].direct) {   /* one padded image per thread; z in wide layout */
                B[l].pw_pad = nf_direct_pw_pad(ly->hc, ly->w_in);
                B[l].xp_len = nf_direct_xp_len(ly->hc, ly->w_in, ly->kh, ly->kw);
                B[l].dz_len = (size_t)(ly->n_filt / B[l].n_groups) * B[l].pw_pad + 32;
                col_len = (size_t)nt * (B[l].xp_len + B[l].dz_len);
                z_len = (size_t)m * ly->n_filt * B[l].pw_pad;
            } else if (B[l].n_groups > 1) {   /* a copy of each image's columns per group */
                col_len = (size_t)B[l].n_groups * m * K * P;
            }
            SFX(alloc_all)(&B[l].col, col_len, &ok);
            SFX(alloc_all)(&B[l].z, z_len, &ok);
            if (ok && B[l].direct)   /* the padding of the images stays zero */
                memset(B[l].col, 0, col_len * sizeof(REAL));
            SFX(alloc_all)(&B[l].pm, (size_t)m * ly->n_out, &ok);
            SFX(alloc_all)(&B[l].a, (size_t)m * ly->n_out, &ok);
            SFX(alloc_all)(&B[l].delta, (size_t)m * ly->n_out, &ok);
            /* filter gradients: per (group, image) (F, K), or per image (banded
             * path; transposed, (K, F)) */
            SFX(alloc_all)(&B[l].gwp, (size_t)m * ly->n_filt * K, &ok);
            if (B[l].n_groups == 1)
                SFX(alloc_all)(&B[l].dzt, (size_t)m * P * ly->n_filt, &ok);
            if (l > 0)
                SFX(alloc_all)(&B[l].dcol, m * K * P, &ok);
            SFX(alloc_all)(&B[l].gbp, (size_t)m * B[l].n_parts * ly->n_filt, &ok);
        } else {
            B[l].block = nf_dense_block(ly->n_in, ly->n_out, m);
            B[l].n_blocks = (ly->n_in + B[l].block - 1) / B[l].block;
            SFX(alloc_all)(&B[l].part, (size_t)B[l].n_blocks * m * ly->n_out, &ok);
            if (ly->p_dropout > 0) {
                SFX(alloc_all)(&B[l].xd, (size_t)m * ly->n_in, &ok);
                SFX(alloc_all)(&B[l].mask, (size_t)m * ly->n_in, &ok);
            }
            if (l < L - 1) {
                SFX(alloc_all)(&B[l].a, (size_t)m * ly->n_out, &ok);
                SFX(alloc_all)(&B[l].delta, (size_t)m * ly->n_out, &ok);
            }
            if (ly->n_out > max_out)
                max_out = ly->n_out;
        }
    }
    /* per thread: dz (m, max_out), softmax logits and probabilities (m, n_cls) */
    priv_size = (size_t)m * max_out + 2 * (size_t)m * n_cls;
    SFX(alloc_all)(&priv, priv_size * nt, &ok);
    if (!ok) {
        SFX(free_bufs)(B, L);
        free(priv);
        return -1;
    }

    nf_barrier_t nf_bar = {0, 0, {0}};
    (void)nf_bar;
#pragma omp parallel num_threads(nt) shared(nf_bar)
    {
        const int tid = nf_thread_num();
        const int nf_team = nf_num_threads();
        int nf_sense = 0;
        (void)nf_team; (void)nf_sense;
        REAL *dz = priv + priv_size * tid;
        REAL *zs = dz + (size_t)m * max_out;
        REAL *ps = zs + (size_t)m * n_cls;

        for (int64_t batch = 0; batch < n_batches; batch++) {
            const REAL *xb = x + (size_t)batch * m * n_in0;
            const int64_t *yb = y + (size_t)batch * m;
            const int64_t step = first_step + batch;

            /* 1. conv forward, per (image, part), layer by layer */
            for (int l = 0; l < NC; l++) {
                const nf_layer *ly = &net->layers[l];
                const int np = B[l].n_parts;
                const size_t K = (size_t)ly->c_in * ly->kh * ly->kw;
                const size_t P = (size_t)ly->hc * ly->wc;
                if (B[l].n_groups > 1) {
                    /* The first conv layer by (filter group, image): the group
                     * owners are the owners of the dense rows these outputs feed. */
                    const int G = B[l].n_groups;
#if NF_DIRECT
                    if (B[l].direct) {
                        const int pwp = B[l].pw_pad;
#pragma omp for schedule(static) nowait
                        for (int t = 0; t < G * m; t++)
                            SFX(conv_group_forward_direct)(
                                ly, xb + (size_t)(t % m) * n_in0,
                                B[l].col + (size_t)tid * (B[l].xp_len + B[l].dz_len),
                                B[l].z + (size_t)(t % m) * ly->n_filt * pwp,
                                B[l].pm + (size_t)(t % m) * ly->n_out,
                                B[l].a + (size_t)(t % m) * ly->n_out, t / m, G, pwp);
                        NF_BARRIER();
                        continue;
                    }
#endif
#pragma omp for schedule(static) nowait
                    for (int t = 0; t < G * m; t++)
                        SFX(conv_group_forward)(net, ly, xb + (size_t)(t % m) * n_in0,
                                                B[l].col + (size_t)t * K * P,
                                                B[l].z + (size_t)(t % m) * ly->n_filt * P,
                                                B[l].pm + (size_t)(t % m) * ly->n_out,
                                                B[l].a + (size_t)(t % m) * ly->n_out, t / m, G);
                    NF_BARRIER();
                    continue;
                }
#pragma omp for schedule(static) nowait
                for (int t = 0; t < m * np; t++) {
                    const int i = t / np, q = t % np;
                    const REAL *in = l == 0 ? xb + (size_t)i * n_in0
                                            : B[l - 1].a + (size_t)i * ly->n_in;
                    SFX(conv_part_forward)(net, ly, in, B[l].col + i * K * P,
                                           B[l].z + i * ly->n_filt * P,
                                           B[l].pm + (size_t)i * ly->n_out,
                                           B[l].a + (size_t)i * ly->n_out,
                                           q * ly->ho / np, (q + 1) * ly->ho / np);
                }
                NF_BARRIER();
            }

            /* 2. dense forward, per block of input rows */
            for (int l = NC; l < L; l++) {
                const nf_layer *ly = &net->layers[l];
                const int n_in = ly->n_in, n_out = ly->n_out, nb = B[l].n_blocks;
                const REAL *in = l == 0 ? xb : B[l - 1].a;
                const REAL *w = (const REAL *)ly->w;
                /* With few row blocks here (the softmax after a hidden layer), finishing
                 * the previous layer inside them would leave the other threads idle:
                 * finish it first, in column chunks (same sums, same order). */
                const int finish_apart = l > NC && nb < 4;
                if (finish_apart) {
                    const int n_chunks = (n_in + 15) / 16;
#pragma omp for schedule(static) nowait
                    for (int c = 0; c < n_chunks; c++)
                        SFX(dense_finish)(&net->layers[l - 1], &B[l - 1], m, c * 16,
                                          c * 16 + 16 < n_in ? c * 16 + 16 : n_in);
                    NF_BARRIER();
                }
#pragma omp for schedule(static) nowait
                for (int blk = 0; blk < nb; blk++) {
                    const int r0 = blk * B[l].block;
                    const int r1 = r0 + B[l].block < n_in ? r0 + B[l].block : n_in;
                    const REAL *src = in;
                    if (l > NC && !finish_apart)   /* the previous layer's columns r0..r1 */
                        SFX(dense_finish)(&net->layers[l - 1], &B[l - 1], m, r0, r1);
                    if (ly->p_dropout > 0) {
                        NF_K(dropout_rows)(net->dropout_seed, l, step, ly->p_dropout, m, n_in,
                                          r0, r1, in, B[l].mask, B[l].xd);
                        src = B[l].xd;
                    }
                    NF_GEMM(net)(0, 0, m, n_out, r1 - r0, (REAL)1, src + r0, n_in,
                                 w + (size_t)r0 * n_out, n_out, (REAL)0,
                                 B[l].part + (size_t)blk * m * n_out, n_out);
                }
                NF_BARRIER();
            }

            /* 3. softmax and its delta, privately in every thread */
            {
                const size_t stride = (size_t)m * n_cls;
                const REAL *lb = (const REAL *)last->b;
                SFX(sum_parts)(B[L - 1].part, stride, B[L - 1].n_blocks, m * n_cls, zs);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n_cls; j++)
                        zs[(size_t)i * n_cls + j] += lb[j];
                SFX(softmax_nll)(zs, yb, ps, dz, m, n_cls);
            }
            /* everyone has read the softmax bias before its owner updates it */
NF_BARRIER();

            /* 4. dense backward, from the top */
            for (int l = L - 1; l >= NC; l--) {
                const nf_layer *ly = &net->layers[l];
                const int n_in = ly->n_in, n_out = ly->n_out, nb = B[l].n_blocks;
                REAL *w = (REAL *)ly->w, *b = (REAL *)ly->b;
                const REAL *xin = ly->p_dropout > 0 ? B[l].xd : (l == 0 ? xb : B[l - 1].a);
                REAL *din = l > 0 ? B[l - 1].delta : NULL;
                if (l < L - 1)
                    SFX(times_act_prime)(ly->act, B[l].a, B[l].delta, dz, m * n_out);
#pragma omp for schedule(static) nowait
                for (int blk = 0; blk < nb; blk++) {
                    const int r0 = blk * B[l].block;
                    const int r1 = r0 + B[l].block < n_in ? r0 + B[l].block : n_in;
                    if (din) {
                        NF_GEMM(net)(0, 1, m, r1 - r0, n_out, (REAL)1, dz, n_out,
                                     w + (size_t)r0 * n_out, n_out, (REAL)0, din + r0, n_in);
                        if (ly->p_dropout > 0)
                            for (int i = 0; i < m; i++)
                                for (int j = r0; j < r1; j++)
                                    din[(size_t)i * n_in + j] *= B[l].mask[(size_t)i * n_in + j];
                    }
                    NF_GEMM(net)(1, 0, r1 - r0, n_out, m, (REAL)(-eta), xin + r0, n_in, dz,
                                 n_out, (REAL)(1.0 - eta * reg), w + (size_t)r0 * n_out, n_out);
                    if (blk == 0)
                        for (int j = 0; j < n_out; j++) {
                            REAL s = 0;
                            for (int i = 0; i < m; i++)
                                s += dz[(size_t)i * n_out + j];
                            b[j] -= (REAL)eta * s;
                        }
                }
                NF_BARRIER();
            }

            if (NC > 0) {
                /* 5. conv backward, per (image, part), from the top conv layer;
                 * the input gradient's col2im per image (parts overlap there) */
                for (int l = NC - 1; l >= 0; l--) {
                    const nf_layer *ly = &net->layers[l];
                    const int K = ly->c_in * ly->kh * ly->kw, P = ly->hc * ly->wc;
                    const int F = ly->n_filt, Q = ly->ho * ly->wo, np = B[l].n_parts;
#if NF_DIRECT
                    if (B[l].direct) {   /* (first layer: no input gradient) */
                        const int G = B[l].n_groups, FG = F / G, pwp = B[l].pw_pad;
#pragma omp for schedule(static) nowait
                        for (int t = 0; t < G * m; t++) {
                            const int g = t / m, i = t % m, f0 = g * FG;
                            REAL *xp = B[l].col + (size_t)tid * (B[l].xp_len + B[l].dz_len);
                            REAL *dzi = xp + B[l].xp_len;
                            const REAL *zi = B[l].z + ((size_t)i * F + f0) * pwp;
                            REAL *gi = B[l].delta + (size_t)i * ly->n_out + (size_t)f0 * Q;
                            const REAL *ai = B[l].a + (size_t)i * ly->n_out + (size_t)f0 * Q;
                            REAL *gb = B[l].gbp + (size_t)t * FG;
                            SFX(pooled_deltas)(ly->act, ai, gi, FG, Q, 0, Q, gb);
                            const REAL *pi = B[l].pm + (size_t)i * ly->n_out + (size_t)f0 * Q;
                            if (NF_DIRECT_POOL2(ly) && nf_ck->pool2_grad)
                                nf_ck->pool2_grad(zi, pi, gi, dzi, FG, ly->ho, ly->wo, ly->w_in,
                                                  pwp);
                            else
                                NF_K(pool_max_grad)(zi, pi, gi, dzi, FG, ly->hc, ly->wc, ly->ph,
                                                    ly->pw, 0, ly->ho, ly->w_in, (size_t)pwp);
                            memcpy(xp, xb + (size_t)i * n_in0, (size_t)n_in0 * sizeof(REAL));
                            nf_ck->direct_gw(xp, ly->w_in, ly->kh, ly->kw, dzi, FG, pwp,
                                             B[l].gwp + (size_t)t * FG * K);
                        }
                        NF_BARRIER();
                        continue;
                    }
#endif
                    if (B[l].n_groups > 1) {   /* (first layer: no input gradient) */
                        const int G = B[l].n_groups, FG = F / G;
#pragma omp for schedule(static) nowait
                        for (int t = 0; t < G * m; t++) {
                            const int g = t / m, i = t % m, f0 = g * FG;
                            const REAL *col = B[l].col + (size_t)t * K * P;
                            REAL *zi = B[l].z + (size_t)i * F * P + (size_t)f0 * P;
                            REAL *gi = B[l].delta + (size_t)i * ly->n_out + (size_t)f0 * Q;
                            const REAL *ai = B[l].a + (size_t)i * ly->n_out + (size_t)f0 * Q;
                            REAL *gb = B[l].gbp + (size_t)t * FG;
                            REAL *gw = B[l].gwp + (size_t)t * FG * K;
                            SFX(pooled_deltas)(ly->act, ai, gi, FG, Q, 0, Q, gb);
                            NF_K(pool_max_grad)(zi, B[l].pm + (size_t)i * ly->n_out + (size_t)f0 * Q,
                                               gi, zi, FG, ly->hc, ly->wc, ly->ph, ly->pw, 0, ly->ho,
                                               ly->wc, (size_t)P);
                            for (int p0 = 0; p0 < P; p0 += NF_GW_SLICE) {
                                const int ns = P - p0 < NF_GW_SLICE ? P - p0 : NF_GW_SLICE;
                                NF_GEMM(net)(0, 1, FG, K, ns, (REAL)1, zi + p0, P, col + p0, P,
                                             (REAL)(p0 > 0), gw, K);
                            }
                        }
                        NF_BARRIER();
                        continue;
                    }
#pragma omp for schedule(static) nowait
                    for (int t = 0; t < m * np; t++) {
                        const int i = t / np, q = t % np;
                        const int oy0 = q * ly->ho / np, oy1 = (q + 1) * ly->ho / np;
                        const int y0 = oy0 * ly->ph, y1 = oy1 == ly->ho ? ly->hc : oy1 * ly->ph;
                        const int c0 = y0 * ly->wc, c1 = y1 * ly->wc;
                        REAL *zi = B[l].z + (size_t)i * F * P;
                        REAL *g = B[l].delta + (size_t)i * ly->n_out;
                        const REAL *a = B[l].a + (size_t)i * ly->n_out;
                        REAL *gb = B[l].gbp + (size_t)t * F;
                        const int r0 = oy0 * ly->wo, nr = (oy1 - oy0) * ly->wo;
                        SFX(pooled_deltas)(ly->act, a, g, F, Q, r0, nr, gb);
                        NF_K(pool_max_grad)(zi, B[l].pm + (size_t)i * ly->n_out, g, zi, F,
                                           ly->hc, ly->wc, ly->ph, ly->pw, oy0, oy1, ly->wc,
                                           (size_t)P);
                        {   /* the band's dz transposed, for the filter gradient */
                            REAL *dt = B[l].dzt + (size_t)i * P * F;
                            for (int p = c0; p < c1; p++)
                                for (int f = 0; f < F; f++)
                                    dt[(size_t)p * F + f] = zi[(size_t)f * P + p];
                        }
                        if (l > 0)   /* dcol = W^T dz */
                            NF_GEMM(net)(1, 0, K, c1 - c0, F, (REAL)1, (const REAL *)ly->w, K,
                                         zi + c0, P, (REAL)0,
                                         B[l].dcol + (size_t)i * K * P + c0, P);
                    }
                    NF_BARRIER();
                    {
                        /* per image: the filter gradient, transposed (gw^T = col·dz^T: a
                         * product whose operands are not both laid out along the sum,
                         * which OpenBLAS's small-matrix kernels take), by chunks of
                         * NF_GW_ROWS of its K rows; and the input gradient's col2im */
                        const int nkc = (K + NF_GW_ROWS - 1) / NF_GW_ROWS;
                        const int per = nkc + (l > 0);
#pragma omp for schedule(static) nowait
                        for (int t = 0; t < m * per; t++) {
                            const int i = t / per, c = t % per;
                            if (c == nkc) {
                                const REAL *dc = B[l].dcol + (size_t)i * K * P;
                                REAL *dx = B[l - 1].delta + (size_t)i * ly->n_in;
#if NF_DIRECT
                                if (NF_DIRECT_NARROW(ly) && nf_ck->col2im_narrow)
                                    nf_ck->col2im_narrow(dc, dx, ly->c_in, ly->h_in, ly->w_in,
                                                         ly->kh, ly->kw);
                                else
#endif
                                    SFX(col2im)(dc, dx, ly->c_in, ly->h_in, ly->w_in, ly->kh,
                                                    ly->kw);
                                continue;
                            }
                            const int k0 = c * NF_GW_ROWS;
                            const int kn = K - k0 < NF_GW_ROWS ? K - k0 : NF_GW_ROWS;
                            const REAL *dt = B[l].dzt + (size_t)i * P * F;
                            const REAL *col = B[l].col + (size_t)i * K * P + (size_t)k0 * P;
                            REAL *gwt = B[l].gwp + (size_t)i * F * K + (size_t)k0 * F;
                            for (int p0 = 0; p0 < P; p0 += NF_GW_SLICE) {
                                const int ns = P - p0 < NF_GW_SLICE ? P - p0 : NF_GW_SLICE;
                                NF_GEMM(net)(0, 0, kn, F, ns, (REAL)1, col + p0, P,
                                             dt + (size_t)p0 * F, F, (REAL)(p0 > 0), gwt, F);
                            }
                        }
                        NF_BARRIER();
                    }
                }
                /* 6. conv updates */
                for (int l = 0; l < NC; l++) {
                    const nf_layer *ly = &net->layers[l];
                    const int F = ly->n_filt, K = ly->c_in * ly->kh * ly->kw;
                    REAL *w = (REAL *)ly->w, *b = (REAL *)ly->b;
                    const REAL *gwp = B[l].gwp, *gbp = B[l].gbp;
                    /* partials, summed in order: filter gradients per image, biases
                     * per (image, part) */
                    const int n_bpart = m * B[l].n_parts;
                    if (B[l].n_groups > 1) {
                        /* partial t = (group t / m, image t % m): FG·K weights, FG biases */
                        const int G = B[l].n_groups, FG = F / G;
                        const int gc = (FG * K + 63) / 64;   /* chunks per group */
#pragma omp for schedule(static) nowait
                        for (int c = 0; c <= G * gc; c++) {
                            if (c < G * gc) {
                                REAL s[64];
                                const int g = c / gc, e0 = (c % gc) * 64;
                                const int n = FG * K - e0 < 64 ? FG * K - e0 : 64;
                                REAL *wg = w + (size_t)g * FG * K + e0;
                                SFX(sum_parts)(gwp + (size_t)g * m * FG * K + e0, (size_t)FG * K,
                                               m, n, s);
                                for (int j = 0; j < n; j++)
                                    wg[j] -= (REAL)eta * (s[j] + (REAL)reg * wg[j]);
                            } else {
                                for (int f = 0; f < F; f++) {
                                    const int g = f / FG;
                                    const REAL *pb = gbp + (size_t)g * m * FG + f % FG;
                                    REAL s = pb[0];
                                    for (int i = 1; i < m; i++)
                                        s += pb[(size_t)i * FG];
                                    b[f] -= (REAL)eta * s;
                                }
                            }
                        }
                        NF_BARRIER();
                        continue;
                    }
                    /* the partials are (K, F): tiles of 16 x 16 (k, f), summed row by
                     * row, written back to w (F, K) a 16-weight run per filter */
                    const int tk = (K + 15) / 16, tf = (F + 15) / 16;
#pragma omp for schedule(static) nowait
                    for (int c = 0; c <= tk * tf; c++) {
                        if (c < tk * tf) {
                            REAL s[16][16];
                            const int k0 = c / tf * 16, f0 = c % tf * 16;
                            const int kn = K - k0 < 16 ? K - k0 : 16;
                            const int fn = F - f0 < 16 ? F - f0 : 16;
                            for (int kk = 0; kk < kn; kk++)
                                SFX(sum_parts)(gwp + (size_t)(k0 + kk) * F + f0, (size_t)F * K,
                                               m, fn, s[kk]);
                            for (int ff = 0; ff < fn; ff++) {
                                REAL *wf = w + (size_t)(f0 + ff) * K + k0;
                                for (int kk = 0; kk < kn; kk++)
                                    wf[kk] -= (REAL)eta * (s[kk][ff] + (REAL)reg * wf[kk]);
                            }
                        } else {              /* the biases */
                            for (int f = 0; f < F; f++) {
                                REAL s = gbp[f];
                                for (int t = 1; t < n_bpart; t++)
                                    s += gbp[(size_t)t * F + f];
                                b[f] -= (REAL)eta * s;
                            }
                        }
                    }
                    NF_BARRIER();
                }
            }
        }
    }
    SFX(free_bufs)(B, L);
    free(priv);
    return 0;
}

/* Inference: chunks of NF_CHUNK images, each chunk through the whole network by
 * one thread (conv per image, dense layers as one GEMM per chunk). */
#ifndef NF_CHUNK
#define NF_CHUNK 64
#endif

int SFX(nf_predict)(const nf_net *net, const REAL *x, int64_t n, REAL *out)
{
    const int L = net->n_layers, NC = net->n_conv;
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
        const REAL *xc = x + (size_t)start * n_in0;
        for (int i = 0; i < cnt; i++) {
            const REAL *in = xc + (size_t)i * n_in0;
            for (int l = 0; l < NC; l++) {
                const nf_layer *ly = &net->layers[l];
                REAL *a = outs + off[l] + (size_t)i * ly->n_out;
                SFX(conv_image_forward)(net, ly, in, col, z, pm, a);
                in = a;
            }
        }
        for (int l = NC; l < L; l++) {
            const nf_layer *ly = &net->layers[l];
            const REAL *in = l == 0 ? xc : outs + off[l - 1];
            REAL *o = l == L - 1 ? out + (size_t)start * n_cls : outs + off[l];
            const REAL *b = (const REAL *)ly->b;
            NF_GEMM(net)(0, 0, cnt, ly->n_out, ly->n_in, (REAL)(1.0 - ly->p_dropout), in,
                         ly->n_in, (const REAL *)ly->w, ly->n_out, (REAL)0, o, ly->n_out);
            for (int i = 0; i < cnt; i++) {
                REAL *oi = o + (size_t)i * ly->n_out;
                if (ly->kind == NF_SOFTMAX) {
                    REAL mx, s = 0;
                    for (int j = 0; j < ly->n_out; j++)
                        oi[j] += b[j];
                    mx = oi[0];
                    for (int j = 1; j < ly->n_out; j++)
                        if (oi[j] > mx) mx = oi[j];
                    for (int j = 0; j < ly->n_out; j++) {
                        oi[j] = EXP(oi[j] - mx);
                        s += oi[j];
                    }
                    for (int j = 0; j < ly->n_out; j++)
                        oi[j] /= s;
                } else {
                    SFX(act_bias)(ly->act, oi, b, ly->n_out);
                }
            }
        }
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
            SFX(im2col)(x + (size_t)i * c * h * wd, col, c, h, wd, kh, kw);
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
            SFX(im2col)(x + (size_t)i * c * h * wd, col, c, h, wd, kh, kw);
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

double SFX(nf_softmax_nll)(const REAL *z, const int64_t *y, REAL *p, REAL *dz, int m, int k)
{
    return SFX(softmax_nll)(z, y, p, dz, m, k);
}

void SFX(nf_dropout_mask)(uint64_t seed, int layer, int64_t step, int64_t n, double p, REAL *out)
{
    NF_K(dropout_rows)(seed, layer, step, p, 1, (int)n, 0, (int)n, NULL, out, NULL);
}
