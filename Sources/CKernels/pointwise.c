// Pointwise kernels of the training step: ReLU and its backward, tanh/sigmoid backward, and the
// Adam update. Written as plain branch-free loops that the compiler vectorises; each exists twice,
// once compiled for AVX2/FMA (per-function target attribute, no global flags) and once for the
// baseline, chosen at run time like the other kernels.
#include "CKernels.h"
#include "vector_edges.h"
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
// The vector kernels' switch: AVX2 when the CPU has it, unless a test forces the portable path.
static int pointwise_use_avx2(void) { return rrl_vector_kernels_use_avx2(); }
#endif

#if defined(__x86_64__) || defined(__i386__)
#define DEFINE_BOTH(NAME, PARAMS, ARGS, BODY)                                   \
    __attribute__((target("avx2,fma"))) static void NAME##_avx2 PARAMS BODY     \
    static void NAME##_portable PARAMS BODY                                     \
    void NAME PARAMS {                                                          \
        if (pointwise_use_avx2()) NAME##_avx2 ARGS; else NAME##_portable ARGS;  \
    }
#else
#define DEFINE_BOTH(NAME, PARAMS, ARGS, BODY) void NAME PARAMS BODY
#endif

// ReLU and its backward are spelt out in vectors: the compiler's vectorised loop guards against
// overlap and runs the scalar loop when x and y are the same array, which is how layers call it.
// max(v, 0) with v first is v > 0 ? v : 0 for every input (NaN and -0 give +0), as the scalar loop.
#define RELU_SCALAR(i) do { y[i] = relu_scalar(x[i]); } while (0)
#define RELU_BACKWARD_SCALAR(i) do { float m = y[i] > 0.0f ? 1.0f : 0.0f; dx[i] = dy[i] * m; } while (0)

static void rrl_relu_portable(long n, const float *x, float *y) {
    for (long i = 0; i < n; i++) RELU_SCALAR(i);
}

static void rrl_relu_backward_portable(long n, const float *y, const float *dy, float *dx) {
    for (long i = 0; i < n; i++) RELU_BACKWARD_SCALAR(i);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx2,fma")))
static void rrl_relu_avx2(long n, const float *x, float *y) {
    const __m256 zero = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_max_ps(_mm256_loadu_ps(x + i), zero));
    for (; i < n; i++) RELU_SCALAR(i);
}

__attribute__((target("avx2,fma")))
static void rrl_relu_backward_avx2(long n, const float *y, const float *dy, float *dx) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 m = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_GT_OQ), one);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), m));
    }
    for (; i < n; i++) RELU_BACKWARD_SCALAR(i);
}
#endif

void rrl_relu(long n, const float *x, float *y) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) { rrl_relu_avx2(n, x, y); return; }
#endif
    rrl_relu_portable(n, x, y);
}

void rrl_relu_backward(long n, const float *y, const float *dy, float *dx) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) { rrl_relu_backward_avx2(n, y, dy, dx); return; }
#endif
    rrl_relu_backward_portable(n, y, dy, dx);
}

DEFINE_BOTH(rrl_tanh_backward, (long n, const float *y, const float *dy, float *dx), (n, y, dy, dx), {
    for (long i = 0; i < n; i++) { float v = y[i]; dx[i] = dy[i] * (1.0f - v * v); }
})

DEFINE_BOTH(rrl_sigmoid_backward, (long n, const float *y, const float *dy, float *dx), (n, y, dy, dx), {
    for (long i = 0; i < n; i++) { float v = y[i]; dx[i] = dy[i] * v * (1.0f - v); }
})

// sqrtf may set errno, so the compiler keeps it scalar: the AVX2 version spells the vector square root out.
#define ADAM_SCALAR_STEP(i)                                                       \
    do {                                                                          \
        float t = theta[i];                                                       \
        float gi = g[i] + coupled_decay * t;                                      \
        t *= shrink;                                                              \
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;                            \
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;                       \
        m[i] = mi;                                                                \
        v[i] = vi;                                                                \
        theta[i] = t - step_size * mi / (sqrtf(vi) * inv_sqrt_correction2 + epsilon); \
    } while (0)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx2,fma")))
static void rrl_adam_update_avx2(long n, float *theta, const float *g, float *m, float *v, float beta1, float beta2,
                                 float step_size, float inv_sqrt_correction2, float epsilon, float coupled_decay, float shrink) {
    const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2);
    const __m256 c1 = _mm256_set1_ps(1.0f - beta1), c2 = _mm256_set1_ps(1.0f - beta2);
    const __m256 lr = _mm256_set1_ps(step_size), ic = _mm256_set1_ps(inv_sqrt_correction2), eps = _mm256_set1_ps(epsilon);
    const __m256 wd = _mm256_set1_ps(coupled_decay), sh = _mm256_set1_ps(shrink);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_loadu_ps(theta + i);
        __m256 gi = _mm256_fmadd_ps(wd, t, _mm256_loadu_ps(g + i));
        t = _mm256_mul_ps(t, sh);
        __m256 mi = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(c1, gi));
        __m256 vi = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(c2, _mm256_mul_ps(gi, gi)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 denominator = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), ic, eps);
        _mm256_storeu_ps(theta + i, _mm256_sub_ps(t, _mm256_div_ps(_mm256_mul_ps(lr, mi), denominator)));
    }
    for (; i < n; i++) ADAM_SCALAR_STEP(i);
}
#endif

static void rrl_adam_update_portable(long n, float *theta, const float *g, float *m, float *v, float beta1, float beta2,
                                     float step_size, float inv_sqrt_correction2, float epsilon, float coupled_decay, float shrink) {
    for (long i = 0; i < n; i++) ADAM_SCALAR_STEP(i);
}

void rrl_adam_update(long n, float *theta, const float *g, float *m, float *v, float beta1, float beta2,
                     float step_size, float inv_sqrt_correction2, float epsilon, float coupled_decay, float shrink) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) {
        rrl_adam_update_avx2(n, theta, g, m, v, beta1, beta2, step_size, inv_sqrt_correction2, epsilon, coupled_decay, shrink);
        return;
    }
#endif
    rrl_adam_update_portable(n, theta, g, m, v, beta1, beta2, step_size, inv_sqrt_correction2, epsilon, coupled_decay, shrink);
}

// 1 when none of the n floats is NaN or infinite (exponent bits all ones), 0 otherwise.
#define ALL_FINITE_SCALAR(i) do { if (!isfinite(x[i])) return 0; } while (0)

static int rrl_all_finite_portable(long n, const float *x) {
    for (long i = 0; i < n; i++) ALL_FINITE_SCALAR(i);
    return 1;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma")))
static int rrl_all_finite_avx2(long n, const float *x) {
    const __m256i exponent = _mm256_set1_epi32(0x7f800000);
    long i = 0;
    for (; i + 32 <= n; i += 32) {  // four vectors per test: the loop is bound by loads, not branches
        __m256i e0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), exponent);
        __m256i e1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), exponent);
        __m256i e2 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 16)), exponent);
        __m256i e3 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 24)), exponent);
        __m256i bad = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi32(e0, exponent), _mm256_cmpeq_epi32(e1, exponent)),
                                      _mm256_or_si256(_mm256_cmpeq_epi32(e2, exponent), _mm256_cmpeq_epi32(e3, exponent)));
        if (!_mm256_testz_si256(bad, bad)) return 0;
    }
    for (; i < n; i++) ALL_FINITE_SCALAR(i);
    return 1;
}
#endif

int rrl_all_finite(long n, const float *x) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) return rrl_all_finite_avx2(n, x);
#endif
    return rrl_all_finite_portable(n, x);
}

// MARK: - Recurrent cells' backward step, one row
// The same operations in the same order as the Swift loops they replace, with no multiply-add
// fused (contraction off; the vector code uses separate multiplies and adds), so the bits match.

#pragma clang fp contract(off)
#define GRU_BACKWARD_SCALAR(j)                                                          \
    do {                                                                                \
        const float d = dh[j], r = g[j], z = g[H + j], n = g[2 * H + j];                \
        const float dn = d * (1.0f - z), dz = d * (hprev[j] - n);                       \
        dhp[j] = d * z;                                                                 \
        const float dan = dn * (1.0f - n * n), daz = dz * z * (1.0f - z);               \
        const float dar = dan * ghn[j] * r * (1.0f - r);                                \
        dgi[j] = dar; dgi[H + j] = daz; dgi[2 * H + j] = dan;                           \
        dgh[j] = dar; dgh[H + j] = daz; dgh[2 * H + j] = dan * r;                       \
    } while (0)

#define LSTM_BACKWARD_SCALAR(j)                                                                    \
    do {                                                                                           \
        const float i_ = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], t = tc[j];       \
        const float dO = dh[j] * t, dC = dc[j] + dh[j] * o * (1.0f - t * t);                       \
        const float dI = dC * gg, dG = dC * i_, dF = dC * cprev[j];                                \
        dcp[j] = dC * f;                                                                           \
        da[j] = dI * i_ * (1.0f - i_);                                                             \
        da[H + j] = dF * f * (1.0f - f);                                                           \
        da[2 * H + j] = dG * (1.0f - gg * gg);                                                     \
        da[3 * H + j] = dO * o * (1.0f - o);                                                       \
    } while (0)

static void rrl_gru_backward_row_portable(long H, const float *g, const float *ghn, const float *hprev, const float *dh,
                                          float *dhp, float *dgi, float *dgh) {
    for (long j = 0; j < H; j++) GRU_BACKWARD_SCALAR(j);
}

static void rrl_lstm_backward_row_portable(long H, const float *g, const float *tc, const float *cprev, const float *dh,
                                           const float *dc, float *dcp, float *da) {
    for (long j = 0; j < H; j++) LSTM_BACKWARD_SCALAR(j);
}

#if defined(__x86_64__) || defined(__i386__)
#define V_LOAD _mm256_loadu_ps
#define V_MUL _mm256_mul_ps
#define V_SUB _mm256_sub_ps
#define V_ADD _mm256_add_ps

__attribute__((target("avx2,fma")))
static void rrl_gru_backward_row_avx2(long H, const float *g, const float *ghn, const float *hprev, const float *dh,
                                      float *dhp, float *dgi, float *dgh) {
    const __m256 one = _mm256_set1_ps(1.0f);
    long j = 0;
    for (; j + 8 <= H; j += 8) {
        const __m256 d = V_LOAD(dh + j), r = V_LOAD(g + j), z = V_LOAD(g + H + j), n = V_LOAD(g + 2 * H + j);
        const __m256 dn = V_MUL(d, V_SUB(one, z)), dz = V_MUL(d, V_SUB(V_LOAD(hprev + j), n));
        _mm256_storeu_ps(dhp + j, V_MUL(d, z));
        const __m256 dan = V_MUL(dn, V_SUB(one, V_MUL(n, n)));
        const __m256 daz = V_MUL(V_MUL(dz, z), V_SUB(one, z));
        const __m256 dar = V_MUL(V_MUL(V_MUL(dan, V_LOAD(ghn + j)), r), V_SUB(one, r));
        _mm256_storeu_ps(dgi + j, dar); _mm256_storeu_ps(dgi + H + j, daz); _mm256_storeu_ps(dgi + 2 * H + j, dan);
        _mm256_storeu_ps(dgh + j, dar); _mm256_storeu_ps(dgh + H + j, daz); _mm256_storeu_ps(dgh + 2 * H + j, V_MUL(dan, r));
    }
    for (; j < H; j++) GRU_BACKWARD_SCALAR(j);
}

__attribute__((target("avx2,fma")))
static void rrl_lstm_backward_row_avx2(long H, const float *g, const float *tc, const float *cprev, const float *dh,
                                       const float *dc, float *dcp, float *da) {
    const __m256 one = _mm256_set1_ps(1.0f);
    long j = 0;
    for (; j + 8 <= H; j += 8) {
        const __m256 i_ = V_LOAD(g + j), f = V_LOAD(g + H + j), gg = V_LOAD(g + 2 * H + j), o = V_LOAD(g + 3 * H + j);
        const __m256 t = V_LOAD(tc + j), d = V_LOAD(dh + j);
        const __m256 dO = V_MUL(d, t);
        const __m256 dC = V_ADD(V_LOAD(dc + j), V_MUL(V_MUL(d, o), V_SUB(one, V_MUL(t, t))));
        const __m256 dI = V_MUL(dC, gg), dG = V_MUL(dC, i_), dF = V_MUL(dC, V_LOAD(cprev + j));
        _mm256_storeu_ps(dcp + j, V_MUL(dC, f));
        _mm256_storeu_ps(da + j, V_MUL(V_MUL(dI, i_), V_SUB(one, i_)));
        _mm256_storeu_ps(da + H + j, V_MUL(V_MUL(dF, f), V_SUB(one, f)));
        _mm256_storeu_ps(da + 2 * H + j, V_MUL(dG, V_SUB(one, V_MUL(gg, gg))));
        _mm256_storeu_ps(da + 3 * H + j, V_MUL(V_MUL(dO, o), V_SUB(one, o)));
    }
    for (; j < H; j++) LSTM_BACKWARD_SCALAR(j);
}
#endif

void rrl_gru_backward_row(long H, const float *g, const float *ghn, const float *hprev, const float *dh, float *dhp,
                          float *dgi, float *dgh) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) { rrl_gru_backward_row_avx2(H, g, ghn, hprev, dh, dhp, dgi, dgh); return; }
#endif
    rrl_gru_backward_row_portable(H, g, ghn, hprev, dh, dhp, dgi, dgh);
}

void rrl_lstm_backward_row(long H, const float *g, const float *tc, const float *cprev, const float *dh, const float *dc,
                           float *dcp, float *da) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) { rrl_lstm_backward_row_avx2(H, g, tc, cprev, dh, dc, dcp, da); return; }
#endif
    rrl_lstm_backward_row_portable(H, g, tc, cprev, dh, dc, dcp, da);
}

// MARK: - Column sums (bias gradients)
// sum[j] += x[r][j] for r = 0, 1, ... in order: the same additions as a row-by-row loop, with the
// running sums of 32 columns held in registers instead of stored and reloaded for every row.

static void rrl_add_column_sums_portable(long rows, long width, const float *x, float *sum) {
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < width; j++) sum[j] += x[r * width + j];
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma")))
static void rrl_add_column_sums_avx2(long rows, long width, const float *x, float *sum) {
    long j = 0;
    for (; j + 32 <= width; j += 32) {
        __m256 s0 = _mm256_loadu_ps(sum + j), s1 = _mm256_loadu_ps(sum + j + 8), s2 = _mm256_loadu_ps(sum + j + 16),
               s3 = _mm256_loadu_ps(sum + j + 24);
        for (long r = 0; r < rows; r++) {
            const float *row = x + r * width + j;
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(row));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(row + 8));
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(row + 16));
            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(row + 24));
        }
        _mm256_storeu_ps(sum + j, s0); _mm256_storeu_ps(sum + j + 8, s1);
        _mm256_storeu_ps(sum + j + 16, s2); _mm256_storeu_ps(sum + j + 24, s3);
    }
    for (; j + 8 <= width; j += 8) {
        __m256 s0 = _mm256_loadu_ps(sum + j);
        for (long r = 0; r < rows; r++) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + r * width + j));
        _mm256_storeu_ps(sum + j, s0);
    }
    for (; j < width; j++) {
        float t = sum[j];
        for (long r = 0; r < rows; r++) t += x[r * width + j];
        sum[j] = t;
    }
}
#endif

void rrl_add_column_sums(long rows, long width, const float *x, float *sum) {
#if defined(__x86_64__) || defined(__i386__)
    if (pointwise_use_avx2()) { rrl_add_column_sums_avx2(rows, width, x, sum); return; }
#endif
    rrl_add_column_sums_portable(rows, width, x, sum);
}
