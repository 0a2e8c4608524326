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

DEFINE_BOTH(rrl_relu, (long n, const float *x, float *y), (n, x, y), {
    for (long i = 0; i < n; i++) { float v = x[i]; y[i] = v > 0.0f ? v : 0.0f; }
})

DEFINE_BOTH(rrl_relu_backward, (long n, const float *y, const float *dy, float *dx), (n, y, dy, dx), {
    for (long i = 0; i < n; i++) { float m = y[i] > 0.0f ? 1.0f : 0.0f; dx[i] = dy[i] * m; }
})

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
