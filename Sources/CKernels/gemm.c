// Matrix multiply: a 6x16 micro-kernel accumulates in registers while A is read in place through
// its row and column strides (packing A would cost as much as the product for the thin matrices of
// recurrent networks). The portable path packs B into 16-column panels; the AVX2 path reads B in
// place when it fits in L1 and packs it otherwise (see "Blocked product, AVX2"). Tiny products (at
// most 8 rows) skip packing altogether.
#include "CKernels.h"
#include <math.h>
#include "vector_edges.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define RRL_X86 1
#include <immintrin.h>
#endif

enum { MR = 6, NR = 16, KC = 256, NC = 512 };

// MARK: - CPU detection

#if RRL_X86
static void rrl_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
#endif

static int detect_avx2_fma(void) {
#if RRL_X86
    unsigned r[4];
    rrl_cpuid(0, 0, r);
    if (r[0] < 7) return 0;
    rrl_cpuid(1, 0, r);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    if ((eax & 6) != 6) return 0;  // the OS saves XMM and YMM state
    rrl_cpuid(7, 0, r);
    return (r[1] >> 5) & 1;
#else
    return 0;
#endif
}

static int detect_avx512f(void) {
#if RRL_X86
    if (!detect_avx2_fma()) return 0;
    unsigned r[4];
    rrl_cpuid(1, 0, r);
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    if ((eax & 0xE6) != 0xE6) return 0;  // the OS saves the opmask and all of ZMM state
    rrl_cpuid(7, 0, r);
    return ((r[1] >> 16) & 1) && ((r[1] >> 17) & 1);  // AVX512F and AVX512DQ (the cells' float masks)
#else
    return 0;
#endif
}

// A detection's result, computed once: -1 until then.
static int cached(int *state, int (*detect)(void)) {
    int s = __atomic_load_n(state, __ATOMIC_RELAXED);
    if (s < 0) {
        s = detect();
        __atomic_store_n(state, s, __ATOMIC_RELAXED);
    }
    return s;
}

static int cpu_state = -1, avx512_state = -1, avx512_allowed = 1;

int rrl_cpu_has_avx2_fma(void) { return cached(&cpu_state, detect_avx2_fma); }

int rrl_cpu_has_avx512f(void) { return cached(&avx512_state, detect_avx512f); }

void rrl_set_allow_avx512(int allow) { __atomic_store_n(&avx512_allowed, allow, __ATOMIC_RELAXED); }

int rrl_kernels_use_avx512(void) { return __atomic_load_n(&avx512_allowed, __ATOMIC_RELAXED) && rrl_cpu_has_avx512f(); }

int rrl_has_openblas(void) {
#ifdef RRL_USE_OPENBLAS
    return 1;
#else
    return 0;
#endif
}

// MARK: - Scratch memory (grows, never shrinks; one per thread)

// Initial-exec: the kernels live in the executable or a library loaded at start, so a thread's
// scratch is one offset from the thread pointer, not a __tls_get_addr call per product.
#define RRL_TLS static _Thread_local __attribute__((tls_model("initial-exec")))
RRL_TLS float *scratch_b = NULL;
RRL_TLS size_t scratch_b_cap = 0;
RRL_TLS float *scratch_a = NULL;
RRL_TLS size_t scratch_a_cap = 0;

static float *grow(float **buf, size_t *cap, size_t need) {
    if (need > *cap) {
        free(*buf);
        size_t bytes = ((need * sizeof(float)) + 63) & ~(size_t)63;
        *buf = (float *)aligned_alloc(64, bytes);
        if (!*buf) abort();
        *cap = need;
    }
    return *buf;
}

// MARK: - Micro-kernels
// C[0..6, 0..16] = alpha * sum_p A[r][p] * B[p][0..16] + beta * C (C not read when beta == 0).
// A[r][p] = a[r*rsa + p*csa]; B[p][j] = b[p*bsb + j].

static void kernel_portable(long kc, const float *a, long rsa, long csa, const float *b, long bsb,
                            float alpha, float beta, float *c, long ldc) {
    float acc[MR][NR];
    memset(acc, 0, sizeof(acc));
    for (long p = 0; p < kc; p++) {
        const float *bp = b + p * bsb;
        for (int r = 0; r < MR; r++) {
            float av = a[r * rsa + p * csa];
            for (int j = 0; j < NR; j++) acc[r][j] += av * bp[j];
        }
    }
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        if (beta == 0.0f) {
            for (int j = 0; j < NR; j++) cr[j] = alpha * acc[r][j];
        } else {
            for (int j = 0; j < NR; j++) cr[j] = alpha * acc[r][j] + beta * cr[j];
        }
    }
}


typedef void (*micro_kernel)(long, const float *, long, long, const float *, long, float, float, float *, long);

// MARK: - Packing

// Packs B[p0..p0+kc, j0..j0+nc] into ceil(nc/16) panels of kc x 16 floats, zero-padded.
// Packs B[p0..p0+kc][j0..j0+w] (w <= width) into a kc x width panel, zero-padded on the right.
static void pack_panel_portable(int trans_b, const float *b, long ldb, long p0, long kc, long j0, long w, long width,
                                float *out) {
    if (!trans_b) {
        for (long p = 0; p < kc; p++) {
            const float *src = b + (p0 + p) * ldb + j0;
            float *dst = out + p * width;
            long j = 0;
            for (; j < w; j++) dst[j] = src[j];
            for (; j < width; j++) dst[j] = 0.0f;
        }
        return;
    }
    // B[p][j] = b[j*ldb + p]: read each source row contiguously.
    for (long j = 0; j < width; j++) {
        const float *src = b + (j0 + j) * ldb + p0;
        for (long p = 0; p < kc; p++) out[p * width + j] = j < w ? src[p] : 0.0f;
    }
}

// Packs B[p0..p0+kc, j0..j0+nc] into ceil(nc/16) panels of kc x 16 floats, zero-padded.
static void pack_b(int trans_b, const float *b, long ldb, long p0, long kc, long j0, long nc, float *out) {
    for (long jp = 0; jp < nc; jp += NR)
        pack_panel_portable(trans_b, b, ldb, p0, kc, j0 + jp, nc - jp < NR ? nc - jp : NR, NR, out + (jp / NR) * kc * NR);
}

// Writes the valid mr x nr corner of a 6x16 tile into C.
static void merge_tile(const float *tile, long mr, long nr, float beta, float *c, long ldc) {
    for (long i = 0; i < mr; i++) {
        float *cr = c + i * ldc;
        const float *tr = tile + i * NR;
        if (beta == 0.0f) {
            for (long j = 0; j < nr; j++) cr[j] = tr[j];
        } else {
            for (long j = 0; j < nr; j++) cr[j] = tr[j] + beta * cr[j];
        }
    }
}

static void scale_c(long m, long n, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++) {
        float *cr = c + i * ldc;
        if (beta == 0.0f) {
            memset(cr, 0, (size_t)n * sizeof(float));
        } else if (beta != 1.0f) {
            for (long j = 0; j < n; j++) cr[j] *= beta;
        }
    }
}

// MARK: - Packed, blocked product

static void gemm_packed(micro_kernel kernel, int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    const long rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    float tile[MR * NR];
    float *bp = grow(&scratch_b, &scratch_b_cap, (size_t)KC * (NC + NR));
    float *apad = grow(&scratch_a, &scratch_a_cap, (size_t)KC * MR);
    for (long jc = 0; jc < n; jc += NC) {
        long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += KC) {
            long kc = k - pc < KC ? k - pc : KC;
            float beta_eff = pc == 0 ? beta : 1.0f;
            pack_b(trans_b, b, ldb, pc, kc, jc, nc, bp);
            for (long ic = 0; ic < m; ic += MR) {
                long mr = m - ic < MR ? m - ic : MR;
                const float *ap = a + ic * rsa + pc * csa;
                long ars = rsa, acs = csa;
                if (mr < MR) {
                    // Edge rows: copy into a zero-padded panel so the kernel never reads past A.
                    for (long p = 0; p < kc; p++) {
                        for (long r = 0; r < MR; r++) apad[p * MR + r] = r < mr ? ap[r * rsa + p * csa] : 0.0f;
                    }
                    ap = apad;
                    ars = 1;
                    acs = MR;
                }
                for (long jr = 0; jr < nc; jr += NR) {
                    long nr = nc - jr < NR ? nc - jr : NR;
                    float *cp = c + ic * ldc + jc + jr;
                    const float *bpanel = bp + (jr / NR) * kc * NR;
                    if (mr == MR && nr == NR) {
                        kernel(kc, ap, ars, acs, bpanel, NR, alpha, beta_eff, cp, ldc);
                    } else {
                        kernel(kc, ap, ars, acs, bpanel, NR, alpha, 0.0f, tile, NR);
                        merge_tile(tile, mr, nr, beta_eff, cp, ldc);
                    }
                }
            }
        }
    }
}

// MARK: - Blocked product, AVX2

// Every element of C is one chain of FMAs over a k block (at most KC deep) started from zero, then
// finished as alpha * sum (beta == 0) or alpha * sum + beta * C: the order of operations of the
// packed 6x16 kernel this path replaced, and of the small path for the products of 4-8 rows it now
// takes, so results keep their bits (with alpha 1 and beta 0 or 1, the library's only uses). What
// differs is how tiles reach memory:
//  - B is read where it lies when it is not transposed and a k block of it fits in L1, or when A
//    has so few rows that a packed copy would be read only once or twice; a transposed B is packed
//    with 8x8 register transposes;
//  - the last rows (m not a multiple of 6) run a kernel of that many rows, straight into C;
//  - the last 1-4 columns put rows in vector lanes (a critic's value, a policy's mean and log-std,
//    their gradients), other tails of up to 8 columns run an 8-wide kernel of up to 12 rows; only
//    the valid columns are stored.
// A layer's forward pass can finish in the same store: add the bias (in the first k block, which
// equals filling C with the bias and accumulating with beta = 1) and apply ReLU (after the last).

typedef struct {
    float alpha, beta;  // beta for this k block: the caller's for the first, 1 after
    const float *bias;  // added in the first k block (then alpha must be 1 and beta 0), or NULL
    int relu;           // max(x, 0) after the last k block
    int mask;           // after the last k block, x * (M > 0 ? 1 : 0), M the mask's element at C's place
    intptr_t mask_offset;  // the mask's address minus C's, in bytes (the mask has C's row stride)
} rrl_epilogue;

/// The mask's element at C element `c` (only when the epilogue has one).
static inline const float *mask_at(const float *c, const rrl_epilogue *e) {
    return (const float *)((intptr_t)c + e->mask_offset);
}

#if RRL_X86
/// What a tile's stores do, fixed for a whole product so that the tiles' stores carry no tests:
/// the kinds the library uses, each with finish8's operations for its case, and the general case.
/// (EPI_ADD: alpha and beta 1, a gradient accumulated; alpha * sum + beta * C is then sum + C exactly.)
enum { EPI_GENERAL, EPI_BIAS, EPI_BIAS_RELU, EPI_SCALE, EPI_SCALE_MASK, EPI_ADD };

static int epilogue_kind(const rrl_epilogue *e) {
    if (e->mask) return !e->bias && !e->relu && e->beta == 0.0f ? EPI_SCALE_MASK : EPI_GENERAL;
    if (e->bias) return e->relu ? EPI_BIAS_RELU : EPI_BIAS;
    if (e->relu) return EPI_GENERAL;
    if (e->beta == 0.0f) return EPI_SCALE;
    return e->alpha == 1.0f && e->beta == 1.0f ? EPI_ADD : EPI_GENERAL;
}

/// Calls F(KIND, ...) with the kind of the epilogue `e` as a compile-time constant.
#define RRL_BY_KIND(e, F, ...)                                                                                  \
    switch (epilogue_kind(e)) {                                                                                 \
    case EPI_BIAS: F(EPI_BIAS, __VA_ARGS__); break;                                                             \
    case EPI_BIAS_RELU: F(EPI_BIAS_RELU, __VA_ARGS__); break;                                                   \
    case EPI_SCALE: F(EPI_SCALE, __VA_ARGS__); break;                                                           \
    case EPI_SCALE_MASK: F(EPI_SCALE_MASK, __VA_ARGS__); break;                                                 \
    case EPI_ADD: F(EPI_ADD, __VA_ARGS__); break;                                                               \
    default: F(EPI_GENERAL, __VA_ARGS__); break;                                                                \
    }

/// What a store of kind KIND does: x is formed by one of bias (sum + bias), add (sum + C), scale
/// (alpha sum) or, with none of them, alpha sum + beta C; then ReLU, then the mask. For a fixed kind
/// these are constants the compiler folds; for EPI_GENERAL they are read from the epilogue.
typedef struct { int bias, add, scale, relu, mask; } store_ops;

static inline __attribute__((always_inline)) store_ops ops_of(const int KIND, const rrl_epilogue *e) {
    if (KIND == EPI_GENERAL) return (store_ops){e->bias != NULL, 0, e->beta == 0.0f, e->relu, e->mask};
    return (store_ops){KIND == EPI_BIAS || KIND == EPI_BIAS_RELU, KIND == EPI_ADD, KIND == EPI_SCALE || KIND == EPI_SCALE_MASK,
                       KIND == EPI_BIAS_RELU, KIND == EPI_SCALE_MASK};
}

/// Finishes 8 columns of one row from their block sum and stores the first `valid` of them (8 = all).
__attribute__((target("avx2,fma"), always_inline))
static inline void finish8(const int KIND, __m256 sum, float *c, long j, long valid, const rrl_epilogue *e) {
    const store_ops o = ops_of(KIND, e);
    __m256 x;
    if (o.bias) x = _mm256_add_ps(sum, load_upto8(e->bias + j, valid));
    else if (o.add) x = _mm256_add_ps(sum, load_upto8(c + j, valid));
    else if (o.scale) x = _mm256_mul_ps(_mm256_set1_ps(e->alpha), sum);
    else x = _mm256_fmadd_ps(_mm256_set1_ps(e->alpha), sum, _mm256_mul_ps(_mm256_set1_ps(e->beta), load_upto8(c + j, valid)));
    if (o.relu) x = _mm256_max_ps(x, _mm256_setzero_ps());
    if (o.mask) {  // rrl_relu_backward's operations: x * ((M > 0) & 1)
        const __m256 m = _mm256_cmp_ps(load_upto8(mask_at(c + j, e), valid), _mm256_setzero_ps(), _CMP_GT_OQ);
        x = _mm256_mul_ps(x, _mm256_and_ps(m, _mm256_set1_ps(1.0f)));
    }
    store_upto8(c + j, x, valid);
}

/// ROWS (1-6) rows x 16 columns (the last `nr - 8` of the second eight valid): A[r][p] = a[r*rsa + p*csa],
/// B[p][0..16] = b[p*bsb ..]. Twelve accumulators, one FMA chain per element.
__attribute__((target("avx2,fma"), always_inline))
static inline void wide_tile(const int KIND, const int ROWS, long kc, const float *a, long rsa, long csa, const float *b, long bsb,
                             float *c, long ldc, long nr, const rrl_epilogue *e) {
    const rrl_epilogue ev = *e;  // a local copy: its fields stay in registers across the stores to C
    __m256 s0[6], s1[6];
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) { s0[r] = _mm256_setzero_ps(); s1[r] = _mm256_setzero_ps(); }
    for (long p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        b += bsb;
#pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * rsa + p * csa);
            s0[r] = _mm256_fmadd_ps(av, b0, s0[r]);
            s1[r] = _mm256_fmadd_ps(av, b1, s1[r]);
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) {
        finish8(KIND, s0[r], c + r * ldc, 0, 8, &ev);
        finish8(KIND, s1[r], c + r * ldc, 8, nr - 8, &ev);
    }
}

/// ROWS (1-12) rows x the first `nr` (1-8) of 8 columns: B[p][0..8] = b[p*8 ..], zero-padded.
__attribute__((target("avx2,fma"), always_inline))
static inline void narrow_tile(const int ROWS, long kc, const float *a, long rsa, long csa, const float *b,
                               float *c, long ldc, long nr, const rrl_epilogue *e) {
    const rrl_epilogue ev = *e;
    __m256 s[12];
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) s[r] = _mm256_setzero_ps();
    for (long p = 0; p < kc; p++) {
        const __m256 bv = _mm256_loadu_ps(b + p * 8);
#pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) s[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r * rsa + p * csa), bv, s[r]);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) finish8(EPI_GENERAL, s[r], c + r * ldc, 0, nr, &ev);
}

/// Every row of one full 16-column panel when the k block is 1-4 deep (K): B's K x 16 values stay
/// in registers and each row is one pair of short chains, instead of 6-row tiles whose loop, set-up
/// and stores outweigh their few FMAs. The same chain per element as wide_tile.
__attribute__((target("avx2,fma"), always_inline))
static inline void shallow_rows(const int KIND, const int K, long m, const float *a, long rsa, long csa, const float *b,
                                long bsb, float *c, long ldc, const rrl_epilogue *e) {
    const rrl_epilogue ev = *e;
    __m256 b0[4], b1[4];
#pragma clang loop unroll(full)
    for (int p = 0; p < K; p++) { b0[p] = _mm256_loadu_ps(b + p * bsb); b1[p] = _mm256_loadu_ps(b + p * bsb + 8); }
    for (long i = 0; i < m; i++) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
#pragma clang loop unroll(full)
        for (int p = 0; p < K; p++) {
            const __m256 av = _mm256_broadcast_ss(a + i * rsa + p * csa);
            s0 = _mm256_fmadd_ps(av, b0[p], s0);
            s1 = _mm256_fmadd_ps(av, b1[p], s1);
        }
        finish8(KIND, s0, c + i * ldc, 0, 8, &ev);
        finish8(KIND, s1, c + i * ldc, 8, 8, &ev);
    }
}

/// Every row of one 16-column panel: tiles of 6 rows, then one of the m % 6 rows left.
/// (NR_ is 16 for a full panel, a constant the stores then need not test.)
#define RRL_WIDE(R) wide_tile(KIND, R, kc, a + ic * rsa, rsa, csa, b, bsb, c + ic * ldc, ldc, NR_, e)
__attribute__((target("avx2,fma"), always_inline))
static inline void wide_panel_of(const int KIND, long NR_, long m, long kc, const float *a, long rsa, long csa, const float *b, long bsb,
                                 float *c, long ldc, const rrl_epilogue *e) {
    if (NR_ == NR && kc <= 4) {
        switch (kc) {
        case 1: shallow_rows(KIND, 1, m, a, rsa, csa, b, bsb, c, ldc, e); return;
        case 2: shallow_rows(KIND, 2, m, a, rsa, csa, b, bsb, c, ldc, e); return;
        case 3: shallow_rows(KIND, 3, m, a, rsa, csa, b, bsb, c, ldc, e); return;
        default: shallow_rows(KIND, 4, m, a, rsa, csa, b, bsb, c, ldc, e); return;
        }
    }
    long ic = 0;
    if (m == 7 || m == 8) {
        // 4 + 3 and 4 + 4: 6 + 1 and 6 + 2 would leave the second tile with too few FMA chains to
        // hide their latency (measured; from 9 rows on, 6 + the rest is as fast or faster).
        RRL_WIDE(4);
        ic = 4;
    }
    for (; ic + 6 <= m; ic += 6) RRL_WIDE(6);
    switch (m - ic) {
    case 5: RRL_WIDE(5); break;
    case 4: RRL_WIDE(4); break;
    case 3: RRL_WIDE(3); break;
    case 2: RRL_WIDE(2); break;
    case 1: RRL_WIDE(1); break;
    default: break;
    }
}
#undef RRL_WIDE

__attribute__((target("avx2,fma")))
static void wide_panel(long m, long kc, const float *a, long rsa, long csa, const float *b, long bsb, float *c, long ldc,
                       long nr, const rrl_epilogue *e) {
    if (nr != NR) {
        wide_panel_of(EPI_GENERAL, nr, m, kc, a, rsa, csa, b, bsb, c, ldc, e);
        return;
    }
    RRL_BY_KIND(e, wide_panel_of, NR, m, kc, a, rsa, csa, b, bsb, c, ldc, e)
}

/// Every row of the last (at most 8) columns: tiles of 12 rows, then one of the m % 12 rows left.
#define RRL_NARROW(R) narrow_tile(R, kc, a + ic * rsa, rsa, csa, b, c + ic * ldc, ldc, nr, e)
__attribute__((target("avx2,fma")))
static void narrow_panel(long m, long kc, const float *a, long rsa, long csa, const float *b, float *c, long ldc,
                         long nr, const rrl_epilogue *e) {
    long ic = 0;
    for (; ic + 12 <= m; ic += 12) RRL_NARROW(12);
    switch (m - ic) {
    case 11: RRL_NARROW(11); break;
    case 10: RRL_NARROW(10); break;
    case 9: RRL_NARROW(9); break;
    case 8: RRL_NARROW(8); break;
    case 7: RRL_NARROW(7); break;
    case 6: RRL_NARROW(6); break;
    case 5: RRL_NARROW(5); break;
    case 4: RRL_NARROW(4); break;
    case 3: RRL_NARROW(3); break;
    case 2: RRL_NARROW(2); break;
    case 1: RRL_NARROW(1); break;
    default: break;
    }
}
#undef RRL_NARROW

/// out[p*8 + q] = src[q*lds + p] for an 8x8 block (src: 8 rows of 8 floats).
__attribute__((target("avx2,fma"), always_inline))
static inline void transpose8(const float *src, long lds, float *out, long ldo) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds),
           r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds),
           r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(out + ldo, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(out + 2 * ldo, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(out + 3 * ldo, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(out + 4 * ldo, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(out + 5 * ldo, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(out + 6 * ldo, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(out + 7 * ldo, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/// dst[j*ldd + i] = src[i*lds + j] for a rows x cols src: 8x8 blocks through registers, the edges one by one.
__attribute__((target("avx2,fma")))
static void transpose_avx2(long rows, long cols, const float *src, long lds, float *dst, long ldd) {
    long i = 0;
    for (; i + 8 <= rows; i += 8) {
        long j = 0;
        for (; j + 8 <= cols; j += 8) transpose8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
        for (; j < cols; j++)
            for (long q = 0; q < 8; q++) dst[j * ldd + i + q] = src[(i + q) * lds + j];
    }
    for (; i < rows; i++)
        for (long j = 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}

/// Zeroes columns from..to of `rows` rows of `out` (row stride ld): a panel's padding.
static inline void zero_columns(float *out, long ld, long rows, long from, long to) {
    if (from >= to) return;
    for (long p = 0; p < rows; p++)
        for (long j = from; j < to; j++) out[p * ld + j] = 0.0f;
}

/// pack_panel_portable, with a transposed B through register transposes.
__attribute__((target("avx2,fma")))
static void pack_panel(int trans_b, const float *b, long ldb, long p0, long kc, long j0, long w, long width, float *out) {
    if (!trans_b) {
        pack_panel_portable(trans_b, b, ldb, p0, kc, j0, w, width, out);
        return;
    }
    transpose_avx2(w, kc, b + j0 * ldb + p0, ldb, out, width);  // B[p][j] = b[j*ldb + p]
    zero_columns(out, width, kc, w, width);
}

/// One column for BLOCKS blocks of 8 rows, A[8 rb + q][p] = at[rb*bstride + p*pstride + q]: acc[rb]
/// lane q is the chain over p of A[8 rb + q][p] B[p] (B[p] = bj[p*bsp]).
__attribute__((target("avx2,fma"), always_inline))
static inline void lanes_column(const int BLOCKS, long kc, const float *at, long bstride, long pstride, const float *bj,
                                long bsp, __m256 *acc) {
    __m256 s[8];
#pragma clang loop unroll(full)
    for (int rb = 0; rb < BLOCKS; rb++) s[rb] = _mm256_setzero_ps();
    for (long p = 0; p < kc; p++) {
        const __m256 bv = _mm256_broadcast_ss(bj + p * bsp);
#pragma clang loop unroll(full)
        for (int rb = 0; rb < BLOCKS; rb++)
            s[rb] = _mm256_fmadd_ps(_mm256_loadu_ps(at + rb * bstride + p * pstride), bv, s[rb]);
    }
#pragma clang loop unroll(full)
    for (int rb = 0; rb < BLOCKS; rb++) acc[rb] = s[rb];
}

/// lanes_column for a run-time number of blocks (at most 8).
__attribute__((target("avx2,fma"), always_inline))
static inline void lanes_columns(long blocks, long kc, const float *at, long bstride, long pstride, const float *bj,
                                 long bsp, __m256 *acc) {
    switch (blocks) {
    case 8: lanes_column(8, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 7: lanes_column(7, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 6: lanes_column(6, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 5: lanes_column(5, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 4: lanes_column(4, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 3: lanes_column(3, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 2: lanes_column(2, kc, at, bstride, pstride, bj, bsp, acc); break;
    case 1: lanes_column(1, kc, at, bstride, pstride, bj, bsp, acc); break;
    default: break;
    }
}

/// Finishes column j of `valid` (1-8) rows from their sums in lanes: finish8's operations, with
/// the column's bias broadcast; the rows' elements are C's column (one store when it is contiguous).
__attribute__((target("avx2,fma"), always_inline))
static inline void finish_lanes(const int KIND, __m256 sum, float *c, long ldc, long j, long valid, const rrl_epilogue *e) {
    const store_ops o = ops_of(KIND, e);
    if (KIND != EPI_GENERAL && !o.mask && (!o.add || ldc == 1)) {  // the rows at once (C read only when contiguous)
        __m256 x = o.bias  ? _mm256_add_ps(sum, _mm256_set1_ps(e->bias[j]))
                   : o.add ? _mm256_add_ps(sum, load_upto8(c + j, valid))
                           : _mm256_mul_ps(_mm256_set1_ps(e->alpha), sum);
        if (o.relu) x = _mm256_max_ps(x, _mm256_setzero_ps());
        if (ldc == 1) {
            store_upto8(c + j, x, valid);
            return;
        }
        float v[8];
        _mm256_storeu_ps(v, x);
        for (long q = 0; q < valid; q++) c[q * ldc + j] = v[q];
        return;
    }
    float sums[8];
    _mm256_storeu_ps(sums, sum);
    for (long q = 0; q < valid; q++) {
        float *cij = c + q * ldc + j;
        float x;
        if (o.bias) x = sums[q] + e->bias[j];
        else if (o.add) x = sums[q] + *cij;
        else if (o.scale) x = e->alpha * sums[q];
        else x = fmaf(e->alpha, sums[q], e->beta * *cij);
        if (o.relu) x = relu_scalar(x);
        if (o.mask) x = x * (*mask_at(cij, e) > 0.0f ? 1.0f : 0.0f);
        *cij = x;
    }
}

/// The last 1-4 columns of C (a layer's output of one to four units: a critic's value, a policy's
/// mean and log-std, or the gradients of such a layer): rows go into vector lanes instead of
/// columns, so no lane is wasted. Groups of up to 64 rows: when A is transposed its rows already lie
/// side by side and full blocks of 8 are read in place; otherwise (and for a last partial block) a
/// group is laid out in `at` as kc x 8 floats per 8 rows (through register transposes when A's rows
/// are contiguous; rows past m are zero). Each (row block, column) is one accumulator whose lanes
/// run the usual chain over p.
__attribute__((target("avx2,fma"), always_inline))
static inline void narrow_rows_as_lanes_of(const int KIND, long m, long kc, int trans_a, const float *a, long lda,
                                           const float *b, long bsp, long bsj, float *c, long ldc, long nr,
                                           const rrl_epilogue *e, float *at) {
    const rrl_epilogue ev = *e;
    for (long i0 = 0; i0 < m; i0 += 64) {
        const long rows = m - i0 < 64 ? m - i0 : 64, blocks = (rows + 7) / 8;
        // Blocks read in place (A transposed, full blocks), then the blocks laid out in `at`.
        const long direct = trans_a ? rows / 8 : 0;
        for (long rb = direct; rb < blocks; rb++) {
            float *dst = at + (rb - direct) * kc * 8;
            const long valid = rows - rb * 8 < 8 ? rows - rb * 8 : 8;
            if (trans_a) {  // A[i][p] = a[p*lda + i]
                const float *src = a + i0 + rb * 8;
                for (long p = 0; p < kc; p++) _mm256_storeu_ps(dst + p * 8, load_upto8(src + p * lda, valid));
                continue;
            }
            // (transpose8 inline rather than transpose_avx2: a call and its edge loops per 8 rows
            // measured 20% slower on these small products.)
            const float *src = a + (i0 + rb * 8) * lda;
            long p = 0;
            if (valid == 8)
                for (; p + 8 <= kc; p += 8) transpose8(src + p, lda, dst + p * 8, 8);
            for (; p < kc; p++)
                for (long q = 0; q < 8; q++) dst[p * 8 + q] = q < valid ? src[q * lda + p] : 0.0f;
        }
        for (long j = 0; j < nr; j++) {
            __m256 acc[8];
            lanes_columns(direct, kc, a + i0, 8, lda, b + j * bsj, bsp, acc);
            lanes_columns(blocks - direct, kc, at, kc * 8, 8, b + j * bsj, bsp, acc + direct);
            for (long rb = 0; rb < blocks; rb++) {
                const long valid = rows - rb * 8 < 8 ? rows - rb * 8 : 8;
                finish_lanes(KIND, acc[rb], c + (i0 + rb * 8) * ldc, ldc, j, valid, &ev);
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static void narrow_rows_as_lanes(long m, long kc, int trans_a, const float *a, long lda, const float *b, long bsp, long bsj,
                                 float *c, long ldc, long nr, const rrl_epilogue *e, float *at) {
    RRL_BY_KIND(e, narrow_rows_as_lanes_of, m, kc, trans_a, a, lda, b, bsp, bsj, c, ldc, nr, e, at)
}

/// Products of at most 8 rows with B not transposed and one k block (a recurrent step over a small
/// batch) on AVX-512: tiles of up to 4 rows by up to 4 vectors of 16 columns (64), so that a step's
/// whole row of gates (3 or 4 hidden widths) runs as one tile with up to 16 independent FMA chains
/// instead of 16-column panels one after another, each too short to hide the FMA latency. Each
/// element is the same chain over p started from zero, finished by finish8's operations for its
/// kind (the same bits as the AVX2 tiles). The last vector of a tile may be partial (masked).
__attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))
static inline void finish16(const int KIND, __m512 sum, float *c, long j, long valid, const rrl_epilogue *e) {
    const store_ops o = ops_of(KIND, e);
    __m512 x;
    if (o.bias) x = _mm512_add_ps(sum, load_upto16(e->bias + j, valid));
    else if (o.add) x = _mm512_add_ps(sum, load_upto16(c + j, valid));
    else if (o.scale) x = _mm512_mul_ps(_mm512_set1_ps(e->alpha), sum);
    else x = _mm512_fmadd_ps(_mm512_set1_ps(e->alpha), sum, _mm512_mul_ps(_mm512_set1_ps(e->beta), load_upto16(c + j, valid)));
    if (o.relu) x = _mm512_max_ps(x, _mm512_setzero_ps());
    if (o.mask) {
        const __mmask16 m = _mm512_cmp_ps_mask(load_upto16(mask_at(c + j, e), valid), _mm512_setzero_ps(), _CMP_GT_OQ);
        x = _mm512_mul_ps(x, _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0f)));
    }
    store_upto16(c + j, x, valid);
}

/// ROWS (1-4) rows x VECS (1-4) vectors of 16 columns, the last `last` (1-16) of its columns valid.
__attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))
static inline void few_rows_tile512(const int KIND, const int ROWS, const int VECS, long kc, const float *a, long rsa,
                                    long csa, const float *b, long ldb, float *c, long ldc, long last,
                                    const rrl_epilogue *e) {
    const rrl_epilogue ev = *e;
    __m512 s[4][4];
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < VECS; v++) s[r][v] = _mm512_setzero_ps();
    for (long p = 0; p < kc; p++) {
        __m512 bv[4];
#pragma clang loop unroll(full)
        for (int v = 0; v < VECS; v++) bv[v] = load_upto16(b + p * ldb + 16 * v, v == VECS - 1 ? last : 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            const __m512 av = _mm512_set1_ps(a[r * rsa + p * csa]);
#pragma clang loop unroll(full)
            for (int v = 0; v < VECS; v++) s[r][v] = _mm512_fmadd_ps(av, bv[v], s[r][v]);
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < VECS; v++) finish16(KIND, s[r][v], c + r * ldc, 16 * v, v == VECS - 1 ? last : 16, &ev);
}

#define RRL_FEW(R, V) few_rows_tile512(KIND, R, V, k, a + i * rsa, rsa, csa, b + j, ldb, c + i * ldc + j, ldc, last, &ej)
#define RRL_FEW_ROWS(V)                                                                                        \
    switch (rows) {                                                                                            \
    case 4: RRL_FEW(4, V); break;                                                                              \
    case 3: RRL_FEW(3, V); break;                                                                              \
    case 2: RRL_FEW(2, V); break;                                                                              \
    default: RRL_FEW(1, V); break;                                                                             \
    }
__attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))
static inline void few_rows512_of(const int KIND, long m, long n, long k, const float *a, long rsa, long csa,
                                  const float *b, long ldb, float *c, long ldc, const rrl_epilogue *e) {
    for (long i = 0; i < m; i += 4) {
        const long rows = m - i < 4 ? m - i : 4;
        for (long j = 0; j < n; j += 64) {
            const long cols = n - j < 64 ? n - j : 64, vecs = (cols + 15) / 16, last = cols - 16 * (vecs - 1);
            rrl_epilogue ej = *e;  // the bias from this tile's first column (the mask follows C)
            if (ej.bias) ej.bias += j;
            switch (vecs) {
            case 4: RRL_FEW_ROWS(4) break;
            case 3: RRL_FEW_ROWS(3) break;
            case 2: RRL_FEW_ROWS(2) break;
            default: RRL_FEW_ROWS(1) break;
            }
        }
    }
}
#undef RRL_FEW_ROWS
#undef RRL_FEW

__attribute__((target("avx512f,avx512dq,avx2,fma")))
static void few_rows512(long m, long n, long k, const float *a, long rsa, long csa, const float *b, long ldb, float *c,
                        long ldc, const rrl_epilogue *e) {
    RRL_BY_KIND(e, few_rows512_of, m, n, k, a, rsa, csa, b, ldb, c, ldc, e)
}

/// B blocks not larger than this many floats (a k block of every row) are read in place when B is
/// not transposed: packing would only copy what already sits in L1.
enum { IN_PLACE_FLOATS = 8192 };

__attribute__((target("avx2,fma")))
static void gemm_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                      const float *b, long ldb, float beta, float *c, long ldc, const float *bias, int relu,
                      const float *mask) {
    const long rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    if (m <= 8 && !trans_b && k <= KC && rrl_kernels_use_avx512()) {
        const rrl_epilogue e = {alpha, beta, bias, relu, mask != NULL, (intptr_t)mask - (intptr_t)c};
        few_rows512(m, n, k, a, rsa, csa, b, ldb, c, ldc, &e);
        return;
    }
    // Packed panels (at most NC + NR columns of a k block), then room for 64 rows of A transposed.
    float *bp = grow(&scratch_b, &scratch_b_cap, (size_t)KC * (NC + NR + 64));
    for (long jc = 0; jc < n; jc += NC) {
        const long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += KC) {
            const long kc = k - pc < KC ? k - pc : KC;
            rrl_epilogue e = {alpha, pc == 0 ? beta : 1.0f, pc == 0 ? (bias ? bias + jc : NULL) : NULL,
                              relu && pc + kc >= k, mask && pc + kc >= k, (intptr_t)mask - (intptr_t)c};
            // (With few rows a packed panel would be read only once or twice: not worth the copy.)
            const int in_place = !trans_b && (kc * ldb <= IN_PLACE_FLOATS || m <= 2 * MR);
            const long wide = nc / NR * NR;     // columns in full 16-wide panels
            const long rest = nc - wide;        // 0-15 last columns
            if (!in_place)
                for (long jr = 0; jr < wide; jr += NR) pack_panel(trans_b, b, ldb, pc, kc, jc + jr, NR, NR, bp + (jr / NR) * kc * NR);
            for (long jr = 0; jr < wide; jr += NR) {
                const float *bpanel = in_place ? b + pc * ldb + jc + jr : bp + (jr / NR) * kc * NR;
                const long bsb = in_place ? ldb : NR;
                rrl_epilogue ej = e;
                if (ej.bias) ej.bias += jr;
                wide_panel(m, kc, a + pc * csa, rsa, csa, bpanel, bsb, c + jc + jr, ldc, NR, &ej);
            }
            if (rest > 8) {
                float *panel = bp + (wide / NR) * kc * NR;
                pack_panel(trans_b, b, ldb, pc, kc, jc + wide, rest, NR, panel);
                rrl_epilogue ej = e;
                if (ej.bias) ej.bias += wide;
                wide_panel(m, kc, a + pc * csa, rsa, csa, panel, NR, c + jc + wide, ldc, rest, &ej);
            } else if (rest > 0 && rest <= 4 && m >= 16) {
                rrl_epilogue ej = e;
                if (ej.bias) ej.bias += wide;
                // B[p][j] = b[p*bsp + j*bsj] from the first of these columns.
                const long bsp = trans_b ? 1 : ldb, bsj = trans_b ? ldb : 1;
                narrow_rows_as_lanes(m, kc, trans_a, a + pc * csa, lda, b + pc * bsp + (jc + wide) * bsj, bsp, bsj,
                                     c + jc + wide, ldc, rest, &ej, bp + (size_t)KC * (NC + NR));
            } else if (rest > 0) {
                float *panel = bp + (wide / NR) * kc * NR;
                pack_panel(trans_b, b, ldb, pc, kc, jc + wide, rest, 8, panel);
                rrl_epilogue ej = e;
                if (ej.bias) ej.bias += wide;
                narrow_panel(m, kc, a + pc * csa, rsa, csa, panel, c + jc + wide, ldc, rest, &ej);
            }
        }
    }
}
#endif

// MARK: - Tiny products (m <= 8)

static void small_portable(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a,
                           long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    const long rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    for (long i = 0; i < m; i++) {
        float *cr = c + i * ldc;
        if (!trans_b) {
            // Row of C as a linear combination of rows of B.
            if (beta == 0.0f) memset(cr, 0, (size_t)n * sizeof(float));
            else if (beta != 1.0f) for (long j = 0; j < n; j++) cr[j] *= beta;
            for (long p = 0; p < k; p++) {
                float av = alpha * a[i * rsa + p * csa];
                const float *br = b + p * ldb;
                for (long j = 0; j < n; j++) cr[j] += av * br[j];
            }
        } else {
            for (long j = 0; j < n; j++) {
                const float *br = b + j * ldb;
                float s = 0.0f;
                for (long p = 0; p < k; p++) s += a[i * rsa + p * csa] * br[p];
                cr[j] = beta == 0.0f ? alpha * s : alpha * s + beta * cr[j];
            }
        }
    }
}

#if RRL_X86
__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

/// A tile of MR (1-4) rows by NV (1-3) vectors of 8 columns of C = alpha A B + beta C with B not
/// transposed: MR x NV accumulators stay in registers over the whole k loop (up to 12 independent
/// FMA chains, enough to keep both FMA units busy), each B vector loaded once per p for all rows.
__attribute__((target("avx2,fma"), always_inline))
static inline void small_tile_avx2(const int MR, const int NV, long k, float alpha, const float *a, long rsa, long csa,
                                   const float *b, long ldb, float beta, float *c, long ldc) {
    __m256 acc[4][3];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (long p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        __m256 bv[3];
        for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_ps(bp + 8 * v);
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * rsa + p * csa);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        for (int v = 0; v < NV; v++) {
            __m256 x = _mm256_mul_ps(va, acc[r][v]);
            if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * v), x);
            _mm256_storeu_ps(cr + 8 * v, x);
        }
    }
}

#define SMALL_TILE_CASES(NV)                                                                                    \
    switch (mr) {                                                                                               \
    case 4: small_tile_avx2(4, NV, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci + j, ldc); break;               \
    case 3: small_tile_avx2(3, NV, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci + j, ldc); break;               \
    case 2: small_tile_avx2(2, NV, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci + j, ldc); break;               \
    default: small_tile_avx2(1, NV, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci + j, ldc); break;              \
    }

__attribute__((target("avx2,fma")))
static void small_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                       const float *b, long ldb, float beta, float *c, long ldc) {
    const long rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    if (!trans_b) {
        // Blocks of 4 rows; 24, then 8 columns at a time; a scalar tail for the last n % 8 columns.
        for (long i = 0; i < m; i += 4) {
            const long mr = m - i < 4 ? m - i : 4;
            const float *ai = a + i * rsa;
            float *ci = c + i * ldc;
            long j = 0;
            for (; j + 24 <= n; j += 24) { SMALL_TILE_CASES(3) }
            for (; j + 16 <= n; j += 16) { SMALL_TILE_CASES(2) }
            for (; j + 8 <= n; j += 8) { SMALL_TILE_CASES(1) }
            for (; j < n; j++) {
                for (long r = 0; r < mr; r++) {
                    float sum = 0.0f;
                    for (long p = 0; p < k; p++) sum += ai[r * rsa + p * csa] * b[p * ldb + j];
                    float *cij = ci + r * ldc + j;
                    *cij = beta == 0.0f ? alpha * sum : alpha * sum + beta * *cij;
                }
            }
        }
        return;
    }
    // B transposed (B[p][j] = b[j*ldb + p]): dot products along k. A's row must be contiguous
    // for the vector loads; otherwise copy it once into a scratch row.
    float *arow = trans_a ? grow(&scratch_a, &scratch_a_cap, (size_t)k) : NULL;
    for (long i = 0; i < m; i++) {
        const float *ar = a + i * rsa;
        if (trans_a) {
            for (long p = 0; p < k; p++) arow[p] = ar[p * csa];
            ar = arow;
        }
        float *cr = c + i * ldc;
        long j = 0;
        // Eight columns at a time: eight independent FMA chains hide the FMA latency on the short k
        // loops of acting (one row, k of a hidden size), and one tree of horizontal adds gives the
        // eight sums at once.
        for (; j + 8 <= n; j += 8) {
            const float *bj = b + j * ldb;
            __m256 s[8];
            for (int q = 0; q < 8; q++) s[q] = _mm256_setzero_ps();
            long p = 0;
            for (; p + 8 <= k; p += 8) {
                __m256 av = _mm256_loadu_ps(ar + p);
                for (int q = 0; q < 8; q++) s[q] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bj + q * ldb + p), s[q]);
            }
            __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
            __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));
            __m256 d = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
            float sums[8];
            _mm256_storeu_ps(sums, d);
            for (; p < k; p++)
                for (int q = 0; q < 8; q++) sums[q] += ar[p] * bj[q * ldb + p];
            for (int q = 0; q < 8; q++)
                cr[j + q] = beta == 0.0f ? alpha * sums[q] : alpha * sums[q] + beta * cr[j + q];
        }
        for (; j + 4 <= n; j += 4) {
            const float *b0 = b + j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
                   s3 = _mm256_setzero_ps();
            long p = 0;
            for (; p + 8 <= k; p += 8) {
                __m256 av = _mm256_loadu_ps(ar + p);
                s0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + p), s0);
                s1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + p), s1);
                s2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + p), s2);
                s3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + p), s3);
            }
            float d0 = hsum256(s0), d1 = hsum256(s1), d2 = hsum256(s2), d3 = hsum256(s3);
            for (; p < k; p++) {
                d0 += ar[p] * b0[p];
                d1 += ar[p] * b1[p];
                d2 += ar[p] * b2[p];
                d3 += ar[p] * b3[p];
            }
            float d[4] = {d0, d1, d2, d3};
            for (int q = 0; q < 4; q++)
                cr[j + q] = beta == 0.0f ? alpha * d[q] : alpha * d[q] + beta * cr[j + q];
        }
        for (; j < n; j++) {
            const float *br = b + j * ldb;
            __m256 s0 = _mm256_setzero_ps();
            long p = 0;
            for (; p + 8 <= k; p += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(ar + p), _mm256_loadu_ps(br + p), s0);
            float d = hsum256(s0);
            for (; p < k; p++) d += ar[p] * br[p];
            cr[j] = beta == 0.0f ? alpha * d : alpha * d + beta * cr[j];
        }
    }
}
#endif

// MARK: - One row through a layer (acting at batch 1)

// y = b + x W^T for one row x (`in` floats), W being `out` rows of `in` weights. The weights are
// packed once (rrl_affine_pack) in the order the kernel reads them, so that a step streams through
// them: blocks of 64 outputs as [in][64], then blocks of 8 as [in][8] (axpy form: one broadcast of
// x[j] per input, the block's accumulators in registers), then the last out % 8 outputs as their
// own rows [in] (dot products eight inputs wide).

static long pack_blocks64(long out) { return out / 64; }
static long pack_blocks8(long out) { return (out % 64) / 8; }

void rrl_affine_pack(long in, long out, const float *w, float *packed) {
    float *p = packed;
    long o = 0;
    for (long blk = 0; blk < pack_blocks64(out); blk++, o += 64)
        for (long j = 0; j < in; j++)
            for (long q = 0; q < 64; q++) *p++ = w[(o + q) * in + j];
    for (long blk = 0; blk < pack_blocks8(out); blk++, o += 8)
        for (long j = 0; j < in; j++)
            for (long q = 0; q < 8; q++) *p++ = w[(o + q) * in + j];
    for (; o < out; o++)
        for (long j = 0; j < in; j++) *p++ = w[o * in + j];
}

static void affine_rows_portable(long in, long out, const float *packed, const float *b, const float *x, float *y, int relu) {
    const float *p = packed;
    long o = 0;
    for (long blk = 0; blk < pack_blocks64(out) + pack_blocks8(out); blk++) {
        const long width = blk < pack_blocks64(out) ? 64 : 8;
        for (long q = 0; q < width; q++) y[o + q] = b ? b[o + q] : 0.0f;
        for (long j = 0; j < in; j++, p += width)
            for (long q = 0; q < width; q++) y[o + q] += p[q] * x[j];
        if (relu)
            for (long q = 0; q < width; q++) y[o + q] = relu_scalar(y[o + q]);
        o += width;
    }
    for (; o < out; o++, p += in) {
        float acc = b ? b[o] : 0.0f;
        for (long j = 0; j < in; j++) acc += x[j] * p[j];
        y[o] = relu ? relu_scalar(acc) : acc;
    }
}

#if RRL_X86
// The blocks of 8 outputs and the last out % 8 outputs, from output `o` and packed weights `p` on.
__attribute__((target("avx2,fma")))
static void affine_rows_rest_avx2(long in, long out, long o, const float *p, const float *b, const float *x, float *y, int relu) {
    for (long blk = 0; blk < pack_blocks8(out); blk++, o += 8) {
        __m256 acc = b ? _mm256_loadu_ps(b + o) : _mm256_setzero_ps();
        for (long j = 0; j < in; j++, p += 8) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(x + j), _mm256_loadu_ps(p), acc);
        _mm256_storeu_ps(y + o, relu ? _mm256_max_ps(acc, _mm256_setzero_ps()) : acc);
    }
    for (; o < out; o++, p += in) {
        __m256 s0 = _mm256_setzero_ps();
        long j = 0;
        for (; j + 8 <= in; j += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(p + j), s0);
        float acc = (b ? b[o] : 0.0f) + hsum256(s0);
        for (; j < in; j++) acc += x[j] * p[j];
        y[o] = relu ? relu_scalar(acc) : acc;
    }
}

__attribute__((target("avx2,fma")))
static void affine_rows_avx2(long in, long out, const float *packed, const float *b, const float *x, float *y, int relu) {
    const float *p = packed;
    long o = 0;
    for (long blk = 0; blk < pack_blocks64(out); blk++, o += 64) {
        __m256 acc[8];
        for (int q = 0; q < 8; q++) acc[q] = b ? _mm256_loadu_ps(b + o + 8 * q) : _mm256_setzero_ps();
        for (long j = 0; j < in; j++, p += 64) {
            const __m256 v = _mm256_broadcast_ss(x + j);
            for (int q = 0; q < 8; q++) acc[q] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 8 * q), acc[q]);
        }
        if (relu)
            for (int q = 0; q < 8; q++) acc[q] = _mm256_max_ps(acc[q], _mm256_setzero_ps());
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(y + o + 8 * q, acc[q]);
    }
    affine_rows_rest_avx2(in, out, o, p, b, x, y, relu);
}

// The same sums with 16-wide vectors: each output still adds its inputs one by one in order, so
// the results equal the AVX2 kernel's bit for bit. Two blocks of 64 run side by side (eight
// accumulators, enough to hide the FMA latency), each one a full cache line per load.
__attribute__((target("avx512f,avx2,fma")))
static void affine_rows_avx512(long in, long out, const float *packed, const float *b, const float *x, float *y, int relu) {
    const float *p = packed;
    long o = 0, blocks = pack_blocks64(out), blk = 0;
    for (; blk + 2 <= blocks; blk += 2, o += 128) {
        __m512 acc[8];
        for (int q = 0; q < 8; q++) acc[q] = b ? _mm512_loadu_ps(b + o + 16 * q) : _mm512_setzero_ps();
        const float *p0 = p, *p1 = p + in * 64;
        for (long j = 0; j < in; j++, p0 += 64, p1 += 64) {
            const __m512 v = _mm512_set1_ps(x[j]);
            for (int q = 0; q < 4; q++) acc[q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p0 + 16 * q), acc[q]);
            for (int q = 0; q < 4; q++) acc[4 + q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p1 + 16 * q), acc[4 + q]);
        }
        if (relu)
            for (int q = 0; q < 8; q++) acc[q] = _mm512_max_ps(acc[q], _mm512_setzero_ps());
        for (int q = 0; q < 8; q++) _mm512_storeu_ps(y + o + 16 * q, acc[q]);
        p += 2 * in * 64;
    }
    for (; blk < blocks; blk++, o += 64) {
        __m512 acc[4];
        for (int q = 0; q < 4; q++) acc[q] = b ? _mm512_loadu_ps(b + o + 16 * q) : _mm512_setzero_ps();
        for (long j = 0; j < in; j++, p += 64) {
            const __m512 v = _mm512_set1_ps(x[j]);
            for (int q = 0; q < 4; q++) acc[q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16 * q), acc[q]);
        }
        if (relu)
            for (int q = 0; q < 4; q++) acc[q] = _mm512_max_ps(acc[q], _mm512_setzero_ps());
        for (int q = 0; q < 4; q++) _mm512_storeu_ps(y + o + 16 * q, acc[q]);
    }
    affine_rows_rest_avx2(in, out, o, p, b, x, y, relu);
}
#endif

void rrl_affine_rows(long rows, long in, long out, const float *packed, const float *b, const float *x, float *y, int relu) {
#if RRL_X86
    if (rrl_vector_kernels_use_avx2()) {
        if (rrl_kernels_use_avx512()) {
            for (long r = 0; r < rows; r++) affine_rows_avx512(in, out, packed, b, x + r * in, y + r * out, relu);
        } else {
            for (long r = 0; r < rows; r++) affine_rows_avx2(in, out, packed, b, x + r * in, y + r * out, relu);
        }
        return;
    }
#endif
    for (long r = 0; r < rows; r++) affine_rows_portable(in, out, packed, b, x + r * in, y + r * out, relu);
}

// MARK: - Reference

static void gemm_naive(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                       const float *b, long ldb, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j++) {
            double s = 0.0;
            for (long p = 0; p < k; p++) {
                float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += (double)av * (double)bv;
            }
            float *cij = c + i * ldc + j;
            *cij = beta == 0.0f ? (float)(alpha * s) : (float)(alpha * s + beta * *cij);
        }
    }
}

// MARK: - Dispatch

#ifdef RRL_USE_OPENBLAS
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
#endif

// Multiply-add flops (2 m n k) of every product computed, for the benchmarks (one thread trains).
static unsigned long long gemm_flops = 0;

unsigned long long rrl_gemm_flops(void) { return gemm_flops; }

static void count_flops(long m, long n, long k) {
    gemm_flops += 2ULL * (unsigned long long)m * (unsigned long long)n * (unsigned long long)k;
}

/// The path RRL_GEMM_AUTO takes.
static rrl_gemm_path automatic_path(int trans_b, long m, long n, long k, int avx2) {
    // 4-8 rows with B not transposed (a recurrent layer's step over a small batch) and one k block:
    // the blocked kernels' tiles beat the small path's, with the same chain per element.
    if (m <= 8 && (trans_b || k > KC || !avx2 || m < 4)) return avx2 ? RRL_GEMM_SMALL_AVX2 : RRL_GEMM_SMALL_PORTABLE;
#ifdef RRL_USE_OPENBLAS
    if (!avx2 && m * n * k >= 32768) return RRL_GEMM_OPENBLAS;
#else
    (void)n;
#endif
    return avx2 ? RRL_GEMM_PACKED_AVX2 : RRL_GEMM_PACKED_PORTABLE;
}

void rrl_sgemm_path(rrl_gemm_path path, int trans_a, int trans_b, long m, long n, long k, float alpha,
                    const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    // Counted once, where a path is chosen (automatic dispatch calls back with one).
    if (path != RRL_GEMM_AUTO) count_flops(m, n, k);
    int avx2 = rrl_cpu_has_avx2_fma();
    switch (path) {
    case RRL_GEMM_NAIVE:
        gemm_naive(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case RRL_GEMM_PACKED_PORTABLE:
        gemm_packed(kernel_portable, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case RRL_GEMM_SMALL_PORTABLE:
        small_portable(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case RRL_GEMM_PACKED_AVX2:
#if RRL_X86
        if (avx2) {
            gemm_avx2(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 0, NULL);
            return;
        }
#endif
        gemm_packed(kernel_portable, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case RRL_GEMM_SMALL_AVX2:
#if RRL_X86
        if (avx2) {
            small_avx2(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
#endif
        small_portable(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case RRL_GEMM_OPENBLAS:
#ifdef RRL_USE_OPENBLAS
        cblas_sgemm(101, trans_a ? 112 : 111, trans_b ? 112 : 111, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
                    (int)ldb, beta, c, (int)ldc);
        return;
#endif
    case RRL_GEMM_AUTO:
    default:
        break;
    }
    rrl_sgemm_path(automatic_path(trans_b, m, n, k, avx2), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                   ldc);
}

void rrl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
               const float *b, long ldb, float beta, float *c, long ldc) {
    rrl_sgemm_path(RRL_GEMM_AUTO, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// op(A) op(B) + bias (alpha 1; each row gets the bias, or beta 0 without one), then ReLU when relu,
/// then masked by a ReLU's output when mask (rrl_relu_backward's operations): in the blocked AVX2
/// product's last store when rrl_sgemm would take that product, else as passes after it.
static void fused_product(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b,
                          long ldb, const float *bias, int relu, const float *mask, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
#if RRL_X86
    if (k > 0 && automatic_path(trans_b, m, n, k, rrl_cpu_has_avx2_fma()) == RRL_GEMM_PACKED_AVX2) {
        count_flops(m, n, k);
        gemm_avx2(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc, bias, relu, mask);
        return;
    }
#endif
    if (bias)
        for (long i = 0; i < m; i++) memcpy(c + i * ldc, bias, (size_t)n * sizeof(float));
    rrl_sgemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, bias ? 1.0f : 0.0f, c, ldc);
    for (long i = 0; i < m; i++) {
        if (relu) rrl_relu(n, c + i * ldc, c + i * ldc);
        if (mask) rrl_relu_backward(n, mask + i * ldc, c + i * ldc, c + i * ldc);
    }
}

void rrl_dense_forward(long m, long n, long k, const float *x, long ldx, const float *w, long ldw, const float *bias,
                       int relu, float *y, long ldy) {
    fused_product(0, 1, m, n, k, x, ldx, w, ldw, bias, relu, NULL, y, ldy);
}

void rrl_sgemm_bias(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                    const float *bias, float *c, long ldc) {
    fused_product(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, 0, NULL, c, ldc);
}

void rrl_sgemm_relu_masked(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b,
                           long ldb, const float *mask, float *c, long ldc) {
    fused_product(trans_a, trans_b, m, n, k, a, lda, b, ldb, NULL, 0, mask, c, ldc);
}

void rrl_transpose(long rows, long cols, const float *src, long lds, float *dst, long ldd) {
#if RRL_X86
    if (rrl_cpu_has_avx2_fma()) {
        transpose_avx2(rows, cols, src, lds, dst, ldd);
        return;
    }
#endif
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}
