/* What the dense epoch (dense.c, nndl_fast/_dense.pyx) and the conv engine
 * (convnet.c) share at run time, written once for GCC, clang and MSVC: the
 * team's spin barrier and the softmax of a row (static inline: each extension
 * module compiles its own copy of the one body). */
#ifndef NF_RUNTIME_H
#define NF_RUNTIME_H
#include <math.h>

/* ------------------------------------------------------------ the barrier */

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#define NF_YIELD() SwitchToThread()
#else
#include <sched.h>
#define NF_YIELD() sched_yield()
#endif

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#include <immintrin.h>
#define NF_PAUSE() _mm_pause()
#else
#define NF_PAUSE() ((void)0)
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
typedef long nf_atomic_int;
#define NF_ATOMIC_DEC(p) _InterlockedDecrement(p)
#define NF_ATOMIC_STORE(p, v) _InterlockedExchange((p), (v))     /* a full fence */
#if defined(_M_ARM64)
#define NF_ACQUIRE_FENCE() __dmb(_ARM64_BARRIER_ISH)
#else
#define NF_ACQUIRE_FENCE() _ReadWriteBarrier()   /* x86 loads are acquires already */
#endif
static __forceinline long nf_atomic_load_acquire(volatile long *p)
{
    const long v = *p;
    NF_ACQUIRE_FENCE();
    return v;
}
#define NF_ATOMIC_LOAD_ACQUIRE(p) nf_atomic_load_acquire(p)
#else
typedef int nf_atomic_int;
#define NF_ATOMIC_DEC(p) __atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)
#define NF_ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define NF_ATOMIC_LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#endif

#if defined(_MSC_VER)
#define NF_LINE_ALIGNED __declspec(align(64))
#define NF_LINE_ALIGNED_AFTER
#else
#define NF_LINE_ALIGNED
#define NF_LINE_ALIGNED_AFTER __attribute__((aligned(64)))
#endif

/* A barrier for the threads of one team: sense-reversing, on a shared flag (no
 * system call per crossing). OpenMP's own barrier spins for a long time before
 * it sleeps: when other processes keep the machine busy and a teammate has
 * been preempted, every crossing then costs a scheduler time slice. This one
 * pauses `spins` times, then yields the processor (often to that teammate)
 * between looks, so that an oversubscribed machine slows down instead of
 * stalling. On a cache line of its own, wherever it is declared: its writes
 * must not evict the data around it from the other threads' caches. */
typedef NF_LINE_ALIGNED struct {
    nf_atomic_int count;        /* threads yet to arrive */
    nf_atomic_int sense;        /* flips when the last one arrives */
    int n_threads;
    int spins;
} NF_LINE_ALIGNED_AFTER nf_barrier;

/* The pauses before a waiting thread yields, as each team was tuned. */
#define NF_DENSE_SPINS 4000
#define NF_CONV_SPINS 2000

/* Before the team meets at it; *local_sense starts at 0 in every thread. */
static inline void nf_barrier_init(nf_barrier *b, int n_threads, int spins)
{
    b->count = n_threads;
    b->sense = 0;
    b->n_threads = n_threads;
    b->spins = spins;
}

static inline void nf_barrier_wait(nf_barrier *b, int *local_sense)
{
    const int sense = !*local_sense;
    *local_sense = sense;
    if (b->n_threads <= 1)
        return;
    if (NF_ATOMIC_DEC(&b->count) == 0) {
        /* Last to arrive: re-arm, then release the others (the release store
         * publishes every write made before the barrier). */
        NF_ATOMIC_STORE(&b->count, b->n_threads);
        NF_ATOMIC_STORE(&b->sense, sense);
        return;
    }
    for (int spins = 0; NF_ATOMIC_LOAD_ACQUIRE(&b->sense) != sense; spins++) {
        if (spins < b->spins)
            NF_PAUSE();
        else
            NF_YIELD();
    }
}

/* ---------------------------------------------------------- activations */

/* The activation codes of every kernel (nndl_fast.reference.activations'
 * ACTIVATION_TABLE gives each its code; the extensions check it at import). */
enum { NF_LINEAR = 0, NF_SIGMOID = 1, NF_TANH = 2, NF_RELU = 3 };

/* ------------------------------------------------------------ softmax */

/* p[j] = e^(z[j] - max z) / sum_k e^(z[k] - max z) for j < n, by libm's exp;
 * the sum in the order k = 0, 1, ... p may be z. */
#define NF_DEFINE_SOFTMAX(T, SUF, EXP)                     \
    static inline void nf_softmax_##SUF(const T *z, T *p, int n) \
    {                                                      \
        T mx = z[0], s = 0;                                \
        for (int j = 1; j < n; j++)                        \
            if (z[j] > mx)                                 \
                mx = z[j];                                 \
        for (int j = 0; j < n; j++) {                      \
            p[j] = EXP(z[j] - mx);                         \
            s += p[j];                                     \
        }                                                  \
        for (int j = 0; j < n; j++)                        \
            p[j] /= s;                                     \
    }
NF_DEFINE_SOFTMAX(float, f, expf)
NF_DEFINE_SOFTMAX(double, d, exp)
#undef NF_DEFINE_SOFTMAX

#endif
