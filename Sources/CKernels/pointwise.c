// Pointwise kernels of the training step: ReLU and its backward, tanh/sigmoid backward, and the
// Adam update. Written as plain branch-free loops that the compiler vectorises; each exists twice,
// once compiled for AVX2/FMA (per-function target attribute, no global flags) and once for the
// baseline, chosen at run time like the other kernels.
#include "CKernels.h"
#include <math.h>

static int pointwise_use_avx2(void) { return rrl_cpu_has_avx2_fma(); }

#define DEFINE_BOTH(NAME, PARAMS, ARGS, BODY)                                   \
    __attribute__((target("avx2,fma"))) static void NAME##_avx2 PARAMS BODY     \
    static void NAME##_portable PARAMS BODY                                     \
    void NAME PARAMS {                                                          \
        if (pointwise_use_avx2()) NAME##_avx2 ARGS; else NAME##_portable ARGS;  \
    }

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

DEFINE_BOTH(rrl_adam_update,
            (long n, float *theta, const float *g, float *m, float *v, float beta1, float beta2, float step_size,
             float inv_sqrt_correction2, float epsilon, float coupled_decay, float shrink),
            (n, theta, g, m, v, beta1, beta2, step_size, inv_sqrt_correction2, epsilon, coupled_decay, shrink), {
    for (long i = 0; i < n; i++) {
        float t = theta[i];
        float gi = g[i] + coupled_decay * t;
        t *= shrink;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        theta[i] = t - step_size * mi / (sqrtf(vi) * inv_sqrt_correction2 + epsilon);
    }
})
