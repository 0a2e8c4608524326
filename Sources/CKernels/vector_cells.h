// The vector kernels of vecmath.c written once for two vector widths: vecmath.c includes this
// file with RRL_BITS 256 (AVX2) and again with 512 (AVX-512), after defining for that width
//   RRL_TARGET             the target attribute of every function here;
//   RRL_ROUND_NEAREST(x)   round to the nearest integer (as a float vector);
//   RRL_SELECT(x, c, PREDICATE, yes, no)   per lane: yes where x PREDICATE c, else no;
//   RRL_LOAD_UPTO(p, n), RRL_STORE_UPTO(p, v, n)   the first min(n, lanes) floats (the rest 0);
// it undefines them at its end. The names it defines end in the width (exp256, gru_row512, ...).
// Every lane of either width gets the same operations in the same order, so the same bits.
//
// exp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts for exact reduction), then a
// degree-6 minimax polynomial for exp(r) and 2^n built in the exponent bits (Cephes' expf scheme).
// tanh: (1 - t) / (1 + t) with t = exp(-2|x|), sign restored; for |x| < 0.3 an odd Taylor
// polynomial to x^13 avoids the cancellation in 1 - t.
// sigmoid: 1 / (1 + exp(-x)).

#define RRL_CAT_(a, b) a##b
#define RRL_CAT(a, b) RRL_CAT_(a, b)
/// The vector types and intrinsics of this width: V is __m256 or __m512, OP(add_ps) is
/// _mm256_add_ps or _mm512_add_ps; FN(exp) names this width's exp (exp256, exp512).
#define V RRL_CAT(__m, RRL_BITS)
#define VI RRL_CAT(V, i)
#define OP(name) RRL_CAT(RRL_CAT(_mm, RRL_BITS), _##name)
#define FN(name) RRL_CAT(name, RRL_BITS)
#define LANES (RRL_BITS / 32)

RRL_TARGET __attribute__((always_inline))
static inline V FN(exp)(V x) {
    const V hi = OP(set1_ps)(88.3762626647949f), lo = OP(set1_ps)(-88.3762626647949f);
    x = OP(min_ps)(OP(max_ps)(x, lo), hi);
    V fx = RRL_ROUND_NEAREST(OP(mul_ps)(x, OP(set1_ps)(1.44269504088896341f)));
    V r = OP(fnmadd_ps)(fx, OP(set1_ps)(0.693359375f), x);
    r = OP(fnmadd_ps)(fx, OP(set1_ps)(-2.12194440e-4f), r);
    V p = OP(set1_ps)(1.9875691500e-4f);
    p = OP(fmadd_ps)(p, r, OP(set1_ps)(1.3981999507e-3f));
    p = OP(fmadd_ps)(p, r, OP(set1_ps)(8.3334519073e-3f));
    p = OP(fmadd_ps)(p, r, OP(set1_ps)(4.1665795894e-2f));
    p = OP(fmadd_ps)(p, r, OP(set1_ps)(1.6666665459e-1f));
    p = OP(fmadd_ps)(p, r, OP(set1_ps)(5.0000001201e-1f));
    V r2 = OP(mul_ps)(r, r);
    p = OP(fmadd_ps)(p, r2, OP(add_ps)(r, OP(set1_ps)(1.0f)));
    // 2^n: n in [-127, 128]; split as 2^(n/2) * 2^(n - n/2) so that n = 128 and n = -127 stay finite/normal.
    VI n = OP(cvtps_epi32)(fx);
    VI n1 = OP(srai_epi32)(n, 1), n2 = OP(sub_epi32)(n, n1);
    VI bias = OP(set1_epi32)(127);
    V s1 = RRL_CAT(OP(castsi), RRL_CAT(RRL_BITS, _ps))(OP(slli_epi32)(OP(add_epi32)(n1, bias), 23));
    V s2 = RRL_CAT(OP(castsi), RRL_CAT(RRL_BITS, _ps))(OP(slli_epi32)(OP(add_epi32)(n2, bias), 23));
    return OP(mul_ps)(OP(mul_ps)(p, s1), s2);
}

RRL_TARGET __attribute__((always_inline))
static inline V FN(sigmoid)(V x) {
    const V one = OP(set1_ps)(1.0f);
    return OP(div_ps)(one, OP(add_ps)(one, FN(exp)(OP(sub_ps)(OP(setzero_ps)(), x))));
}

RRL_TARGET __attribute__((always_inline))
static inline V FN(tanh)(V x) {
    const V sign_mask = OP(set1_ps)(-0.0f), one = OP(set1_ps)(1.0f);
    V ax = OP(andnot_ps)(sign_mask, x);
    V t = FN(exp)(OP(mul_ps)(ax, OP(set1_ps)(-2.0f)));
    V big = OP(div_ps)(OP(sub_ps)(one, t), OP(add_ps)(one, t));
    V x2 = OP(mul_ps)(ax, ax);
    V p = OP(set1_ps)(T13);
    p = OP(fmadd_ps)(p, x2, OP(set1_ps)(T11));
    p = OP(fmadd_ps)(p, x2, OP(set1_ps)(T9));
    p = OP(fmadd_ps)(p, x2, OP(set1_ps)(T7));
    p = OP(fmadd_ps)(p, x2, OP(set1_ps)(T5));
    p = OP(fmadd_ps)(p, x2, OP(set1_ps)(T3));
    V small = OP(fmadd_ps)(OP(mul_ps)(p, x2), ax, ax);
    V y = RRL_SELECT(ax, OP(set1_ps)(0.3f), _CMP_LT_OQ, small, big);
    return OP(or_ps)(y, OP(and_ps)(x, sign_mask));
}

// MARK: Recurrent cells, one row

// A chunk is LANES units. Each unit's update is a long chain of dependent operations (a sigmoid,
// then a tanh that needs it), so a row runs in two passes over blocks of up to RRL_CELL_BLOCK
// units: first every chunk's gates, then every chunk's tanh and new state. Each pass holds many
// independent short chains for the processor to overlap. Every element gets the same operations
// as gru_unit and lstm_unit, so neither the passes nor the width change a bit.

typedef struct { V r, z, a; } FN(gru_gates_t);
typedef struct { V n, h; } FN(gru_state_t);
typedef struct { V i, f, g, o, c; } FN(lstm_gates_t);
typedef struct { V t, h; } FN(lstm_state_t);

/// Units j..j+LANES (the first `n` of them valid) of a GRU step, first pass: r, z and the
/// argument of n's tanh, a = gi_n + r gh_n.
RRL_TARGET __attribute__((always_inline))
static inline FN(gru_gates_t) FN(gru_gates)(long H, long j, long n, const float *gi, const float *gh) {
    FN(gru_gates_t) u;
    u.r = FN(sigmoid)(OP(add_ps)(RRL_LOAD_UPTO(gi + j, n), RRL_LOAD_UPTO(gh + j, n)));
    u.z = FN(sigmoid)(OP(add_ps)(RRL_LOAD_UPTO(gi + H + j, n), RRL_LOAD_UPTO(gh + H + j, n)));
    u.a = OP(add_ps)(RRL_LOAD_UPTO(gi + 2 * H + j, n), OP(mul_ps)(u.r, RRL_LOAD_UPTO(gh + 2 * H + j, n)));
    return u;
}

/// The second pass: n = tanh(a), h = n + z (h_prev - n).
RRL_TARGET __attribute__((always_inline))
static inline FN(gru_state_t) FN(gru_state)(V a, V z, V hprev) {
    FN(gru_state_t) u;
    u.n = FN(tanh)(a);
    u.h = OP(add_ps)(u.n, OP(mul_ps)(z, OP(sub_ps)(hprev, u.n)));
    return u;
}

/// Units j..j+LANES of an LSTM step, first pass: the four gates and c = f c_prev + i g.
RRL_TARGET __attribute__((always_inline))
static inline FN(lstm_gates_t) FN(lstm_gates)(long H, long j, long n, const float *gi, const float *gh, const float *cprev) {
    FN(lstm_gates_t) u;
    u.i = FN(sigmoid)(OP(add_ps)(RRL_LOAD_UPTO(gi + j, n), RRL_LOAD_UPTO(gh + j, n)));
    u.f = FN(sigmoid)(OP(add_ps)(RRL_LOAD_UPTO(gi + H + j, n), RRL_LOAD_UPTO(gh + H + j, n)));
    u.g = FN(tanh)(OP(add_ps)(RRL_LOAD_UPTO(gi + 2 * H + j, n), RRL_LOAD_UPTO(gh + 2 * H + j, n)));
    u.o = FN(sigmoid)(OP(add_ps)(RRL_LOAD_UPTO(gi + 3 * H + j, n), RRL_LOAD_UPTO(gh + 3 * H + j, n)));
    u.c = OP(add_ps)(OP(mul_ps)(u.f, RRL_LOAD_UPTO(cprev + j, n)), OP(mul_ps)(u.i, u.g));
    return u;
}

/// The second pass: t = tanh(c), h = o t.
RRL_TARGET __attribute__((always_inline))
static inline FN(lstm_state_t) FN(lstm_state)(V c, V o) {
    FN(lstm_state_t) u;
    u.t = FN(tanh)(c);
    u.h = OP(mul_ps)(o, u.t);
    return u;
}

// One chunk of each pass. `n` is the chunk's count of valid units; the loops below call these
// with a constant LANES for the full chunks, so that only the last chunk pays for partial vectors.
// Acting keeps only the new state (in place), with its passes' values in small buffers: running it
// through the training rows below (gi as scratch, h as its own previous state) gives the same bits
// but measured 84 -> 112 ns per GRU-64 row with AVX-512 and 143 -> 200 ns with AVX2.
RRL_TARGET __attribute__((always_inline))
static inline void FN(gru_row_first)(long H, long j, long n, const float *gi, const float *gh, float *z, float *a) {
    FN(gru_gates_t) u = FN(gru_gates)(H, j, n, gi, gh);
    OP(storeu_ps)(z, u.z);
    OP(storeu_ps)(a, u.a);
}

RRL_TARGET __attribute__((always_inline))
static inline void FN(gru_row_second)(long j, long n, const float *z, const float *a, float *h) {
    RRL_STORE_UPTO(h + j, FN(gru_state)(OP(loadu_ps)(a), OP(loadu_ps)(z), RRL_LOAD_UPTO(h + j, n)).h, n);
}

RRL_TARGET
static void FN(gru_row)(long H, const float *gi, const float *gh, float *h) {
    float z[RRL_CELL_BLOCK], a[RRL_CELL_BLOCK];
    for (long j0 = 0; j0 < H; j0 += RRL_CELL_BLOCK) {
        const long end = H - j0 < RRL_CELL_BLOCK ? H : j0 + RRL_CELL_BLOCK;
        for (long j = j0; j < end; j += LANES) {
            if (H - j >= LANES) FN(gru_row_first)(H, j, LANES, gi, gh, z + j - j0, a + j - j0);
            else FN(gru_row_first)(H, j, H - j, gi, gh, z + j - j0, a + j - j0);
        }
        for (long j = j0; j < end; j += LANES) {
            if (H - j >= LANES) FN(gru_row_second)(j, LANES, z + j - j0, a + j - j0, h);
            else FN(gru_row_second)(j, H - j, z + j - j0, a + j - j0, h);
        }
    }
}

RRL_TARGET __attribute__((always_inline))
static inline void FN(lstm_row_first)(long H, long j, long n, const float *gi, const float *gh, float *c, float *o) {
    FN(lstm_gates_t) u = FN(lstm_gates)(H, j, n, gi, gh, c);
    RRL_STORE_UPTO(c + j, u.c, n);
    OP(storeu_ps)(o, u.o);
}

RRL_TARGET __attribute__((always_inline))
static inline void FN(lstm_row_second)(long j, long n, const float *c, const float *o, float *h) {
    RRL_STORE_UPTO(h + j, FN(lstm_state)(RRL_LOAD_UPTO(c + j, n), OP(loadu_ps)(o)).h, n);
}

RRL_TARGET
static void FN(lstm_row)(long H, const float *gi, const float *gh, float *h, float *c) {
    float o[RRL_CELL_BLOCK];
    for (long j0 = 0; j0 < H; j0 += RRL_CELL_BLOCK) {
        const long end = H - j0 < RRL_CELL_BLOCK ? H : j0 + RRL_CELL_BLOCK;
        for (long j = j0; j < end; j += LANES) {
            if (H - j >= LANES) FN(lstm_row_first)(H, j, LANES, gi, gh, c, o + j - j0);
            else FN(lstm_row_first)(H, j, H - j, gi, gh, c, o + j - j0);
        }
        for (long j = j0; j < end; j += LANES) {
            if (H - j >= LANES) FN(lstm_row_second)(j, LANES, c, o + j - j0, h);
            else FN(lstm_row_second)(j, H - j, c, o + j - j0, h);
        }
    }
}

// Training keeps r, z, n (in place of gi) and W_hn h + b_hn (in hn, unless NULL) for backward; the
// first pass parks a in n's place.
RRL_TARGET __attribute__((always_inline))
static inline void FN(gru_train_first)(long H, long j, long n, float *g, const float *gh, float *hn) {
    FN(gru_gates_t) u = FN(gru_gates)(H, j, n, g, gh);
    RRL_STORE_UPTO(g + j, u.r, n);
    RRL_STORE_UPTO(g + H + j, u.z, n);
    RRL_STORE_UPTO(g + 2 * H + j, u.a, n);
    if (hn) RRL_STORE_UPTO(hn + j, RRL_LOAD_UPTO(gh + 2 * H + j, n), n);
}

RRL_TARGET __attribute__((always_inline))
static inline void FN(gru_train_second)(long H, long j, long n, float *g, const float *hprev, float *h) {
    FN(gru_state_t) u = FN(gru_state)(RRL_LOAD_UPTO(g + 2 * H + j, n), RRL_LOAD_UPTO(g + H + j, n), RRL_LOAD_UPTO(hprev + j, n));
    RRL_STORE_UPTO(g + 2 * H + j, u.n, n);
    RRL_STORE_UPTO(h + j, u.h, n);
}

// Several rows of one time step (rows `rows` apart in every array: 3H floats in g and gh, H in
// hprev and h), in blocks of rows whose gates fit in L1: the first pass over a block's rows, then
// the second, so that independent rows overlap too (a GRU-16 row is a single chunk).
RRL_TARGET
static void FN(gru_train_rows)(long rows, long H, float *g, const float *gh, const float *hprev, float *h, float *hn) {
    const long G = 3 * H, block = G >= RRL_CELL_ROWS_FLOATS ? 1 : RRL_CELL_ROWS_FLOATS / G;
    for (long b0 = 0; b0 < rows; b0 += block) {
        const long b1 = rows - b0 < block ? rows : b0 + block;
        for (long b = b0; b < b1; b++) {
            float *hnb = hn ? hn + b * H : NULL;
            for (long j = 0; j < H; j += LANES) {
                if (H - j >= LANES) FN(gru_train_first)(H, j, LANES, g + b * G, gh + b * G, hnb);
                else FN(gru_train_first)(H, j, H - j, g + b * G, gh + b * G, hnb);
            }
        }
        for (long b = b0; b < b1; b++) {
            for (long j = 0; j < H; j += LANES) {
                if (H - j >= LANES) FN(gru_train_second)(H, j, LANES, g + b * G, hprev + b * H, h + b * H);
                else FN(gru_train_second)(H, j, H - j, g + b * G, hprev + b * H, h + b * H);
            }
        }
    }
}

// Training keeps i, f, g, o (in place of gi), c and tanh(c).
RRL_TARGET __attribute__((always_inline))
static inline void FN(lstm_train_first)(long H, long j, long n, float *g, const float *gh, const float *cprev, float *c) {
    FN(lstm_gates_t) u = FN(lstm_gates)(H, j, n, g, gh, cprev);
    RRL_STORE_UPTO(g + j, u.i, n);
    RRL_STORE_UPTO(g + H + j, u.f, n);
    RRL_STORE_UPTO(g + 2 * H + j, u.g, n);
    RRL_STORE_UPTO(g + 3 * H + j, u.o, n);
    RRL_STORE_UPTO(c + j, u.c, n);
}

RRL_TARGET __attribute__((always_inline))
static inline void FN(lstm_train_second)(long H, long j, long n, const float *g, const float *c, float *tc, float *h) {
    FN(lstm_state_t) u = FN(lstm_state)(RRL_LOAD_UPTO(c + j, n), RRL_LOAD_UPTO(g + 3 * H + j, n));
    RRL_STORE_UPTO(tc + j, u.t, n);
    RRL_STORE_UPTO(h + j, u.h, n);
}

// Several rows of one time step (4H floats apart in g and gh, H in cprev, c, tc and h), as above.
RRL_TARGET
static void FN(lstm_train_rows)(long rows, long H, float *g, const float *gh, const float *cprev, float *c, float *tc, float *h) {
    const long G = 4 * H, block = G >= RRL_CELL_ROWS_FLOATS ? 1 : RRL_CELL_ROWS_FLOATS / G;
    for (long b0 = 0; b0 < rows; b0 += block) {
        const long b1 = rows - b0 < block ? rows : b0 + block;
        for (long b = b0; b < b1; b++) {
            for (long j = 0; j < H; j += LANES) {
                if (H - j >= LANES) FN(lstm_train_first)(H, j, LANES, g + b * G, gh + b * G, cprev + b * H, c + b * H);
                else FN(lstm_train_first)(H, j, H - j, g + b * G, gh + b * G, cprev + b * H, c + b * H);
            }
        }
        for (long b = b0; b < b1; b++) {
            for (long j = 0; j < H; j += LANES) {
                if (H - j >= LANES) FN(lstm_train_second)(H, j, LANES, g + b * G, c + b * H, tc + b * H, h + b * H);
                else FN(lstm_train_second)(H, j, H - j, g + b * G, c + b * H, tc + b * H, h + b * H);
            }
        }
    }
}

#undef V
#undef VI
#undef OP
#undef FN
#undef LANES
// The parameters, so that the next inclusion defines them afresh.
#undef RRL_BITS
#undef RRL_TARGET
#undef RRL_ROUND_NEAREST
#undef RRL_SELECT
#undef RRL_LOAD_UPTO
#undef RRL_STORE_UPTO
