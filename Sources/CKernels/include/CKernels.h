// CKernels: the few compute kernels that must run near the machine's peak.
//
// Everything here is row-major single precision. The AVX2/FMA code is compiled with
// per-function target attributes and chosen at run time, so a plain `swift build -c release`
// (which targets baseline x86-64) still runs at full speed on AVX2 machines, and the
// portable code runs everywhere else (arm64 included).
#ifndef RRL_CKERNELS_H
#define RRL_CKERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Copies n floats (not overlapping). Up to 8 are moved inline: the replay sampler copies a few
/// floats per field and step, where a call into libc's memmove costs more than the copy.
static inline void rrl_copy_floats(float *dst, const float *src, long n) {
    switch (n) {
    case 8: dst[7] = src[7]; /* fall through */
    case 7: dst[6] = src[6]; /* fall through */
    case 6: dst[5] = src[5]; /* fall through */
    case 5: dst[4] = src[4]; /* fall through */
    case 4: dst[3] = src[3]; /* fall through */
    case 3: dst[2] = src[2]; /* fall through */
    case 2: dst[1] = src[1]; /* fall through */
    case 1: dst[0] = src[0]; /* fall through */
    case 0: return;
    default: __builtin_memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/// Asks for the cache line holding `p` ahead of its reads (a hint: no effect on results).
static inline void rrl_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Which implementation a matrix product uses. `RRL_GEMM_AUTO` picks the fastest available.
typedef enum {
    RRL_GEMM_AUTO = 0,
    /// Packed, blocked product with the portable C micro-kernel.
    RRL_GEMM_PACKED_PORTABLE = 1,
    /// Packed, blocked product with the AVX2/FMA micro-kernel (falls back to portable without AVX2).
    RRL_GEMM_PACKED_AVX2 = 2,
    /// Unpacked path for tiny products (few rows), portable.
    RRL_GEMM_SMALL_PORTABLE = 3,
    /// Unpacked path for tiny products (few rows), AVX2/FMA.
    RRL_GEMM_SMALL_AVX2 = 4,
    /// Triple loop; the reference the tests compare against.
    RRL_GEMM_NAIVE = 5,
    /// System OpenBLAS (only when built with the OpenBLAS trait; otherwise same as AUTO).
    RRL_GEMM_OPENBLAS = 6,
} rrl_gemm_path;

/// 1 when the CPU and the operating system support AVX2 and FMA.
int rrl_cpu_has_avx2_fma(void);
/// 1 when the CPU and the operating system support AVX-512F and DQ (the one-row products and the
/// recurrent cells' row steps then use it).
int rrl_cpu_has_avx512f(void);
/// 0: the one-row products and the cells' row steps keep to AVX2 on a CPU with AVX-512 (they give
/// the same bits either way); 1: the default.
void rrl_set_allow_avx512(int allow);

/// 1 when the package was built with the OpenBLAS trait.
int rrl_has_openblas(void);

/// C = alpha * op(A) * op(B) + beta * C, row-major.
/// op(A) is m x k: A[i][p] = a[i*lda + p], or a[p*lda + i] when trans_a != 0.
/// op(B) is k x n: B[p][j] = b[p*ldb + j], or b[j*ldb + p] when trans_b != 0.
/// When beta == 0, C is not read (it may hold anything, NaN included).
void rrl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha,
               const float *a, long lda, const float *b, long ldb,
               float beta, float *c, long ldc);

/// A dense layer's forward pass: y = x w^T + bias, then ReLU when relu != 0. x is m x k (row stride
/// ldx), w is n x k (ldw), bias has n floats, y is m x n (ldy). The same bits as filling y's rows
/// with the bias, rrl_sgemm(0, 1, m, n, k, 1, x, ldx, w, ldw, 1, y, ldy) and rrl_relu, in one pass.
void rrl_dense_forward(long m, long n, long k, const float *x, long ldx, const float *w, long ldw, const float *bias,
                       int relu, float *y, long ldy);

/// C = op(A) op(B) + bias (every row of C gets the n floats of bias): the same bits as filling C's rows
/// with the bias and rrl_sgemm(trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, 1, c, ldc), in one pass
/// where the blocked AVX2 product runs (a recurrent step's hidden products).
void rrl_sgemm_bias(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                    const float *bias, float *c, long ldc);

/// C = op(A) op(B) masked by a ReLU's output M (m x n, row stride ldc like C): C[i][j] = (A B)[i][j] *
/// (M[i][j] > 0 ? 1 : 0), a gradient through the ReLU that produced M. The same bits as
/// rrl_sgemm(trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, 0, c, ldc) then rrl_relu_backward on each
/// row, in one pass where the blocked AVX2 product runs.
void rrl_sgemm_relu_masked(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b,
                           long ldb, const float *mask, float *c, long ldc);

/// dst[j*ldd + i] = src[i*lds + j] for a rows x cols src (8x8 blocks through registers with AVX2).
void rrl_transpose(long rows, long cols, const float *src, long lds, float *dst, long ldd);

/// Multiply-add flops (2 m n k per product) of the matrix products computed so far in this process.
unsigned long long rrl_gemm_flops(void);

/// Same as rrl_sgemm with a forced implementation (for tests and benchmarks).
void rrl_sgemm_path(rrl_gemm_path path, int trans_a, int trans_b, long m, long n, long k,
                    float alpha, const float *a, long lda, const float *b, long ldb,
                    float beta, float *c, long ldc);

/// Elementwise y = exp(x), tanh(x), sigmoid(x) over n floats; y may equal x.
/// Relative error is a few float ulps (checked against libm in the tests).
void rrl_vexp(long n, const float *x, float *y);
void rrl_vtanh(long n, const float *x, float *y);
/// y = b + x W^T for each of `rows` rows of x (`[rows, in]`), W (`[out, in]`) packed by rrl_affine_pack
/// (`in * out` floats) and b optional (NULL: none), then ReLU (max(y, 0); NaN and -0 give +0) when
/// relu != 0: the products of acting one row at a time, register-blocked and streaming through the weights.
void rrl_affine_rows(long rows, long in, long out, const float *packed, const float *b, const float *x, float *y, int relu);
/// Packs W (`[out, in]`, row-major) into `packed` (`in * out` floats) for rrl_affine_rows.
void rrl_affine_pack(long in, long out, const float *w, float *packed);
void rrl_vsigmoid(long n, const float *x, float *y);
/// y = x for x > 0, expm1(x) otherwise (ELU with alpha 1); y may equal x. A few float ulps of libm.
void rrl_velu(long n, const float *x, float *y);

/// Standard normal draws by Box-Muller, z = sqrt(-2 log u1) cos(2 pi u2), from uniforms u1 in (0, 1]
/// and u2 in [0, 1) (n of each).
void rrl_box_muller(long n, const float *u1, const float *u2, float *z);

/// The tanh-squashed Gaussian of SAC over `rows` rows of A actions, from the head's outputs
/// (`params`: per row A means, then A raw log stds, clamped to [-20, 2]) and standard normal noise
/// (rows x A): actions tanh(mean + std e) and each row's log-probability (see vecmath.c).
void rrl_tanh_gaussian(long rows, long A, const float *params, const float *noise, float *actions, float *logp);

/// Its backward pass with the noise held fixed: d(loss)/d(params) (rows x 2A) from d(loss)/d(actions)
/// (rows x A, or NULL for none) and d(loss)/d(log-probability) (rows).
void rrl_tanh_gaussian_backward(long rows, long A, const float *params, const float *noise, const float *actions,
                                const float *action_gradient, const float *logp_gradient, float *gradient);
/// y = max(x, 0); dx = dy * f'(x) from the output y of ReLU, tanh, sigmoid. Outputs may alias inputs.
/// 1 when none of the n floats is NaN or infinite.
int rrl_all_finite(long n, const float *x);
/// sum[j] += x[r*width + j] for every row r in order (x is rows x width, contiguous).
void rrl_add_column_sums(long rows, long width, const float *x, float *sum);
void rrl_relu(long n, const float *x, float *y);
void rrl_relu_backward(long n, const float *y, const float *dy, float *dx);
void rrl_tanh_backward(long n, const float *y, const float *dy, float *dx);
void rrl_sigmoid_backward(long n, const float *y, const float *dy, float *dx);
/// One Adam step over n parameters: g' = g + coupled_decay * theta; theta *= shrink (decoupled
/// decay, 1 when off); m, v moments; theta -= step_size * m / (sqrt(v) * inv_sqrt_correction2 + epsilon).
void rrl_adam_update(long n, float *theta, const float *g, float *m, float *v, float beta1, float beta2,
                     float step_size, float inv_sqrt_correction2, float epsilon, float coupled_decay, float shrink);
/// Forces the portable versions (for tests): 1 = portable, 0 = automatic.
void rrl_set_force_portable(int force);

/// One GRU step of one row after its products: gi = W_ih x + b_ih, gh = W_hh h + b_hh (3H floats
/// each, PyTorch's r, z, n); updates h (H floats) in place: r = σ(gi_r + gh_r), z = σ(gi_z + gh_z),
/// n = tanh(gi_n + r gh_n), h = n + z (h - n).
void rrl_gru_row(long H, const float *gi, const float *gh, float *h);
/// One LSTM step of one row after its products (4H floats each, PyTorch's i, f, g, o); updates c
/// and h in place: c = f c + i g, h = o tanh(c).
void rrl_lstm_row(long H, const float *gi, const float *gh, float *h, float *c);

/// One GRU step of `rows` rows in training (rows side by side in each array): g holds gi = W_ih x + b_ih
/// (3H per row) and receives the gates' activations r, z, n; gh = W_hh h + b_hh (3H per row);
/// h = n + z (h_prev - n) (H per row) goes to its own rows; hn, unless NULL, receives the hidden
/// product of the n gate, W_hn h + b_hn (H per row), which backward needs.
void rrl_gru_train_rows(long rows, long H, float *g, const float *gh, const float *hprev, float *h, float *hn);
/// One LSTM step of `rows` rows in training: g holds gi (4H per row) and receives i, f, g, o; writes
/// the cell c = f c_prev + i g (c may be c_prev), tanh(c) and h = o tanh(c) (H per row each).
void rrl_lstm_train_rows(long rows, long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h);

/// GRU backward through one step of one row, from the saved gates (r, z, n: 3H), the hidden
/// candidate's product W_hn h + b_hn (H), the previous state and dL/dh (H each): writes dL/dh_prev
/// (d z), and the input and hidden gate gradients (3H each). The Swift formulas' order exactly.
void rrl_gru_backward_row(long H, const float *g, const float *ghn, const float *hprev, const float *dh, float *dhp,
                          float *dgi, float *dgh);
/// LSTM backward through one step of one row, from the saved gates (i, f, g, o: 4H), tanh(c), the
/// previous cell, dL/dh and dL/dc (H each): writes dL/dc_prev (H) and the gate gradients (4H).
void rrl_lstm_backward_row(long H, const float *g, const float *tc, const float *cprev, const float *dh, const float *dc,
                           float *dcp, float *da);

/// Whether the vector kernels (exp/tanh/sigmoid, the one-row products) take their AVX2 path now.
int rrl_vector_kernels_use_avx2(void);

/// Measures the single-thread fp32 FMA peak in GFLOP/s by running independent FMA
/// chains for about `seconds`. Uses AVX2/FMA when available, else the portable loop.
double rrl_measure_fma_peak_gflops(double seconds);

/// Monotonic clock in seconds.
double rrl_now_seconds(void);
/// CPU time of this process (user + system) in seconds.
double rrl_process_cpu_seconds(void);

#ifdef __cplusplus
}
#endif

#endif
