/* Per-image kernels of the conv family, written once for REAL = float/double
 * (convnet.c includes this file twice; SFX(name) appends _f or _d).
 *
 * Convolution layout: the image's im2col matrix col (K, P), K = C*kh*kw,
 * P = hc*wc, holds in row  c*kh*kw + (kh-1-u)*kw + (kw-1-v)  the inputs
 * x[c, y+u, x+v]; the row order is flipped so that the filters, read as an
 * (F, K) matrix without any copy, perform Theano's true convolution:
 *     z (F, P) = W (F, K) · col (K, P).
 *
 * The kernels compiled per instruction set (conv_direct.h: activation and
 * dropout rows, pooling, the direct convolution) are called through the
 * path's table: NF_K(pool_max)(...) is pool_max of this dtype on that path.
 */
#define NF_K(name) (nf_ck->SFX(name))

/* a[j] = act(a[j] + b[j]) for n values: sigmoid 1/(1 + e^-z) and tanh by libm
 * (EXP, TANH), ReLU max(z, 0), linear z; the choice made once for the row. */
static void SFX(act_bias)(int act, REAL *a, const REAL *b, int n)
{
    switch (act) {
    case NF_SIGMOID:
        for (int j = 0; j < n; j++) a[j] = (REAL)1 / ((REAL)1 + EXP(-(a[j] + b[j])));
        break;
    case NF_TANH:
        for (int j = 0; j < n; j++) a[j] = TANH(a[j] + b[j]);
        break;
    case NF_RELU:
        for (int j = 0; j < n; j++) {
            const REAL z = a[j] + b[j];
            a[j] = z > 0 ? z : (REAL)0;
        }
        break;
    default:
        for (int j = 0; j < n; j++) a[j] = a[j] + b[j];
        break;
    }
}

/* out[j] = g[j] * act'(a[j]), the derivative from the activation's output a
 * (sigmoid a(1 - a), tanh 1 - a^2; ReLU passes g where a > 0, else 0; linear
 * passes g). out may be g. */
static void SFX(times_act_prime)(int act, const REAL *a, const REAL *g, REAL *out, int n)
{
    switch (act) {
    case NF_SIGMOID:
        for (int j = 0; j < n; j++) out[j] = g[j] * (a[j] * ((REAL)1 - a[j]));
        break;
    case NF_TANH:
        for (int j = 0; j < n; j++) out[j] = g[j] * ((REAL)1 - a[j] * a[j]);
        break;
    case NF_RELU:   /* g read whatever a is: a select, not a branch (ReLU's zeros fall at random) */
        for (int j = 0; j < n; j++) {
            const REAL gj = g[j];
            out[j] = a[j] > 0 ? gj : (REAL)0;
        }
        break;
    default:
        if (out != g)
            memcpy(out, g, (size_t)n * sizeof(REAL));
        break;
    }
}

/* Columns of output rows y0 <= y < y1 only (a part of the image's matrix). */
static void SFX(im2col_rows)(const REAL *in, REAL *col, int c_in, int h, int w, int kh, int kw,
                             int y0, int y1)
{
    const int hc = h - kh + 1, wc = w - kw + 1, P = hc * wc;
    for (int c = 0; c < c_in; c++)
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++) {
                REAL *dst = col + (size_t)(c * kh * kw + (kh - 1 - u) * kw + (kw - 1 - v)) * P;
                const REAL *src = in + (size_t)c * h * w + (size_t)u * w + v;
                for (int y = y0; y < y1; y++) {
                    REAL *d = dst + (size_t)y * wc;
                    const REAL *sr = src + (size_t)y * w;
                    for (int x = 0; x < wc; x++)   /* rows are short: no memcpy call */
                        d[x] = sr[x];
                }
            }
}

/* dx (C, h, w) = the col2im scatter-add of dcol (K, P); dx is overwritten. */
static void SFX(col2im)(const REAL *dcol, REAL *dx, int c_in, int h, int w, int kh, int kw)
{
    const int hc = h - kh + 1, wc = w - kw + 1, P = hc * wc;
    memset(dx, 0, (size_t)c_in * h * w * sizeof(REAL));
    for (int c = 0; c < c_in; c++)
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++) {
                const REAL *src = dcol + (size_t)(c * kh * kw + (kh - 1 - u) * kw + (kw - 1 - v)) * P;
                REAL *dst = dx + (size_t)c * h * w + (size_t)u * w + v;
                for (int y = 0; y < hc; y++) {
                    const REAL *s = src + (size_t)y * wc;
                    REAL *d = dst + (size_t)y * w;
                    for (int x = 0; x < wc; x++)
                        d[x] += s[x];
                }
            }
}

/* Sum of n values in 8 interleaved partial sums (vectorisable without
 * reassociation; the order is fixed, whatever the threads). */
static inline REAL SFX(sum8)(const REAL *g, int n)
{
    REAL acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += g[j + k];
    for (int k = 0; k < 8; k++)
        s += acc[k];
    for (; j < n; j++)
        s += g[j];
    return s;
}

/* The deltas of F pooled maps (Q apart), outputs r0 .. r0 + n - 1 of each:
 * g *= act'(a), and each map's bias gradient, their sum, into gb[f]. */
static void SFX(pooled_deltas)(int act, const REAL *a, REAL *g, int F, int Q, int r0, int n,
                               REAL *gb)
{
    for (int f = 0; f < F; f++) {
        REAL *gf = g + (size_t)f * Q + r0;
        SFX(times_act_prime)(act, a + (size_t)f * Q + r0, gf, gf, n);
        gb[f] = SFX(sum8)(gf, n);
    }
}

/* out[j] = Σ_q parts[q*stride + j] for j < n, q = 0, 1, ... in order: the same
 * sum per element as a loop over q, but vectorised over j. */
static inline void SFX(sum_parts)(const REAL *parts, size_t stride, int n_parts, int n, REAL *out)
{
    for (int j = 0; j < n; j++)
        out[j] = parts[j];
    for (int q = 1; q < n_parts; q++) {
        const REAL *src = parts + q * stride;
        for (int j = 0; j < n; j++)
            out[j] += src[j];
    }
}

/* Softmax of rows z (m, k) into p; dz = (p - onehot(y)) / m unless dz is NULL;
 * returns the mean negative log-likelihood of the labels y. */
double SFX(nf_softmax_nll)(const REAL *z, const int64_t *y, REAL *p, REAL *dz, int m, int k)
{
    double cost = 0;
    for (int i = 0; i < m; i++) {
        REAL *pi = p + (size_t)i * k;
        SFX(nf_softmax)(z + (size_t)i * k, pi, k);
        cost -= log((double)pi[y[i]]);
        if (dz) {
            REAL *di = dz + (size_t)i * k;
            for (int j = 0; j < k; j++)
                di[j] = (pi[j] - (j == y[i] ? (REAL)1 : (REAL)0)) / (REAL)m;
        }
    }
    return cost / m;
}
