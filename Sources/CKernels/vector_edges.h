// Private helpers shared by the kernels: scalar ReLU; the partial last vector of a row (loads and
// stores of the first n < 8 floats through a small buffer, as AVX2's masked loads and stores are
// slow on some CPUs, and of the first n < 16 with AVX-512's masks); the AVX-512 switch.
#ifndef RRL_VECTOR_EDGES_H
#define RRL_VECTOR_EDGES_H

// ReLU of one float, the kernels' one definition: v > 0 ? v : 0 (NaN and -0 give +0, as
// _mm256_max_ps(v, 0) does with v first).
static inline float relu_scalar(float v) { return v > 0.0f ? v : 0.0f; }

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// 8 floats from p, or its first n (the rest 0) when n < 8; and the converse store.
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 load_upto8(const float *p, long n) {
    if (n >= 8) return _mm256_loadu_ps(p);
    float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (long k = 0; k < n; k++) buf[k] = p[k];
    return _mm256_loadu_ps(buf);
}

__attribute__((target("avx2,fma"), always_inline))
static inline void store_upto8(float *p, __m256 v, long n) {
    if (n >= 8) { _mm256_storeu_ps(p, v); return; }
    float buf[8];
    _mm256_storeu_ps(buf, v);
    for (long k = 0; k < n; k++) p[k] = buf[k];
}

// The same for 16 floats, with AVX-512's masked loads and stores (which never touch the lanes
// left out).
__attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))
static inline __m512 load_upto16(const float *p, long n) {
    if (n >= 16) return _mm512_loadu_ps(p);
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}

__attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))
static inline void store_upto16(float *p, __m512 v, long n) {
    if (n >= 16) { _mm512_storeu_ps(p, v); return; }
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}

// 1 when the one-row products and the cells' row steps use AVX-512 (the CPU has it and
// rrl_set_allow_avx512 has not turned it off); defined in gemm.c.
int rrl_kernels_use_avx512(void);

#endif
#endif
