/* The loops of _native.c for one instruction set, included once per set with
 *   VL      floats per vector (the set's native width: 4 SSE2, 8 AVX2, 16 AVX-512)
 *   TILE    vectors of outputs gather_reduce keeps in registers (TILE * VL batch entries)
 *   PACK    = TILE * VL: samples per packed tile of gather_tiles
 *   ISA     the suffix of this set's functions
 * under `#pragma GCC target(...)` for that set. A vector as wide as the set's registers compiles to plain
 * register code; a wider one would be split and spilled to the stack.
 */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define VEC CAT(vec, ISA)
#define VI CAT(vint, ISA)

typedef float VEC __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(VL * sizeof(float))));

/* max(x, 0) that keeps NaN (as torch.relu does, so a diverged run still shows a non-finite loss): the
 * set's max instruction (MAX_PS, one operation; it returns its second operand when one is NaN) where
 * there is one, else a compare and a mask. */
#ifdef MAX_PS
static inline VEC CAT(relu, ISA)(VEC x) { return (VEC)MAX_PS((VEC){0}, x); }
#else
static inline VEC CAT(relu, ISA)(VEC x) { return (VEC)((VI)x & ~(x <= (VEC){0})); }
#endif

/* v where mask > 0 (ReLU's gradient: its input was positive), else 0. */
static inline VEC CAT(masked, ISA)(VEC v, VEC mask) { return (VEC)((VI)v & (mask > (VEC){0})); }

static inline VEC CAT(load, ISA)(const float *p) {
    VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* t[0..VL) transposed in place (t[l][u] becomes t[u][l]): log2(VL) rounds of interleaving row i with row
 * i + VL/2 (the low halves' lanes into row 2i, the high halves' into row 2i + 1), a perfect shuffle whose
 * log2(VL)-th power is the transpose; each interleave is one or two shuffle instructions. */
static inline void CAT(transpose_tile, ISA)(VEC *t) {
#if VL == 4
    const VI lo = {0, 4, 1, 5}, hi = {2, 6, 3, 7};
#elif VL == 8
    const VI lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = {4, 12, 5, 13, 6, 14, 7, 15};
#else
    const VI lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23},
             hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
#endif
    for (int round = 1; round < VL; round *= 2) {
        VEC next[VL];
        for (int i = 0; i < VL / 2; i++) {
            next[2 * i] = __builtin_shuffle(t[i], t[i + VL / 2], lo);
            next[2 * i + 1] = __builtin_shuffle(t[i], t[i + VL / 2], hi);
        }
        memcpy(t, next, sizeof next);
    }
}

/* Rows [begin, end) of the flattened (r, i) range of gather_reduce. (Blocking the batch so that a block of
 * every source row stays in L2 was measured slower: the gathers run at L2/L3 bandwidth either way, and
 * shorter runs of the batch only add index and weight reloads.) */
static inline __attribute__((always_inline)) void CAT(gather_row, ISA)(const Problem *p, Py_ssize_t ri,
                                                                      const int relu, const int indirect) {
    {
        const Py_ssize_t r = ri / p->rows, i = ri % p->rows;
        const int32_t *idx = p->index + r * p->index_stride_r + i * p->fan;
        /* coefficient k of the row: coef[k], or with `indirect` coef[coef_index[k]] (the input gradient reads
         * the weights in fan-out order where they lie, without a transposed copy of them) */
        const float *c = p->coef + r * p->coef_stride_r + (indirect ? 0 : i * p->fan);
        const int32_t *ci = indirect ? p->coef_index + r * p->index_stride_r + i * p->fan : NULL;
#define COEF(k) (indirect ? c[ci[k]] : c[k])
        const float *src = p->src + r * p->src_stride_r;
        float *o = p->out + r * p->out_stride_r + i * p->out_ld;
        const float *mask = p->mask ? p->mask + r * p->mask_stride_r + i * p->mask_ld : NULL;
        const int biased = p->bias != NULL;
        const float beta = biased ? p->bias[r * p->bias_stride_r + i] : 0.0f;
        Py_ssize_t b = 0;
        for (; b + TILE * VL <= p->batch; b += TILE * VL) {
            VEC acc[TILE];
            for (int u = 0; u < TILE; u++) acc[u] = (VEC){0};
            for (Py_ssize_t k = 0; k < p->fan; k++) {
                const float *s = src + (Py_ssize_t)idx[k] * p->src_ld + b;
                const float w = COEF(k);  /* scalar * vector: one broadcast, then FMAs */
                for (int u = 0; u < TILE; u++) {
                    const VEC x = CAT(load, ISA)(s + u * VL);
                    acc[u] += w * (relu ? CAT(relu, ISA)(x) : x);
                }
            }
            for (int u = 0; u < TILE; u++) {
                if (biased) acc[u] += beta;
                if (mask) acc[u] = CAT(masked, ISA)(acc[u], CAT(load, ISA)(mask + b + u * VL));
            }
            memcpy(o + b, acc, sizeof acc);
        }
        for (; b + VL <= p->batch; b += VL) {
            VEC acc = {0};
            for (Py_ssize_t k = 0; k < p->fan; k++) {
                const VEC x = CAT(load, ISA)(src + (Py_ssize_t)idx[k] * p->src_ld + b);
                acc += COEF(k) * (relu ? CAT(relu, ISA)(x) : x);
            }
            if (biased) acc += beta;
            if (mask) acc = CAT(masked, ISA)(acc, CAT(load, ISA)(mask + b));
            memcpy(o + b, &acc, sizeof acc);
        }
        for (; b < p->batch; b++) {
            float acc = 0.0f;
            for (Py_ssize_t k = 0; k < p->fan; k++) {
                const float x = src[(Py_ssize_t)idx[k] * p->src_ld + b];
                acc += COEF(k) * (relu ? relu_scalar(x) : x);
            }
            if (biased) acc += beta;
            o[b] = mask && !(mask[b] > 0.0f) ? 0.0f : acc;
        }
#undef COEF
    }
}

/* `relu` and `indirect` constants in each call, so the inner loops are compiled for each case. */
static void CAT(gather_rows, ISA)(const Problem *p, Py_ssize_t begin, Py_ssize_t end) {
    const int indirect = p->coef_index != NULL;
    for (Py_ssize_t ri = begin; ri < end; ri++) {
        if (p->relu_src)
            indirect ? CAT(gather_row, ISA)(p, ri, 1, 1) : CAT(gather_row, ISA)(p, ri, 1, 0);
        else
            indirect ? CAT(gather_row, ISA)(p, ri, 0, 1) : CAT(gather_row, ISA)(p, ri, 0, 0);
    }
}

/* Samples [b0, b0 + w) (w <= PACK) of layer r's source packed into buf, feature-major with rows PACK floats
 * apart: a copy of a stretch of every row of a feature-major source, or a transpose (VL x VL register
 * tiles) of w rows of a batch-major one, which also goes to p->copy (the source's feature-major copy, for
 * the caller's later products) if asked. */
static void CAT(pack_tile, ISA)(const Problem *p, Py_ssize_t r, Py_ssize_t b0, Py_ssize_t w, float *buf) {
    const float *src = p->src + r * p->src_stride_r;
    const Py_ssize_t n_src = p->src_rows, ld = p->src_ld;
    if (!p->src_batch_major) {
        for (Py_ssize_t n = 0; n < n_src; n++) memcpy(buf + n * PACK, src + n * ld + b0, w * sizeof(float));
        return;
    }
    Py_ssize_t u0 = 0;
    for (; u0 + VL <= w; u0 += VL) {
        const float *rows = src + (b0 + u0) * ld;
        Py_ssize_t n0 = 0;
        for (; n0 + VL <= n_src; n0 += VL) {
            VEC tile[VL];
            for (int u = 0; u < VL; u++) tile[u] = CAT(load, ISA)(rows + u * ld + n0);
            CAT(transpose_tile, ISA)(tile);
            for (int l = 0; l < VL; l++) memcpy(buf + (n0 + l) * PACK + u0, tile + l, sizeof(VEC));
        }
        for (; n0 < n_src; n0++)
            for (int u = 0; u < VL; u++) buf[n0 * PACK + u0 + u] = rows[u * ld + n0];
    }
    for (; u0 < w; u0++)
        for (Py_ssize_t n = 0; n < n_src; n++) buf[n * PACK + u0] = src[(b0 + u0) * ld + n];
    if (p->copy) {
        float *copy = p->copy + b0;
        for (Py_ssize_t n = 0; n < n_src; n++) memcpy(copy + n * p->copy_ld, buf + n * PACK, w * sizeof(float));
    }
}

/* Work items [begin, end) of gather_reduce on packed tiles: item = (layer r, tile of PACK samples). The
 * tile's source is packed into this thread's buffer (p->pack), then every output row's stretch of the tile
 * is gathered from it as gather_rows gathers a row: the same sums in the same order, so the same results
 * bit for bit. A random source row is then a run in a buffer of N x PACK floats that stays in L2, where a
 * feature-major (N, B) source wider than L2 serves each gathered stretch from L3 (benchmarks/sparse_linear.py
 * --tiles, 2 MB L2: 0.75-0.76 of the row-by-row step's time at 4096 source rows, 0.85-0.95 at 2048; see
 * native.TILED_SOURCE_BYTES). */
static void CAT(gather_tiles, ISA)(const Problem *p, Py_ssize_t begin, Py_ssize_t end) {
    const Py_ssize_t tiles = (p->batch + PACK - 1) / PACK;
#ifdef _OPENMP
    float *buf = p->pack + omp_get_thread_num() * p->pack_stride;
#else
    float *buf = p->pack;
#endif
    for (Py_ssize_t item = begin; item < end; item++) {
        const Py_ssize_t r = item / tiles, b0 = item % tiles * PACK;
        const Py_ssize_t w = p->batch - b0 < PACK ? p->batch - b0 : PACK;
        CAT(pack_tile, ISA)(p, r, b0, w, buf);
        Problem q = *p; /* one layer's tile, its source the packed buffer */
        q.src = buf, q.src_ld = PACK, q.batch = w, q.layers = 1;
        q.index = p->index + r * p->index_stride_r;
        q.coef = p->coef + r * p->coef_stride_r;
        q.coef_index = p->coef_index ? p->coef_index + r * p->index_stride_r : NULL;
        q.out = p->out + r * p->out_stride_r + b0;
        q.bias = p->bias ? p->bias + r * p->bias_stride_r : NULL;
        q.mask = p->mask ? p->mask + r * p->mask_stride_r + b0 : NULL;
        q.src_stride_r = q.index_stride_r = q.coef_stride_r = q.out_stride_r = q.bias_stride_r = q.mask_stride_r = 0;
        CAT(gather_rows, ISA)(&q, 0, p->rows);
    }
}

/* v's lanes summed in order: how every sum over the batch ends, before its tail (batch % VL samples) is
 * added, in one of two ways: a dot product adds the tail's own sum, a row sum adds the tail's values one
 * by one. The fused step's passes (_native_step.h) end theirs the same ways, so they agree bit for bit. */
static inline float CAT(lane_sum, ISA)(VEC v) {
    float d = 0.0f;
    for (int l = 0; l < VL; l++) d += v[l];
    return d;
}

/* `count` (<= G) connections k.. of a row of connection_dots in one pass over the batch, so a[i] is loaded
 * once for G dot products (G a constant in each call; a short group repeats its first connection and
 * drops the copies); each dot sums its lanes, then the batch's tail, in a fixed order, so how connections
 * are grouped changes no result. `row_sum`, if given, receives a's row summed on the same pass. */
static inline __attribute__((always_inline)) void CAT(dots_group, ISA)(const Problem *p, const int32_t *idx,
                                                                      const float *src, const float *a, float *o,
                                                                      const int count, const int G, const int relu,
                                                                      float *row_sum) {
    const float *s[DOTS];
    for (int q = 0; q < G; q++) s[q] = src + (Py_ssize_t)idx[q < count ? q : 0] * p->src_ld;
    VEC v[DOTS], sum = {0};
    for (int q = 0; q < G; q++) v[q] = (VEC){0};
    Py_ssize_t b = 0;
    for (; b + VL <= p->batch; b += VL) {
        const VEC x = CAT(load, ISA)(a + b);
        if (row_sum) sum += x;
        for (int q = 0; q < G; q++) {
            const VEC y = CAT(load, ISA)(s[q] + b);
            v[q] += x * (relu ? CAT(relu, ISA)(y) : y);
        }
    }
    for (int q = 0; q < count; q++) {
        float tail = 0.0f;
        for (Py_ssize_t t = b; t < p->batch; t++) tail += a[t] * (relu ? relu_scalar(s[q][t]) : s[q][t]);
        const float d = CAT(lane_sum, ISA)(v[q]) + tail;
        o[q] = p->accumulate ? o[q] + d : d;
    }
    if (row_sum) {
        float total = CAT(lane_sum, ISA)(sum);
        for (Py_ssize_t t = b; t < p->batch; t++) total += a[t];
        *row_sum = total;
    }
}

/* Row ri of connection_dots: groups of DOTS connections (8 measured 15-30 % faster than 4: fewer passes
 * over a), the rest in groups of 4 (a fan-in below 8 would waste most of a group of 8); the bias
 * gradient (a's row sum) on the first pass. */
static inline __attribute__((always_inline)) void CAT(dots_row, ISA)(const Problem *p, Py_ssize_t ri,
                                                                    const int relu, const int sums) {
    const Py_ssize_t r = ri / p->rows, i = ri % p->rows;
    const int32_t *idx = p->index + r * p->index_stride_r + i * p->fan;
    const float *src = p->src + r * p->src_stride_r;
    const float *a = p->a + r * p->a_stride_r + i * p->a_ld;
    float *o = p->out + r * p->out_stride_r + i * p->fan;
    float *row_sum = sums ? p->row_sums + r * p->row_sums_stride_r + i : NULL;
    Py_ssize_t k = 0;
    for (; k + DOTS <= p->fan; k += DOTS)
        CAT(dots_group, ISA)(p, idx + k, src, a, o + k, DOTS, DOTS, relu, k == 0 ? row_sum : NULL);
    for (; k < p->fan; k += 4)
        CAT(dots_group, ISA)(p, idx + k, src, a, o + k, p->fan - k < 4 ? (int)(p->fan - k) : 4, 4, relu,
                             k == 0 ? row_sum : NULL);
}

static void CAT(dots_rows, ISA)(const Problem *p, Py_ssize_t begin, Py_ssize_t end) {
    const int sums = p->row_sums != NULL;
    for (Py_ssize_t ri = begin; ri < end; ri++) {
        if (p->relu_src)
            sums ? CAT(dots_row, ISA)(p, ri, 1, 1) : CAT(dots_row, ISA)(p, ri, 1, 0);
        else
            sums ? CAT(dots_row, ISA)(p, ri, 0, 1) : CAT(dots_row, ISA)(p, ri, 0, 0);
    }
}

/* Rows [begin, end) of out (cols, rows) = src (rows, cols)^T, where rows = p->batch, cols = p->rows: the
 * source read a band of VL rows at a time, along its rows, each VL x VL tile transposed in registers and
 * stored as VL vectors, the edges element by element. (Reading it down its columns instead, a load every
 * src_ld floats, with the tiles' columns extracted lane by lane: 20,000 transposes of 256 x 1024 took
 * 3.95 s of a whole process against 3.5 s, start-up included, on an AVX2 core.) */
static void CAT(transpose_rows, ISA)(const Problem *p, Py_ssize_t begin, Py_ssize_t end) {
    Py_ssize_t i0 = 0;
    for (; i0 + VL <= p->batch; i0 += VL) {
        const float *rows = p->src + i0 * p->src_ld;
        Py_ssize_t j0 = begin;
        for (; j0 + VL <= end; j0 += VL) {
            VEC tile[VL];
            for (int u = 0; u < VL; u++) tile[u] = CAT(load, ISA)(rows + u * p->src_ld + j0);
            CAT(transpose_tile, ISA)(tile);
            for (int l = 0; l < VL; l++) memcpy(p->out + (j0 + l) * p->out_ld + i0, tile + l, sizeof(VEC));
        }
        for (; j0 < end; j0++)
            for (int u = 0; u < VL; u++) p->out[j0 * p->out_ld + i0 + u] = rows[u * p->src_ld + j0];
    }
    for (; i0 < p->batch; i0++)
        for (Py_ssize_t j = begin; j < end; j++) p->out[j * p->out_ld + i0] = p->src[i0 * p->src_ld + j];
}

/* The fused step, on this set's loops. */
#include "_native_step.h"

#undef VEC
#undef VI
