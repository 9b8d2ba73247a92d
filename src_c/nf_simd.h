/* What every kernel source shares: 64-byte vectors written once for every
 * instruction set, the kernel paths and the processor checks that pick one.
 *
 * Vectors. A kernel body is written once with a vector type of the path's
 * register width (NF_VECTOR_TYPE) and the NF_V* macros below: GCC's and
 * clang's vector extensions, compiled to AVX-512, AVX2, SSE2 or NEON
 * registers by the function's target. Other compilers (MSVC) get structs of
 * lanes and loops over them: the same arithmetic in the same order,
 * vectorised as well as the compiler can.
 *
 * Paths. On x86-64 (GCC or clang) each kernel source is compiled three times
 * in one translation unit -- for AVX-512 (F and VL, with AVX2 and FMA), for AVX2 with
 * FMA, and for the baseline -- by NF_TARGET_BEGIN/END around an #include of
 * the body; the path is chosen once, when the module is imported (see
 * nf_path_runs). Elsewhere (ARM64: NEON is the baseline; MSVC) there is one,
 * the baseline, called "generic".
 */
#ifndef NF_SIMD_H
#define NF_SIMD_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && !defined(NF_NO_VECTOR_EXT)
#define NF_VECTOR_EXT 1
/* A vector of B bytes of T named N: one register of the path (B = 64 on
 * AVX-512, 32 on AVX2, 16 on SSE2 and NEON). */
#define NF_VECTOR_TYPE(N, T, B) typedef T N __attribute__((vector_size(B)))
#define NF_INLINE static inline __attribute__((always_inline))
#define NF_VZERO(a) ((a) = (__typeof__(a)){0})
#define NF_VLOAD(a, src) memcpy(&(a), (src), sizeof(a))
#define NF_VSTORE(dst, a) memcpy((dst), &(a), sizeof(a))
/* a += s * b (s a scalar): one fused multiply-add per lane where the target
 * has FMA (GCC and clang contract it). */
#define NF_VFMA(a, s, b) ((a) += (s) * (b))
/* a += b * c, lane by lane */
#define NF_VFMAV(a, b, c) ((a) += (b) * (c))
/* a *= s */
#define NF_VSCALE(a, s) ((a) *= (s))
/* a += b */
#define NF_VADD(a, b) ((a) += (b))
/* a, hidden from the optimiser: a product read back through it is rounded on
 * its own, never fused into a later sum (compilers choose which product of
 * x*y + z*w to fuse; this makes the choice ours). */
#define NF_VOPAQUE(a) __asm__("" : "+m"(a))
#else
#define NF_VECTOR_TYPE(N, T, B) typedef struct { T x[(B) / sizeof(T)]; } N
#if defined(_MSC_VER)
#define NF_INLINE static __forceinline
#else
#define NF_INLINE static inline
#endif
#define NF_VLANES(a) ((int)(sizeof((a).x) / sizeof((a).x[0])))
#define NF_VZERO(a) memset(&(a), 0, sizeof(a))
#define NF_VLOAD(a, src) memcpy(&(a), (src), sizeof(a))
#define NF_VSTORE(dst, a) memcpy((dst), &(a), sizeof(a))
#define NF_VFMA(a, s, b) \
    do { for (int l_ = 0; l_ < NF_VLANES(a); l_++) (a).x[l_] += (s) * (b).x[l_]; } while (0)
#define NF_VFMAV(a, b, c) \
    do { for (int l_ = 0; l_ < NF_VLANES(a); l_++) (a).x[l_] += (b).x[l_] * (c).x[l_]; } while (0)
#define NF_VSCALE(a, s) \
    do { for (int l_ = 0; l_ < NF_VLANES(a); l_++) (a).x[l_] *= (s); } while (0)
#define NF_VADD(a, b) \
    do { for (int l_ = 0; l_ < NF_VLANES(a); l_++) (a).x[l_] += (b).x[l_]; } while (0)
#define NF_VOPAQUE(a) ((void)0)
#endif

/* Unroll the loop that follows completely (its trip count is a small
 * constant): the vectors it indexes then live in registers, not memory. */
#if defined(__GNUC__) || defined(__clang__)
#define NF_UNROLL _Pragma("GCC unroll 32")
#else
#define NF_UNROLL
#endif

#define NF_CAT_(a, b) a##b
#define NF_CAT(a, b) NF_CAT_(a, b)
#define NF_CAT3(a, b, c) NF_CAT(NF_CAT(a, b), c)

/* X(n) for n = N, N-1, ..., 1: the cases of a switch over a group size that
 * must be a compile-time constant (so that its accumulators stay in registers). */
#define NF_UPTO_1(X) X(1)
#define NF_UPTO_2(X) X(2) NF_UPTO_1(X)
#define NF_UPTO_3(X) X(3) NF_UPTO_2(X)
#define NF_UPTO_4(X) X(4) NF_UPTO_3(X)
#define NF_UPTO_5(X) X(5) NF_UPTO_4(X)
#define NF_UPTO_6(X) X(6) NF_UPTO_5(X)
#define NF_UPTO_7(X) X(7) NF_UPTO_6(X)
#define NF_UPTO_8(X) X(8) NF_UPTO_7(X)
#define NF_UPTO_9(X) X(9) NF_UPTO_8(X)
#define NF_UPTO_10(X) X(10) NF_UPTO_9(X)
#define NF_UPTO_11(X) X(11) NF_UPTO_10(X)
#define NF_UPTO_12(X) X(12) NF_UPTO_11(X)

/* ------------------------------------------------------------------ paths */

enum { NF_PATH_GENERIC = 0, NF_PATH_AVX2 = 1, NF_PATH_AVX512 = 2, NF_N_PATHS = 3 };
static const char *const nf_path_names[NF_N_PATHS] = {"generic", "avx2", "avx512"};

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(NF_BASELINE_ONLY)
#define NF_MULTI_PATH 1
#define NF_TARGET_AVX512 "avx512f,avx512vl,avx2,fma,bmi2,popcnt"
#define NF_TARGET_AVX2 "avx2,fma"
#if defined(__clang__)
#define NF_PRAGMA_(x) _Pragma(#x)
#define NF_TARGET_BEGIN(t) \
    NF_PRAGMA_(clang attribute push(__attribute__((target(t))), apply_to = function))
#define NF_TARGET_END _Pragma("clang attribute pop")
#else
#define NF_PRAGMA_(x) _Pragma(#x)
#define NF_TARGET_BEGIN(t) _Pragma("GCC push_options") NF_PRAGMA_(GCC target(t))
#define NF_TARGET_END _Pragma("GCC pop_options")
#endif
#else
#define NF_MULTI_PATH 0
#endif

/* Whether this build has path p and this processor can run it. */
static inline int nf_path_runs(int p)
{
    if (p == NF_PATH_GENERIC)
        return 1;
#if NF_MULTI_PATH
    __builtin_cpu_init();
    if (p == NF_PATH_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (p == NF_PATH_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx2")
               && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")
               && __builtin_cpu_supports("popcnt");
#endif
    return 0;
}

/* The fastest path this build and processor have. */
static inline int nf_best_path(void)
{
    int p = NF_N_PATHS - 1;
    while (p > 0 && !nf_path_runs(p))
        p--;
    return p;
}

/* ------------------------------------------------------------------ exp */

/* exp(x) with only +, *, comparisons and bit moves, so that a loop of them
 * vectorises on every path: range reduction x = n ln2 + r, |r| <= ln2/2, a
 * degree-12 Taylor polynomial (truncation error below 2e-16 relative), and
 * 2^n applied as two exact powers of two (one rounding, as a single scaling
 * would: inf where exp overflows, subnormals and 0 where it underflows). */
NF_INLINE double nf_exp_d(double x)
{
    const double magic = 6755399441055744.0;          /* 1.5 * 2^52 */
    x = x < 760.0 ? x : 760.0;
    x = x > -760.0 ? x : -760.0;
    const double t = x * 1.4426950408889634 + magic;   /* round(x / ln2), in its bits */
    const double n = t - magic;
    double r = x - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* the integers n and n1 = round(n / 2) read off the bits of t and t1 */
    const double t1 = n * 0.5 + magic;
    int64_t ti, t1i, mi;
    memcpy(&ti, &t, 8);
    memcpy(&t1i, &t1, 8);
    memcpy(&mi, &magic, 8);
    const int64_t n1 = t1i - mi, n2 = (ti - mi) - n1;        /* |n1|, |n2| <= 549 */
    const int64_t b1 = (n1 + 1023) << 52, b2 = (n2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, 8);
    memcpy(&s2, &b2, 8);
    /* The select (a no-op but for NaN) keeps compilers from fusing the last
     * product into the caller's next addition: exp is rounded on its own. */
    const double e = (p * s1) * s2;
    return e < (double)INFINITY ? e : (double)INFINITY;
}

/* The float version: the same scheme, a degree-7 polynomial (about 1 ulp). */
NF_INLINE float nf_exp_f(float x)
{
    const float magic = 12582912.0f;                   /* 1.5 * 2^23 */
    x = x < 100.0f ? x : 100.0f;
    x = x > -110.0f ? x : -110.0f;
    const float t = x * 1.44269504f + magic;
    const float n = t - magic;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float t1 = n * 0.5f + magic;
    int32_t ti, t1i, mi;
    memcpy(&ti, &t, 4);
    memcpy(&t1i, &t1, 4);
    memcpy(&mi, &magic, 4);
    const int32_t n1 = t1i - mi, n2 = (ti - mi) - n1;        /* |n1|, |n2| <= 80 */
    const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    const float e = (p * s1) * s2;    /* rounded on its own, as in nf_exp_d */
    return e < INFINITY ? e : INFINITY;
}

#endif
