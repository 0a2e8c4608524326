// Pointwise kernels of the training step: ReLU and its backward, tanh/sigmoid backward, and the
// Adam update. Written as plain branch-free loops that the compiler vectorises; each exists twice,
// once compiled for AVX2/FMA (per-function target attribute, no global flags) and once for the
// baseline, chosen at run time like the other kernels.
#include "CKernels.h"
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
static int pointwise_use_avx2(void) { return rrl_cpu_has_avx2_fma(); }
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
#define RELU_SCALAR(i) do { float v = x[i]; y[i] = v > 0.0f ? v : 0.0f; } while (0)
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
    if (rrl_vector_kernels_use_avx2()) return rrl_all_finite_avx2(n, x);  // (a test forces the portable path)
#endif
    return rrl_all_finite_portable(n, x);
}
