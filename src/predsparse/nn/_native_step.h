/* A whole training step (or an evaluation pass) of an MLP of fixed fan-in / fixed fan-out junctions in one
 * native call: the batch gathered from the data set, every junction's forward, softmax cross-entropy,
 * every gradient and the SGD update, with no Python, autograd or optimiser code between them.
 * predsparse.nn.fused drives it; its docstring says when it applies and what it computes. Included by
 * _native_kernels.h once per instruction set, so that its element-wise loops (the batch gather, the loss,
 * the SGD update) run at the set's width too. The junctions below the last two run on the layer's workers
 * (gather_rows, dots_rows); the last two run as one pass over their hidden neurons (pair_*), summing in
 * the workers' order but for one case that its comment names. Every sum is computed whole by one thread,
 * so no result depends on the thread count.
 */
#ifndef NATIVE_STEP_TYPES
#define NATIVE_STEP_TYPES
#include <math.h>

/* One junction, as predsparse.nn.fused.JUNCTION_FIELDS lays it out: sizes, then addresses (0: none). */
typedef struct {
    int64_t n_in, n_out, fan_in, fan_out;
    int64_t weight, bias, fan_in_index, fan_out_right, fan_out_position;
    int64_t weight_buf, bias_buf; /* SGD momentum buffers (0 without momentum) */
    int64_t act;                  /* its output, (n_out, batch) rows ld apart: the next junction's input */
    int64_t grad_weight, grad_bias, weight_t; /* workspace: gradients, weights in fan-out order */
} Junction;

#define CHUNK 64 /* samples per chunk of the last two junctions' forward pass */
#define PTR(type, field) ((type *)(intptr_t)(field))

typedef struct {
    const Junction *j;
    Py_ssize_t layers, batch, classes;
    Py_ssize_t ld;        /* floats between rows of every (n, batch) buffer: >= batch, padded (see fused.py) */
    const float *x;       /* the data set's inputs, rows x_ld floats apart */
    Py_ssize_t x_ld, start;
    const int64_t *picks; /* the batch's sample indices (NULL: samples start .. start + batch) */
    const int64_t *labels;
    float *act0, *grad[2]; /* the batch's inputs (n_0, batch); two gradients of (n, batch), used in turn */
    int threads;
    unsigned csr; /* the calling thread's MXCSR state before the step (see flush_denormals) */
} Step;
static inline Py_ssize_t step_sample(const Step *s, Py_ssize_t b) { return s->picks ? s->picks[b] : s->start + b; }
#endif /* NATIVE_STEP_TYPES */

/* act0[f, b] = x[sample b, f]: the batch gathered and transposed to feature-major in one pass. */
static void CAT(gather_batch, ISA)(const Step *s) {
    const Py_ssize_t n0 = s->j[0].n_in, batch = s->batch;
    for (Py_ssize_t b0 = 0; b0 < batch; b0 += 8) { /* 8 samples at a time: runs of 8 floats written */
        const Py_ssize_t width = batch - b0 < 8 ? batch - b0 : 8;
        const float *row[8];
        for (Py_ssize_t u = 0; u < width; u++) row[u] = s->x + step_sample(s, b0 + u) * s->x_ld;
        for (Py_ssize_t f = 0; f < n0; f++)
            for (Py_ssize_t u = 0; u < width; u++) s->act0[f * s->ld + b0 + u] = row[u][f];
    }
}

/* Junction l's forward on the layer's gather (a hidden activation read through its ReLU, as
 * ConnectedLayers does). */
static void CAT(forward_junction, ISA)(const Step *s, Py_ssize_t l) {
    const Junction *j = s->j + l;
    Problem p = {0};
    p.out = PTR(float, j->act);
    p.src = l == 0 ? s->act0 : PTR(const float, s->j[l - 1].act);
    p.index = PTR(const int32_t, j->fan_in_index);
    p.coef = PTR(const float, j->weight);
    p.bias = PTR(const float, j->bias);
    p.layers = 1, p.rows = j->n_out, p.fan = j->fan_in, p.batch = s->batch;
    p.src_ld = p.out_ld = s->ld;
    p.relu_src = l > 0;
    p.flush = 1, p.csr = s->csr;
    run_parallel(CAT(gather_rows, ISA), &p, s->threads);
}

/* Samples [b0, b0 + NV * VL) (NV a constant in each call: its vectors stay in registers) of the last two
 * junctions' forward, in one pass over the hidden neurons h: h's pre-activation gathered from the input
 * (as gather_rows does, and stored for the backward pass), then its ReLU added into the outputs it feeds,
 * weighted. Every operand of a chunk of CHUNK samples fits in L1 (the 64-row input and output of the
 * Morse net: 16 KB each), where the last junction's gathers would read every hidden row fan-out times
 * from L2. An output sums its connections in the order of their hidden neurons, then adds its bias:
 * gather_rows's order when its fan-in row is sorted (the generators' rows are). */
static inline __attribute__((always_inline)) void CAT(pair_forward_vectors, ISA)(const Step *s, Py_ssize_t b0,
                                                                                const int NV) {
    const Junction *a = s->j + s->layers - 2, *z = s->j + s->layers - 1;
    const Py_ssize_t ld = s->ld;
    const float *src = s->layers == 2 ? s->act0 : PTR(const float, s->j[s->layers - 3].act);
    const int relu_src = s->layers > 2;
    float *hidden = PTR(float, a->act), *out = PTR(float, z->act);
    const int32_t *index = PTR(const int32_t, a->fan_in_index), *right = PTR(const int32_t, z->fan_out_right);
    const float *wa = PTR(const float, a->weight), *wz = PTR(const float, z->weight_t);
    const float *bias_a = PTR(const float, a->bias), *bias_z = PTR(const float, z->bias);
    for (Py_ssize_t o = 0; o < z->n_out; o++) memset(out + o * ld + b0, 0, NV * VL * sizeof(float));
    for (Py_ssize_t h = 0; h < a->n_out; h++) {
        VEC acc[NV];
        for (int v = 0; v < NV; v++) acc[v] = (VEC){0};
        for (Py_ssize_t k = 0; k < a->fan_in; k++) {
            const float *x = src + (Py_ssize_t)index[h * a->fan_in + k] * ld + b0;
            const float w = wa[h * a->fan_in + k];
            for (int v = 0; v < NV; v++) {
                const VEC xv = CAT(load, ISA)(x + v * VL);
                acc[v] += w * (relu_src ? CAT(relu, ISA)(xv) : xv);
            }
        }
        for (int v = 0; v < NV; v++) acc[v] += bias_a[h];
        memcpy(hidden + h * ld + b0, acc, sizeof acc);
        for (int v = 0; v < NV; v++) acc[v] = CAT(relu, ISA)(acc[v]);
        for (Py_ssize_t q = 0; q < z->fan_out; q++) {
            float *o = out + (Py_ssize_t)right[h * z->fan_out + q] * ld + b0;
            const float w = wz[h * z->fan_out + q];
            for (int v = 0; v < NV; v++) {
                VEC ov = CAT(load, ISA)(o + v * VL);
                ov += w * acc[v];
                memcpy(o + v * VL, &ov, sizeof ov);
            }
        }
    }
    for (Py_ssize_t o = 0; o < z->n_out; o++)
        for (Py_ssize_t b = b0; b < b0 + NV * VL; b++) out[o * ld + b] += bias_z[o];
}

/* The same for samples [b0, b1), fewer than VL: element by element, in the same order. */
static void CAT(pair_forward_tail, ISA)(const Step *s, Py_ssize_t b0, Py_ssize_t b1) {
    const Junction *a = s->j + s->layers - 2, *z = s->j + s->layers - 1;
    const Py_ssize_t ld = s->ld;
    const float *src = s->layers == 2 ? s->act0 : PTR(const float, s->j[s->layers - 3].act);
    float *hidden = PTR(float, a->act), *out = PTR(float, z->act);
    const int32_t *index = PTR(const int32_t, a->fan_in_index), *right = PTR(const int32_t, z->fan_out_right);
    const float *wa = PTR(const float, a->weight), *wz = PTR(const float, z->weight_t);
    for (Py_ssize_t o = 0; o < z->n_out; o++)
        for (Py_ssize_t b = b0; b < b1; b++) out[o * ld + b] = 0.0f;
    for (Py_ssize_t h = 0; h < a->n_out; h++)
        for (Py_ssize_t b = b0; b < b1; b++) {
            float acc = 0.0f;
            for (Py_ssize_t k = 0; k < a->fan_in; k++) {
                const float x = src[(Py_ssize_t)index[h * a->fan_in + k] * ld + b];
                acc += wa[h * a->fan_in + k] * (s->layers > 2 ? relu_scalar(x) : x);
            }
            acc += PTR(const float, a->bias)[h];
            hidden[h * ld + b] = acc;
            const float r = relu_scalar(acc);
            for (Py_ssize_t q = 0; q < z->fan_out; q++)
                out[(Py_ssize_t)right[h * z->fan_out + q] * ld + b] += wz[h * z->fan_out + q] * r;
        }
    for (Py_ssize_t o = 0; o < z->n_out; o++)
        for (Py_ssize_t b = b0; b < b1; b++) out[o * ld + b] += PTR(const float, z->bias)[o];
}

/* Chunks of the batch: independent in the forward pass, so split over the threads, each computed the
 * same way whichever thread has it. */
static void CAT(pair_forward_chunks, ISA)(const Step *s, Py_ssize_t first, Py_ssize_t last) {
    for (Py_ssize_t c = first; c < last; c++) {
        const Py_ssize_t b0 = c * CHUNK, b1 = b0 + CHUNK < s->batch ? b0 + CHUNK : s->batch;
        Py_ssize_t b = b0;
        if (b1 - b == CHUNK) {
            CAT(pair_forward_vectors, ISA)(s, b, CHUNK / VL);
            continue;
        }
        for (; b + VL <= b1; b += VL) CAT(pair_forward_vectors, ISA)(s, b, 1);
        if (b < b1) CAT(pair_forward_tail, ISA)(s, b, b1);
    }
}

static void CAT(step_forward, ISA)(const Step *s) {
    const Py_ssize_t layered = s->layers >= 2 ? s->layers - 2 : s->layers;
    for (Py_ssize_t l = 0; l < layered; l++) CAT(forward_junction, ISA)(s, l);
    if (layered == s->layers)
        return;
    const Py_ssize_t chunks = (s->batch + CHUNK - 1) / CHUNK;
#ifdef _OPENMP
    if (s->threads > 1 && chunks > 1) {
#pragma omp parallel num_threads(s->threads)
        {
            const Py_ssize_t n = omp_get_num_threads(), t = omp_get_thread_num();
            flush_denormals();
            CAT(pair_forward_chunks, ISA)(s, chunks * t / n, chunks * (t + 1) / n);
            restore_denormals(s->csr);
        }
        return;
    }
#endif
    CAT(pair_forward_chunks, ISA)(s, 0, chunks);
}

/* exp(x) for x <= 0 (a logit minus its sample's maximum), within 2 ulp: x = n ln 2 + r with |r| <= ln2 / 2,
 * a degree-6 polynomial for exp(r), times 2^n built in the exponent bits. Plain arithmetic, so the loops
 * that call it vectorise (libm's expf does not: it took 9 % of a profile's samples of fused steps). */
static inline float CAT(exp_nonpositive, ISA)(float x) {
    x = x < -87.0f ? -87.0f : x; /* below, exp underflows to 0 in the sum anyway; keeps 2^n normal */
    /* n = x log2(e) rounded to the nearest integer by adding and subtracting 1.5 * 2^23 (exact for |n| < 2^22):
     * plain additions, which vectorise in every set, where roundf is a libm call. */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f; /* ln 2 split in two for an exact product */
    float q = 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return q * scale;
}

/* Softmax cross-entropy over all outputs of the logits z (n_out, batch): returns the sum of the samples'
 * losses, counts correct predictions (the first maximum among the real classes, as PatternNet.predict)
 * and, if grad is given, writes d(mean loss)/d(z) there. Loops run over the batch, a contiguous run of
 * every logit row, with per-sample values in `scratch` (4 x batch floats). */
static double CAT(step_loss, ISA)(const Step *s, float *grad, float *scratch, int64_t *correct) {
    const Junction *last = s->j + s->layers - 1;
    const float *z = PTR(const float, last->act);
    const Py_ssize_t outputs = last->n_out, batch = s->batch;
    float *top = scratch, *sum = scratch + batch, *best = scratch + 2 * batch, *pick = scratch + 3 * batch;
    for (Py_ssize_t b = 0; b < batch; b++) top[b] = best[b] = z[b], pick[b] = 0.0f;
    for (Py_ssize_t c = 1; c < outputs; c++) {
        const float *row = z + c * s->ld;
        for (Py_ssize_t b = 0; b < batch; b++) top[b] = row[b] > top[b] ? row[b] : top[b];
        if (c < s->classes)
            for (Py_ssize_t b = 0; b < batch; b++) { /* branch-free, so that it vectorises */
                const int better = row[b] > best[b];
                best[b] = better ? row[b] : best[b];
                pick[b] = better ? (float)c : pick[b];
            }
    }
    for (Py_ssize_t b = 0; b < batch; b++) sum[b] = 0.0f;
    for (Py_ssize_t c = 0; c < outputs; c++) {
        const float *row = z + c * s->ld;
        float *e = grad ? grad + c * s->ld : NULL;
        for (Py_ssize_t b = 0; b < batch; b++) {
            const float v = CAT(exp_nonpositive, ISA)(row[b] - top[b]);
            sum[b] += v;
            if (e) e[b] = v;
        }
    }
    double total = 0.0;
    for (Py_ssize_t b = 0; b < batch; b++) {
        const int64_t label = s->labels[step_sample(s, b)];
        *correct += (int64_t)pick[b] == label;
        total += (double)(logf(sum[b]) + top[b] - z[label * s->ld + b]);
    }
    if (grad) {
        const float scale = 1.0f / (float)batch;
        for (Py_ssize_t b = 0; b < batch; b++) sum[b] = scale / sum[b];
        for (Py_ssize_t c = 0; c < outputs; c++) {
            float *e = grad + c * s->ld;
            for (Py_ssize_t b = 0; b < batch; b++) e[b] *= sum[b];
        }
        for (Py_ssize_t b = 0; b < batch; b++) grad[s->labels[step_sample(s, b)] * s->ld + b] -= scale;
    }
    return total;
}

/* Junction l's weight and bias gradients from its output gradient (connection_dots). */
static void CAT(backward_weights, ISA)(const Step *s, const float *grad_out, Py_ssize_t l) {
    const Junction *j = s->j + l;
    Problem q = {0};
    q.out = PTR(float, j->grad_weight);
    q.a = grad_out;
    q.src = l == 0 ? s->act0 : PTR(const float, s->j[l - 1].act);
    q.index = PTR(const int32_t, j->fan_in_index);
    q.row_sums = PTR(float, j->grad_bias);
    q.layers = 1, q.rows = j->n_out, q.fan = j->fan_in, q.batch = s->batch;
    q.a_ld = q.src_ld = s->ld;
    q.relu_src = l > 0;
    q.flush = 1, q.csr = s->csr;
    run_parallel(CAT(dots_rows, ISA), &q, s->threads);
}

/* The gradient of junction l's input (l > 0) through the ReLU: the fan-out gather, masked where the
 * pre-activation <= 0. */
static void CAT(backward_input, ISA)(const Step *s, const float *grad_out, float *grad_in, Py_ssize_t l) {
    const Junction *j = s->j + l;
    Problem r = {0};
    r.out = grad_in;
    r.src = grad_out;
    r.index = PTR(const int32_t, j->fan_out_right);
    r.coef = PTR(const float, j->weight_t);
    r.mask = PTR(const float, s->j[l - 1].act);
    r.layers = 1, r.rows = j->n_in, r.fan = j->fan_out, r.batch = s->batch;
    r.src_ld = r.out_ld = r.mask_ld = s->ld;
    r.flush = 1, r.csr = s->csr;
    run_parallel(CAT(gather_rows, ISA), &r, s->threads);
}

/* Connections whose dot products one pass over the batch accumulates: DOTS, as connection_dots, in the
 * first pass; in the passes over further fan-out connections, which hold only those accumulators, as many
 * as AVX-512's 32 registers keep (16 vectors of 16 floats), 8 in the 16 registers of the other sets. */
#define PAIR_LATER (VL >= 16 ? 16 : 8)

/* Hidden neurons [h0, h1) of the last two junctions' backward pass, one neuron at a time over the whole
 * batch: its gradient gh (the fan-out gather of grad_out, masked by its ReLU), the dot products of its
 * fan-out connections (grad_out rows with its ReLU) and of its fan-in connections (gh with the input
 * rows), and its bias gradient (gh summed), with its hidden row and gh loaded once for all of them, where
 * the layered passes (backward_weights, backward_input) read every hidden row fan-out times from L2.
 * Every sum runs in the order of the layered passes (over q for gh; for a dot product or a row sum, over
 * the batch, then the lanes, then the tail as connection_dots adds it), so the results are theirs, bit for
 * bit (tests/test_fused.py checks it on every instruction set). gh is stored in grad_hidden for the passes over
 * groups of connections beyond the first and for the input gradient below (a deeper net). */
static void CAT(pair_backward_rows, ISA)(const Step *s, const float *grad_out, float *grad_hidden, Py_ssize_t h0,
                                         Py_ssize_t h1) {
    const Junction *a = s->j + s->layers - 2, *z = s->j + s->layers - 1;
    const Py_ssize_t ld = s->ld, batch = s->batch, fo = z->fan_out, fi = a->fan_in;
    const float *src = s->layers == 2 ? s->act0 : PTR(const float, s->j[s->layers - 3].act);
    const int relu_src = s->layers > 2;
    const float *hidden = PTR(const float, a->act), *wz = PTR(const float, z->weight_t);
    const int32_t *index = PTR(const int32_t, a->fan_in_index), *right = PTR(const int32_t, z->fan_out_right);
    const int32_t *position = PTR(const int32_t, z->fan_out_position);
    float *dz = PTR(float, z->grad_weight), *da = PTR(float, a->grad_weight), *dbias = PTR(float, a->grad_bias);
    const Py_ssize_t tail0 = batch - batch % VL;
    for (Py_ssize_t h = h0; h < h1; h++) {
        const float *m = hidden + h * ld;
        float *gh = grad_hidden + h * ld;
        const int32_t *rq = right + h * fo, *ik = index + h * fi;
        const float *wq = wz + h * fo;
        /* Pass 1: gh over all fan-out connections; the dots of the first group of each side. */
        const int nq = fo < DOTS ? (int)fo : DOTS, nk = fi < DOTS ? (int)fi : DOTS;
        const float *g[DOTS], *x[DOTS];
        for (int q = 0; q < DOTS; q++) g[q] = grad_out + (Py_ssize_t)rq[q < nq ? q : 0] * ld;
        for (int k = 0; k < DOTS; k++) x[k] = src + (Py_ssize_t)ik[k < nk ? k : 0] * ld;
        VEC vq[DOTS], vk[DOTS], vsum = {0};
        for (int q = 0; q < DOTS; q++) vq[q] = vk[q] = (VEC){0};
        for (Py_ssize_t b = 0; b < tail0; b += VL) {
            const VEC mv = CAT(load, ISA)(m + b), rv = CAT(relu, ISA)(mv);
            VEC acc = {0};
            for (int q = 0; q < DOTS; q++) {
                const VEC gv = CAT(load, ISA)(g[q] + b);
                if (q < nq) acc += wq[q] * gv;
                vq[q] += gv * rv;
            }
            for (Py_ssize_t q = DOTS; q < fo; q++)
                acc += wq[q] * CAT(load, ISA)(grad_out + (Py_ssize_t)rq[q] * ld + b);
            acc = CAT(masked, ISA)(acc, mv);
            memcpy(gh + b, &acc, sizeof acc);
            vsum += acc;
            for (int k = 0; k < DOTS; k++) {
                const VEC xv = CAT(load, ISA)(x[k] + b);
                vk[k] += acc * (relu_src ? CAT(relu, ISA)(xv) : xv);
            }
        }
        for (Py_ssize_t t = tail0; t < batch; t++) { /* gh on the batch's tail */
            float acc = 0.0f;
            for (Py_ssize_t q = 0; q < fo; q++) acc += wq[q] * grad_out[(Py_ssize_t)rq[q] * ld + t];
            gh[t] = m[t] > 0.0f ? acc : 0.0f;
        }
        /* Each dot's tail summed on its own, then added to its lanes' sum, as connection_dots does (a tail
         * summed for all connections in one loop was rounded otherwise by AVX2's build). */
        for (int q = 0; q < nq; q++) {
            float tail = 0.0f;
            for (Py_ssize_t t = tail0; t < batch; t++) tail += g[q][t] * relu_scalar(m[t]);
            dz[position[h * fo + q]] = CAT(lane_sum, ISA)(vq[q]) + tail;
        }
        for (int k = 0; k < nk; k++) {
            float tail = 0.0f;
            for (Py_ssize_t t = tail0; t < batch; t++) tail += gh[t] * (relu_src ? relu_scalar(x[k][t]) : x[k][t]);
            da[h * fi + k] = CAT(lane_sum, ISA)(vk[k]) + tail;
        }
        float total = CAT(lane_sum, ISA)(vsum); /* a row sum: the tail's values one by one */
        for (Py_ssize_t t = tail0; t < batch; t++) total += gh[t];
        dbias[h] = total;
        /* Further groups of fan-out connections (the ReLU of h with grad_out rows), then of fan-in ones. */
        for (Py_ssize_t q0 = DOTS; q0 < fo; q0 += PAIR_LATER) {
            const int n = fo - q0 < PAIR_LATER ? (int)(fo - q0) : PAIR_LATER;
            const float *gl[PAIR_LATER];
            VEC vl[PAIR_LATER];
            for (int q = 0; q < PAIR_LATER; q++) gl[q] = grad_out + (Py_ssize_t)rq[q0 + (q < n ? q : 0)] * ld;
            for (int q = 0; q < PAIR_LATER; q++) vl[q] = (VEC){0};
            for (Py_ssize_t b = 0; b < tail0; b += VL) {
                const VEC rv = CAT(relu, ISA)(CAT(load, ISA)(m + b));
                for (int q = 0; q < PAIR_LATER; q++) vl[q] += CAT(load, ISA)(gl[q] + b) * rv;
            }
            for (int q = 0; q < n; q++) {
                float tail = 0.0f;
                for (Py_ssize_t t = tail0; t < batch; t++) tail += gl[q][t] * relu_scalar(m[t]);
                dz[position[h * fo + q0 + q]] = CAT(lane_sum, ISA)(vl[q]) + tail;
            }
        }
        for (Py_ssize_t k0 = DOTS; k0 < fi; k0 += DOTS) {
            const int n = fi - k0 < DOTS ? (int)(fi - k0) : DOTS;
            for (int k = 0; k < DOTS; k++) x[k] = src + (Py_ssize_t)ik[k0 + (k < n ? k : 0)] * ld;
            for (int k = 0; k < DOTS; k++) vk[k] = (VEC){0};
            for (Py_ssize_t b = 0; b < tail0; b += VL) {
                const VEC gv = CAT(load, ISA)(gh + b);
                for (int k = 0; k < DOTS; k++) {
                    const VEC xv = CAT(load, ISA)(x[k] + b);
                    vk[k] += gv * (relu_src ? CAT(relu, ISA)(xv) : xv);
                }
            }
            for (int k = 0; k < n; k++) {
                float tail = 0.0f;
                for (Py_ssize_t t = tail0; t < batch; t++) tail += gh[t] * (relu_src ? relu_scalar(x[k][t]) : x[k][t]);
                da[h * fi + k0 + k] = CAT(lane_sum, ISA)(vk[k]) + tail;
            }
        }
    }
}

/* The last junction's bias gradient: grad_out's rows summed, as connection_dots's row sums. */
static void CAT(output_bias_gradient, ISA)(const Step *s, const float *grad_out) {
    const Junction *z = s->j + s->layers - 1;
    const Py_ssize_t tail0 = s->batch - s->batch % VL;
    for (Py_ssize_t o = 0; o < z->n_out; o++) {
        const float *g = grad_out + o * s->ld;
        VEC v = {0};
        for (Py_ssize_t b = 0; b < tail0; b += VL) v += CAT(load, ISA)(g + b);
        float total = CAT(lane_sum, ISA)(v);
        for (Py_ssize_t t = tail0; t < s->batch; t++) total += g[t];
        PTR(float, z->grad_bias)[o] = total;
    }
}

/* The backward pass from the loss's gradient in grad[0]: the last two junctions in one pass (hidden rows
 * split over the threads: each row's results are its own), the junctions below layer by layer, gradients
 * alternating between grad[0] and grad[1]. */
static void CAT(step_backward, ISA)(const Step *s) {
    Py_ssize_t l = s->layers - 1;
    if (s->layers >= 2) {
        const Py_ssize_t rows = s->j[l - 1].n_out;
        CAT(output_bias_gradient, ISA)(s, s->grad[0]);
#ifdef _OPENMP
        if (s->threads > 1 && rows > 1) {
#pragma omp parallel num_threads(s->threads)
            {
                const Py_ssize_t n = omp_get_num_threads(), t = omp_get_thread_num();
                flush_denormals();
                CAT(pair_backward_rows, ISA)(s, s->grad[0], s->grad[1], rows * t / n, rows * (t + 1) / n);
                restore_denormals(s->csr);
            }
        } else
#endif
            CAT(pair_backward_rows, ISA)(s, s->grad[0], s->grad[1], 0, rows);
        l -= 1;
        if (l > 0)
            CAT(backward_input, ISA)(s, s->grad[1], s->grad[0], l);
        l -= 1;
    }
    for (; l >= 0; l--) {
        const int turn = (int)((s->layers - 1 - l) % 2);
        CAT(backward_weights, ISA)(s, s->grad[turn], l);
        if (l > 0)
            CAT(backward_input, ISA)(s, s->grad[turn], s->grad[1 - turn], l);
    }
}

/* torch.optim.SGD's update (dampening 0, no Nesterov): d = g + decay p; buf = d on the first step, else
 * momentum buf + d; p -= lr buf (p -= lr d without momentum). */
static void CAT(sgd_update, ISA)(float *p, const float *g, float *buf, Py_ssize_t n, float lr, float momentum,
                                 float decay, int first) {
    for (Py_ssize_t e = 0; e < n; e++) {
        float d = decay != 0.0f ? g[e] + decay * p[e] : g[e];
        if (buf) {
            buf[e] = first ? d : momentum * buf[e] + d;
            d = buf[e];
        }
        p[e] -= lr * d;
    }
}

/* One step: forward, loss, backward, update. Returns the sum of the batch's sample losses. */
static double CAT(run_step, ISA)(const Step *s, int train, float lr, float momentum, float decay_weight,
                                 float decay_bias, int first, int64_t *correct) {
    for (Py_ssize_t l = 1; l < s->layers; l++) { /* the weights in fan-out order, for the fan-out products */
        const Junction *j = s->j + l;
        const float *w = PTR(const float, j->weight);
        const int32_t *position = PTR(const int32_t, j->fan_out_position);
        float *w_t = PTR(float, j->weight_t);
        for (Py_ssize_t e = 0; e < j->n_in * j->fan_out; e++) w_t[e] = w[position[e]];
    }
    CAT(gather_batch, ISA)(s);
    CAT(step_forward, ISA)(s);
    if (!train)
        return CAT(step_loss, ISA)(s, NULL, s->grad[1], correct);
    const double total = CAT(step_loss, ISA)(s, s->grad[0], s->grad[1], correct);
    CAT(step_backward, ISA)(s);
    /* Every gradient is taken before any weight changes, as autograd then the optimiser do. */
    for (Py_ssize_t l = 0; l < s->layers; l++) {
        const Junction *j = s->j + l;
        CAT(sgd_update, ISA)(PTR(float, j->weight), PTR(const float, j->grad_weight), PTR(float, j->weight_buf),
                   j->n_out * j->fan_in, lr, momentum, decay_weight, first);
        CAT(sgd_update, ISA)(PTR(float, j->bias), PTR(const float, j->grad_bias), PTR(float, j->bias_buf), j->n_out, lr,
                   momentum, decay_bias, first);
    }
    return total;
}
