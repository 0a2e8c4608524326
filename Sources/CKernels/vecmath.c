// Vectorised exp, tanh and sigmoid, the recurrent cells' row steps, the FMA peak probe, and
// clocks. The vector kernels are written once in vector_cells.h and built here for AVX2 and for
// AVX-512; the portable ones use libm.
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

// MARK: - AVX2 and AVX-512

#if RRL_X86
#define RRL_CELL_BLOCK 64
// Floats of gates per block of training rows (8 KB).
#define RRL_CELL_ROWS_FLOATS 2048

#define RRL_BITS 256
#define RRL_TARGET __attribute__((target("avx2,fma")))
#define RRL_ROUND_NEAREST(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define RRL_SELECT(x, c, PREDICATE, yes, no) _mm256_blendv_ps(no, yes, _mm256_cmp_ps(x, c, PREDICATE))
#define RRL_LOAD_UPTO(p, n) load_upto8(p, n)
#define RRL_STORE_UPTO(p, v, n) store_upto8(p, v, n)
#include "vector_cells.h"

#define RRL_BITS 512
#define RRL_TARGET __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define RRL_ROUND_NEAREST(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define RRL_SELECT(x, c, PREDICATE, yes, no) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, c, PREDICATE), no, yes)
#define RRL_LOAD_UPTO(p, n) load_upto16(p, n)
#define RRL_STORE_UPTO(p, v, n) store_upto16(p, v, n)
#include "vector_cells.h"

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

// MARK: - The tanh-squashed Gaussian of SAC

// Per element (row r, action j): log std clamped to [-20, 2], u = mean + exp(log std) e, a = tanh(u),
// and the element's term of log pi(a):
//   -e^2/2 - log std - log(2 pi)/2 - 2 (log 2 - u - softplus(-2u)),
// softplus(-2u) = max(-2u, 0) + log1p(exp(-2|u|)) (no overflow, no cancellation at any u). A row's
// log-probability adds its terms in action order from 0. The vector path runs 8 elements at a time
// with exp256 and tanh256 and a log1p of its own on [0, 1]; the portable one uses libm.
#define TG_LOG_STD_MIN (-20.0f)
#define TG_LOG_STD_MAX 2.0f
#define TG_HALF_LOG_TWO_PI 0.918938533204672742f
#define TG_LOG_TWO 0.693147180559945309f

static inline float tg_term(float e, float log_std, float u, float softplus_m2u) {
#pragma clang fp contract(off)
    float sq = -0.5f * e * e;
    float inner = TG_LOG_TWO - u - softplus_m2u;
    return sq - log_std - TG_HALF_LOG_TWO_PI - 2.0f * inner;
}

/// One element's gradient with the noise held fixed: d(loss)/d(mean) = du, through a = tanh(u) and
/// through -log(1 - tanh^2 u), whose derivative is 2a; d(loss)/d(raw log std) = du std e - dlogp
/// inside the clamp, 0 outside.
static inline void tg_element_gradient(float a, float da, float dlogp, float raw, float std, float e, float *d_mean,
                                       float *d_raw) {
#pragma clang fp contract(off)
    const float through_a = da * (1.0f - a * a), through_logp = dlogp * 2.0f * a;
    const float du = through_a + through_logp;
    *d_mean = du;
    const int inside = raw >= TG_LOG_STD_MIN && raw <= TG_LOG_STD_MAX;
    *d_raw = inside ? du * std * e - dlogp : 0.0f;
}

static void tanh_gaussian_portable(long rows, long A, const float *params, const float *noise, float *actions,
                                   float *logp) {
#pragma clang fp contract(off)
    for (long r = 0; r < rows; r++) {
        float sum = 0.0f;
        for (long j = 0; j < A; j++) {
            const float raw = params[r * 2 * A + A + j], e = noise[r * A + j];
            const float log_std = fminf(fmaxf(raw, TG_LOG_STD_MIN), TG_LOG_STD_MAX);
            const float std = expf(log_std);
            const float scaled = std * e;
            const float u = params[r * 2 * A + j] + scaled;
            actions[r * A + j] = tanhf(u);
            const float softplus = fmaxf(-2.0f * u, 0.0f) + log1pf(expf(-2.0f * fabsf(u)));
            sum += tg_term(e, log_std, u, softplus);
        }
        logp[r] = sum;
    }
}

static void tanh_gaussian_backward_portable(long rows, long A, const float *params, const float *noise,
                                            const float *actions, const float *action_gradient,
                                            const float *logp_gradient, float *gradient) {
    for (long r = 0; r < rows; r++) {
        for (long j = 0; j < A; j++) {
            const float raw = params[r * 2 * A + A + j];
            const float std = expf(fminf(fmaxf(raw, TG_LOG_STD_MIN), TG_LOG_STD_MAX));
            tg_element_gradient(actions[r * A + j], action_gradient ? action_gradient[r * A + j] : 0.0f, logp_gradient[r],
                                raw, std, noise[r * A + j], gradient + r * 2 * A + j, gradient + r * 2 * A + A + j);
        }
    }
}

#if RRL_X86
// log(x) for positive normal floats: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) by Cephes'
// logf polynomial in f = m - 1, plus e ln 2 (ln 2 in two parts). Within 2 ulp.
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 log256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i bits = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f800000)));  // [1, 2)
    const __m256 above = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356237309505f), _CMP_GE_OQ);
    e = _mm256_add_ps(e, _mm256_and_ps(above, one));
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), above);
    const __m256 f = _mm256_sub_ps(m, one);
    const __m256 f2 = _mm256_mul_ps(f, f);
    __m256 p = _mm256_set1_ps(7.0376836292e-2f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.1514610310e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.1676998740e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.2420140846e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.4249322787e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.6668057665e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.0000714765e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-2.4999993993e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(3.3333331174e-1f));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), f2);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), f2, y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(f, y));
}

// log1p(t) for t in [0, 1]: log(1 + t) plus (t - ((1 + t) - 1)) / (1 + t) for the rounding of 1 + t.
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 log1p_unit256(__m256 t) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 z = _mm256_add_ps(one, t);
    const __m256 correction = _mm256_div_ps(_mm256_sub_ps(t, _mm256_sub_ps(z, one)), z);
    return _mm256_add_ps(log256(z), correction);
}

// cos(2 pi u) for u in [0, 1): w = |u - round(u)| in [0, 1/2]; cos(2 pi w) = -cos(2 pi (1/2 - w)) folds
// w into [0, 1/4], then cos(x) or sin(pi/2 - x) on [0, pi/4] by Cephes' cosf and sinf polynomials.
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 cos_turns256(__m256 u) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), quarter = _mm256_set1_ps(0.25f);
    const __m256 w = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(u, _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    const __m256 far = _mm256_cmp_ps(w, quarter, _CMP_GT_OQ);
    const __m256 v = _mm256_blendv_ps(w, _mm256_sub_ps(half, w), far);  // [0, 1/4]
    const __m256 as_sin = _mm256_cmp_ps(v, _mm256_set1_ps(0.125f), _CMP_GT_OQ);
    const __m256 x = _mm256_mul_ps(_mm256_blendv_ps(v, _mm256_sub_ps(quarter, v), as_sin), _mm256_set1_ps(6.28318530717958648f));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 c = _mm256_set1_ps(2.443315711809948e-5f);
    c = _mm256_fmadd_ps(c, x2, _mm256_set1_ps(-1.388731625493765e-3f));
    c = _mm256_fmadd_ps(c, x2, _mm256_set1_ps(4.166664568298827e-2f));
    c = _mm256_fmadd_ps(_mm256_mul_ps(c, x2), x2, _mm256_fnmadd_ps(half, x2, _mm256_set1_ps(1.0f)));
    __m256 s = _mm256_set1_ps(-1.9515295891e-4f);
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(8.3321608736e-3f));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(-1.6666654611e-1f));
    s = _mm256_fmadd_ps(_mm256_mul_ps(s, x2), x, x);
    const __m256 y = _mm256_blendv_ps(c, s, as_sin);
    return _mm256_xor_ps(y, _mm256_and_ps(far, sign_mask));
}

/// Elements i..i+n (n <= 8) of the flattened rows x A: their means, raw log stds and noise, and
/// their rows (element i + q is action j of row r: i + q = r A + j).
static inline void tg_gather(long i, long n, long A, const float *params, const float *noise, float *mean, float *raw,
                             float *e, long *row) {
    long r = i / A, j = i % A;
    for (long q = 0; q < n; q++) {
        mean[q] = params[r * 2 * A + j];
        raw[q] = params[r * 2 * A + A + j];
        e[q] = noise[i + q];
        row[q] = r;
        if (++j == A) { j = 0; r++; }
    }
    for (long q = n; q < 8; q++) { mean[q] = 0.0f; raw[q] = 0.0f; e[q] = 0.0f; row[q] = r; }
}

__attribute__((target("avx2,fma")))
static void tanh_gaussian_avx2(long rows, long A, const float *params, const float *noise, float *actions, float *logp) {
    const long total = rows * A;
    for (long r = 0; r < rows; r++) logp[r] = 0.0f;
    for (long i = 0; i < total; i += 8) {
        const long n = total - i < 8 ? total - i : 8;
        float mean[8], raw[8], noise8[8], terms[8];
        long row[8];
        tg_gather(i, n, A, params, noise, mean, raw, noise8, row);
        const __m256 e = _mm256_loadu_ps(noise8);
        const __m256 log_std = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(raw), _mm256_set1_ps(TG_LOG_STD_MIN)),
                                             _mm256_set1_ps(TG_LOG_STD_MAX));
        const __m256 u = _mm256_add_ps(_mm256_loadu_ps(mean), _mm256_mul_ps(exp256(log_std), e));
        store_upto8(actions + i, tanh256(u), n);
        const __m256 m2u = _mm256_mul_ps(_mm256_set1_ps(-2.0f), u);
        const __m256 abs_u = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
        const __m256 softplus = _mm256_add_ps(_mm256_max_ps(m2u, _mm256_setzero_ps()),
                                              log1p_unit256(exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), abs_u))));
        // tg_term's operations, in its order.
        const __m256 sq = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), e), e);
        const __m256 inner = _mm256_sub_ps(_mm256_sub_ps(_mm256_set1_ps(TG_LOG_TWO), u), softplus);
        const __m256 term = _mm256_sub_ps(_mm256_sub_ps(_mm256_sub_ps(sq, log_std), _mm256_set1_ps(TG_HALF_LOG_TWO_PI)),
                                          _mm256_mul_ps(_mm256_set1_ps(2.0f), inner));
        _mm256_storeu_ps(terms, term);
        for (long q = 0; q < n; q++) logp[row[q]] += terms[q];
    }
}

__attribute__((target("avx2,fma")))
static void tanh_gaussian_backward_avx2(long rows, long A, const float *params, const float *noise, const float *actions,
                                        const float *action_gradient, const float *logp_gradient, float *gradient) {
    const long total = rows * A;
    for (long i = 0; i < total; i += 8) {
        const long n = total - i < 8 ? total - i : 8;
        float mean[8], raw[8], noise8[8], std[8];
        long row[8];
        tg_gather(i, n, A, params, noise, mean, raw, noise8, row);
        const __m256 log_std = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(raw), _mm256_set1_ps(TG_LOG_STD_MIN)),
                                             _mm256_set1_ps(TG_LOG_STD_MAX));
        _mm256_storeu_ps(std, exp256(log_std));
        for (long q = 0; q < n; q++) {
            const long x = i + q, r = row[q], j = x - r * A;
            tg_element_gradient(actions[x], action_gradient ? action_gradient[x] : 0.0f, logp_gradient[r], raw[q], std[q],
                                noise8[q], gradient + r * 2 * A + j, gradient + r * 2 * A + A + j);
        }
    }
}
#endif

// MARK: - Normal draws

// Box-Muller from pairs of uniforms: z = sqrt(-2 log u1) cos(2 pi u2), u1 in (0, 1], u2 in [0, 1).
static void box_muller_portable(long n, const float *u1, const float *u2, float *z) {
    for (long i = 0; i < n; i++) z[i] = sqrtf(-2.0f * logf(u1[i])) * cosf(6.28318530717958648f * u2[i]);
}

#if RRL_X86
__attribute__((target("avx2,fma")))
static void box_muller_avx2(long n, const float *u1, const float *u2, float *z) {
    for (long i = 0; i < n; i += 8) {
        const long k = n - i < 8 ? n - i : 8;
        const __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log256(load_upto8(u1 + i, k))));
        store_upto8(z + i, _mm256_mul_ps(radius, cos_turns256(load_upto8(u2 + i, k))), k);
    }
}
#endif

void rrl_box_muller(long n, const float *u1, const float *u2, float *z) {
#if RRL_X86
    if (use_avx2()) { box_muller_avx2(n, u1, u2, z); return; }
#endif
    box_muller_portable(n, u1, u2, z);
}

void rrl_tanh_gaussian(long rows, long A, const float *params, const float *noise, float *actions, float *logp) {
#if RRL_X86
    if (use_avx2()) { tanh_gaussian_avx2(rows, A, params, noise, actions, logp); return; }
#endif
    tanh_gaussian_portable(rows, A, params, noise, actions, logp);
}

void rrl_tanh_gaussian_backward(long rows, long A, const float *params, const float *noise, const float *actions,
                                const float *action_gradient, const float *logp_gradient, float *gradient) {
#if RRL_X86
    if (use_avx2()) {
        tanh_gaussian_backward_avx2(rows, A, params, noise, actions, action_gradient, logp_gradient, gradient);
        return;
    }
#endif
    tanh_gaussian_backward_portable(rows, A, params, noise, actions, action_gradient, logp_gradient, gradient);
}

// MARK: - Recurrent cells, one row

// A cell's update after its two products, gi = W_ih x + b_ih and gh = W_hh h + b_hh (gates in
// PyTorch's order), with the same operations, one rounding each, as the vector kernels above
// applied one after another. Acting keeps only the new state (in place); training also keeps the
// gates' activations (in place of gi) and tanh(c), for backward. Both run the same unit (portable,
// below) or chunk of 8 or 16 units (vector_cells.h).

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

static void gru_train_row_portable(long H, float *g, const float *gh, const float *hprev, float *h, float *hn) {
    for (long j = 0; j < H; j++) {
        gru_unit_t u = gru_unit(H, j, g, gh, hprev[j]);
        g[j] = u.r; g[H + j] = u.z; g[2 * H + j] = u.n;
        h[j] = u.h;
        if (hn) hn[j] = gh[2 * H + j];
    }
}

static void lstm_train_row_portable(long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
    for (long j = 0; j < H; j++) {
        lstm_unit_t u = lstm_unit(H, j, g, gh, cprev[j]);
        g[j] = u.i; g[H + j] = u.f; g[2 * H + j] = u.g; g[3 * H + j] = u.o;
        c[j] = u.c; tc[j] = u.t; h[j] = u.h;
    }
}

void rrl_gru_row(long H, const float *gi, const float *gh, float *h) {
#if RRL_X86
    if (use_avx2()) { if (rrl_kernels_use_avx512()) gru_row512(H, gi, gh, h); else gru_row256(H, gi, gh, h); return; }
#endif
    gru_row_portable(H, gi, gh, h);
}

void rrl_lstm_row(long H, const float *gi, const float *gh, float *h, float *c) {
#if RRL_X86
    if (use_avx2()) { if (rrl_kernels_use_avx512()) lstm_row512(H, gi, gh, h, c); else lstm_row256(H, gi, gh, h, c); return; }
#endif
    lstm_row_portable(H, gi, gh, h, c);
}

void rrl_gru_train_rows(long rows, long H, float *g, const float *gh, const float *hprev, float *h, float *hn) {
#if RRL_X86
    if (use_avx2()) {
        if (rrl_kernels_use_avx512()) gru_train_rows512(rows, H, g, gh, hprev, h, hn);
        else gru_train_rows256(rows, H, g, gh, hprev, h, hn);
        return;
    }
#endif
    for (long b = 0; b < rows; b++)
        gru_train_row_portable(H, g + b * 3 * H, gh + b * 3 * H, hprev + b * H, h + b * H, hn ? hn + b * H : NULL);
}

void rrl_lstm_train_rows(long rows, long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
#if RRL_X86
    if (use_avx2()) {
        if (rrl_kernels_use_avx512()) lstm_train_rows512(rows, H, g, gh, cprev, c, tc, h);
        else lstm_train_rows256(rows, H, g, gh, cprev, c, tc, h);
        return;
    }
#endif
    for (long b = 0; b < rows; b++)
        lstm_train_row_portable(H, g + b * 4 * H, gh + b * 4 * H, cprev + b * H, c + b * H, tc + b * H, h + b * H);
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
