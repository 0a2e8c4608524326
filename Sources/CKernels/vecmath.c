// Vectorised exp, tanh and sigmoid, the FMA peak probe, and clocks.
//
// exp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts for exact reduction), then a
// degree-6 minimax polynomial for exp(r) and 2^n built in the exponent bits (Cephes' expf scheme).
// tanh: (1 - t) / (1 + t) with t = exp(-2|x|), sign restored; for |x| < 0.3 an odd Taylor
// polynomial to x^13 avoids the cancellation in 1 - t.
// sigmoid: 1 / (1 + exp(-x)).
#include "CKernels.h"
#include "vector_edges.h"

#include <math.h>
#include <stdint.h>
#include <time.h>
#include <sys/resource.h>

#if defined(__x86_64__) || defined(__i386__)
#define RRL_X86 1
#include <immintrin.h>
#endif

static int force_portable = 0;
void rrl_set_force_portable(int force) { __atomic_store_n(&force_portable, force, __ATOMIC_RELAXED); }

static int use_avx2(void) {
    return !__atomic_load_n(&force_portable, __ATOMIC_RELAXED) && rrl_cpu_has_avx2_fma();
}
int rrl_vector_kernels_use_avx2(void) { return use_avx2(); }

// Odd Taylor coefficients of tanh: x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925 + ...
#define T3 (-3.33333333333333333e-1f)
#define T5 (1.33333333333333333e-1f)
#define T7 (-5.39682539682539683e-2f)
#define T9 (2.18694885361552028e-2f)
#define T11 (-8.86323552990219657e-3f)
#define T13 (3.59212803657248102e-3f)

// MARK: - Portable (scalar, libm)

static inline float sigmoid_scalar(float x) { return 1.0f / (1.0f + expf(-x)); }

static void vexp_portable(long n, const float *x, float *y) {
    for (long i = 0; i < n; i++) y[i] = expf(x[i]);
}
static void vtanh_portable(long n, const float *x, float *y) {
    for (long i = 0; i < n; i++) y[i] = tanhf(x[i]);
}
static void vsigmoid_portable(long n, const float *x, float *y) {
    for (long i = 0; i < n; i++) y[i] = sigmoid_scalar(x[i]);
}
static void velu_portable(long n, const float *x, float *y) {
    for (long i = 0; i < n; i++) { float v = x[i]; y[i] = v > 0.0f ? v : expm1f(v); }
}

// MARK: - AVX2

#if RRL_X86
__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n in [-127, 128]; split as 2^(n/2) * 2^(n - n/2) so that n = 128 and n = -127 stay finite/normal.
    __m256i n = _mm256_cvtps_epi32(fx);
    __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

__attribute__((target("avx2,fma")))
static inline __m256 sigmoid256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

__attribute__((target("avx2,fma")))
static inline __m256 tanh256(__m256 x) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(sign_mask, x);
    __m256 t = exp256(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
    __m256 x2 = _mm256_mul_ps(ax, ax);
    __m256 p = _mm256_set1_ps(T13);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(T11));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(T9));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(T7));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(T5));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(T3));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, x2), ax, ax);
    __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.3f), _CMP_LT_OQ));
    return _mm256_or_ps(y, _mm256_and_ps(x, sign_mask));
}

// ELU: x for x > 0, else expm1(x) = 2^n (expm1(r) + 1) - 1 = 2^n expm1(r) + (2^n - 1) with
// x = n ln 2 + r, |r| <= ln(2)/2, and expm1(r) by its Taylor series to r^8 (error below 3e-10):
// accurate near 0, where exp(x) - 1 would cancel. Below -87 the result is -1 in float.
__attribute__((target("avx2,fma")))
static inline __m256 elu256(__m256 x) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    __m256 v = _mm256_max_ps(_mm256_min_ps(x, zero), _mm256_set1_ps(-87.0f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), v);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    __m256 em = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r);
    // 2^n for n in [-126, 0]: a normal float built from its exponent bits.
    __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23));
    __m256 negative = _mm256_fmadd_ps(s, em, _mm256_sub_ps(s, one));
    return _mm256_blendv_ps(negative, x, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
}

#define RRL_DEFINE_ARRAY_AVX2(NAME, VFUNC)                                         \
    __attribute__((target("avx2,fma"))) static void NAME(long n, const float *x, float *y) { \
        long i = 0;                                                                \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, VFUNC(_mm256_loadu_ps(x + i))); \
        if (i < n) store_upto8(y + i, VFUNC(load_upto8(x + i, n - i)), n - i);    \
    }
RRL_DEFINE_ARRAY_AVX2(vexp_avx2, exp256)
RRL_DEFINE_ARRAY_AVX2(vtanh_avx2, tanh256)
RRL_DEFINE_ARRAY_AVX2(vsigmoid_avx2, sigmoid256)
RRL_DEFINE_ARRAY_AVX2(velu_avx2, elu256)
#undef RRL_DEFINE_ARRAY_AVX2
#endif

void rrl_vexp(long n, const float *x, float *y) {
#if RRL_X86
    if (use_avx2()) { vexp_avx2(n, x, y); return; }
#endif
    vexp_portable(n, x, y);
}

void rrl_vtanh(long n, const float *x, float *y) {
#if RRL_X86
    if (use_avx2()) { vtanh_avx2(n, x, y); return; }
#endif
    vtanh_portable(n, x, y);
}

void rrl_vsigmoid(long n, const float *x, float *y) {
#if RRL_X86
    if (use_avx2()) { vsigmoid_avx2(n, x, y); return; }
#endif
    vsigmoid_portable(n, x, y);
}

void rrl_velu(long n, const float *x, float *y) {
#if RRL_X86
    if (use_avx2()) { velu_avx2(n, x, y); return; }
#endif
    velu_portable(n, x, y);
}

// MARK: - Recurrent cells, one row

// A cell's update after its two products, gi = W_ih x + b_ih and gh = W_hh h + b_hh (gates in
// PyTorch's order), with the same operations, one rounding each, as the vector kernels above
// applied one after another. Acting keeps only the new state (in place); training also keeps the
// gates' activations (in place of gi) and tanh(c), for backward. Both run the same unit (portable)
// or chunk of 8 units (AVX2) below.

typedef struct { float r, z, n, h; } gru_unit_t;
typedef struct { float i, f, g, o, c, t, h; } lstm_unit_t;

static inline gru_unit_t gru_unit(long H, long j, const float *gi, const float *gh, float hprev) {
    gru_unit_t u;
    // Products apart from sums (separate statements are never fused into one rounding).
    u.r = sigmoid_scalar(gi[j] + gh[j]);
    u.z = sigmoid_scalar(gi[H + j] + gh[H + j]);
    float rg = u.r * gh[2 * H + j];
    u.n = tanhf(gi[2 * H + j] + rg);
    float step = u.z * (hprev - u.n);
    u.h = u.n + step;
    return u;
}

static inline lstm_unit_t lstm_unit(long H, long j, const float *gi, const float *gh, float cprev) {
    lstm_unit_t u;
    u.i = sigmoid_scalar(gi[j] + gh[j]);
    u.f = sigmoid_scalar(gi[H + j] + gh[H + j]);
    u.g = tanhf(gi[2 * H + j] + gh[2 * H + j]);
    u.o = sigmoid_scalar(gi[3 * H + j] + gh[3 * H + j]);
    float kept = u.f * cprev, added = u.i * u.g;
    u.c = kept + added;
    u.t = tanhf(u.c);
    u.h = u.o * u.t;
    return u;
}

static void gru_row_portable(long H, const float *gi, const float *gh, float *h) {
    for (long j = 0; j < H; j++) h[j] = gru_unit(H, j, gi, gh, h[j]).h;
}

static void lstm_row_portable(long H, const float *gi, const float *gh, float *h, float *c) {
    for (long j = 0; j < H; j++) {
        lstm_unit_t u = lstm_unit(H, j, gi, gh, c[j]);
        c[j] = u.c;
        h[j] = u.h;
    }
}

static void gru_train_row_portable(long H, float *g, const float *gh, const float *hprev, float *h) {
    for (long j = 0; j < H; j++) {
        gru_unit_t u = gru_unit(H, j, g, gh, hprev[j]);
        g[j] = u.r; g[H + j] = u.z; g[2 * H + j] = u.n;
        h[j] = u.h;
    }
}

static void lstm_train_row_portable(long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
    for (long j = 0; j < H; j++) {
        lstm_unit_t u = lstm_unit(H, j, g, gh, cprev[j]);
        g[j] = u.i; g[H + j] = u.f; g[2 * H + j] = u.g; g[3 * H + j] = u.o;
        c[j] = u.c; tc[j] = u.t; h[j] = u.h;
    }
}

#if RRL_X86
typedef struct { __m256 r, z, n, h; } gru_chunk_t;
typedef struct { __m256 i, f, g, o, c, t, h; } lstm_chunk_t;

/// Units j..j+8 (the first `n` of them valid) of a GRU step.
__attribute__((target("avx2,fma"), always_inline))
static inline gru_chunk_t gru_chunk(long H, long j, long n, const float *gi, const float *gh, const float *hprev) {
    gru_chunk_t u;
    u.r = sigmoid256(_mm256_add_ps(load_upto8(gi + j, n), load_upto8(gh + j, n)));
    u.z = sigmoid256(_mm256_add_ps(load_upto8(gi + H + j, n), load_upto8(gh + H + j, n)));
    u.n = tanh256(_mm256_add_ps(load_upto8(gi + 2 * H + j, n), _mm256_mul_ps(u.r, load_upto8(gh + 2 * H + j, n))));
    u.h = _mm256_add_ps(u.n, _mm256_mul_ps(u.z, _mm256_sub_ps(load_upto8(hprev + j, n), u.n)));
    return u;
}

/// Units j..j+8 (the first `n` of them valid) of an LSTM step.
__attribute__((target("avx2,fma"), always_inline))
static inline lstm_chunk_t lstm_chunk(long H, long j, long n, const float *gi, const float *gh, const float *cprev) {
    lstm_chunk_t u;
    u.i = sigmoid256(_mm256_add_ps(load_upto8(gi + j, n), load_upto8(gh + j, n)));
    u.f = sigmoid256(_mm256_add_ps(load_upto8(gi + H + j, n), load_upto8(gh + H + j, n)));
    u.g = tanh256(_mm256_add_ps(load_upto8(gi + 2 * H + j, n), load_upto8(gh + 2 * H + j, n)));
    u.o = sigmoid256(_mm256_add_ps(load_upto8(gi + 3 * H + j, n), load_upto8(gh + 3 * H + j, n)));
    u.c = _mm256_add_ps(_mm256_mul_ps(u.f, load_upto8(cprev + j, n)), _mm256_mul_ps(u.i, u.g));
    u.t = tanh256(u.c);
    u.h = _mm256_mul_ps(u.o, u.t);
    return u;
}

__attribute__((target("avx2,fma")))
static void gru_row_avx2(long H, const float *gi, const float *gh, float *h) {
    for (long j = 0; j < H; j += 8) store_upto8(h + j, gru_chunk(H, j, H - j, gi, gh, h).h, H - j);
}

__attribute__((target("avx2,fma")))
static void lstm_row_avx2(long H, const float *gi, const float *gh, float *h, float *c) {
    for (long j = 0; j < H; j += 8) {
        lstm_chunk_t u = lstm_chunk(H, j, H - j, gi, gh, c);
        store_upto8(c + j, u.c, H - j);
        store_upto8(h + j, u.h, H - j);
    }
}

__attribute__((target("avx2,fma")))
static void gru_train_row_avx2(long H, float *g, const float *gh, const float *hprev, float *h) {
    for (long j = 0; j < H; j += 8) {
        const long n = H - j;
        gru_chunk_t u = gru_chunk(H, j, n, g, gh, hprev);
        store_upto8(g + j, u.r, n);
        store_upto8(g + H + j, u.z, n);
        store_upto8(g + 2 * H + j, u.n, n);
        store_upto8(h + j, u.h, n);
    }
}

__attribute__((target("avx2,fma")))
static void lstm_train_row_avx2(long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
    for (long j = 0; j < H; j += 8) {
        const long n = H - j;
        lstm_chunk_t u = lstm_chunk(H, j, n, g, gh, cprev);
        store_upto8(g + j, u.i, n);
        store_upto8(g + H + j, u.f, n);
        store_upto8(g + 2 * H + j, u.g, n);
        store_upto8(g + 3 * H + j, u.o, n);
        store_upto8(c + j, u.c, n);
        store_upto8(tc + j, u.t, n);
        store_upto8(h + j, u.h, n);
    }
}
#endif

void rrl_gru_row(long H, const float *gi, const float *gh, float *h) {
#if RRL_X86
    if (use_avx2()) { gru_row_avx2(H, gi, gh, h); return; }
#endif
    gru_row_portable(H, gi, gh, h);
}

void rrl_lstm_row(long H, const float *gi, const float *gh, float *h, float *c) {
#if RRL_X86
    if (use_avx2()) { lstm_row_avx2(H, gi, gh, h, c); return; }
#endif
    lstm_row_portable(H, gi, gh, h, c);
}

void rrl_gru_train_row(long H, float *g, const float *gh, const float *hprev, float *h) {
#if RRL_X86
    if (use_avx2()) { gru_train_row_avx2(H, g, gh, hprev, h); return; }
#endif
    gru_train_row_portable(H, g, gh, hprev, h);
}

void rrl_lstm_train_row(long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
#if RRL_X86
    if (use_avx2()) { lstm_train_row_avx2(H, g, gh, cprev, c, tc, h); return; }
#endif
    lstm_train_row_portable(H, g, gh, cprev, c, tc, h);
}

// MARK: - Clocks

double rrl_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double rrl_process_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// MARK: - FMA peak probe

#if RRL_X86
__attribute__((target("avx2,fma"), noinline))
static float fma_chains_avx2(long iterations) {
    // 12 independent chains: enough to cover FMA latency (4) x throughput (2 per cycle).
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
           a9 = a0, a10 = a0, a11 = a0;
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
#endif

__attribute__((noinline)) static float fma_chains_portable(long iterations) {
    float acc[8][4];
    for (int i = 0; i < 8; i++) for (int j = 0; j < 4; j++) acc[i][j] = 1.0f;
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < 8; i++) for (int j = 0; j < 4; j++) acc[i][j] = acc[i][j] * 0.999999f + 1e-7f;
        __asm__ volatile("" : : "r"(&acc[0][0]) : "memory");
    }
    float s = 0.0f;
    for (int i = 0; i < 8; i++) for (int j = 0; j < 4; j++) s += acc[i][j];
    return s;
}

volatile float rrl_peak_sink;

double rrl_measure_fma_peak_gflops(double seconds) {
    int avx2 = rrl_cpu_has_avx2_fma();
    double flops_per_iter = avx2 ? 12.0 * 8.0 * 2.0 : 32.0 * 2.0;
    long iterations = 1 << 16;
    double best = 0.0, start_all = rrl_now_seconds();
    // Repeat short bursts and keep the best: the machine is shared, interruptions only slow a burst.
    while (rrl_now_seconds() - start_all < seconds) {
        double t0 = rrl_now_seconds();
#if RRL_X86
        rrl_peak_sink = avx2 ? fma_chains_avx2(iterations) : fma_chains_portable(iterations);
#else
        rrl_peak_sink = fma_chains_portable(iterations);
#endif
        double dt = rrl_now_seconds() - t0;
        if (dt < 2e-3) { iterations *= 2; continue; }
        double g = flops_per_iter * (double)iterations / dt * 1e-9;
        if (g > best) best = g;
    }
    return best;
}
