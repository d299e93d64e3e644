/* A whole training step (or an evaluation pass) of an MLP of fixed fan-in / fixed fan-out junctions in one
 * native call, included by _native.c after its workers: the batch gathered from the data set, every
 * junction's forward, softmax cross-entropy, every gradient and the SGD update, with no Python, autograd
 * or optimiser code between them. predsparse.nn.fused drives it; its docstring says when it applies and
 * what it computes. The products are the workers of the layer (gather_rows, dots_rows), so every output
 * is summed in the same order as by SparseLinear's native backend, whatever the thread count.
 */
#include <math.h>

/* One junction, as predsparse.nn.fused.JUNCTION_FIELDS lays it out: sizes, then addresses (0: none). */
typedef struct {
    int64_t n_in, n_out, fan_in, fan_out;
    int64_t weight, bias, fan_in_index, fan_out_right, fan_out_position;
    int64_t weight_buf, bias_buf; /* SGD momentum buffers (0 without momentum) */
    int64_t act;                  /* its output, (n_out, batch): the next junction's input before its ReLU */
    int64_t grad_weight, grad_bias, weight_t; /* workspace: gradients, weights in fan-out order */
} Junction;

#define PTR(type, field) ((type *)(intptr_t)(field))

typedef struct {
    const Junction *j;
    Py_ssize_t layers, batch, classes;
    const float *x;       /* the data set's inputs, rows x_ld floats apart */
    Py_ssize_t x_ld, start;
    const int64_t *picks; /* the batch's sample indices (NULL: samples start .. start + batch) */
    const int64_t *labels;
    float *act0, *grad[2]; /* the batch's inputs (n_0, batch); two gradients of (n, batch), used in turn */
    int threads;
} Step;

static inline Py_ssize_t step_sample(const Step *s, Py_ssize_t b) { return s->picks ? s->picks[b] : s->start + b; }

/* act0[f, b] = x[sample b, f]: the batch gathered and transposed to feature-major in one pass. */
static void gather_batch(const Step *s) {
    const Py_ssize_t n0 = s->j[0].n_in, batch = s->batch;
    for (Py_ssize_t b0 = 0; b0 < batch; b0 += 8) { /* 8 samples at a time: runs of 8 floats written */
        const Py_ssize_t width = batch - b0 < 8 ? batch - b0 : 8;
        const float *row[8];
        for (Py_ssize_t u = 0; u < width; u++) row[u] = s->x + step_sample(s, b0 + u) * s->x_ld;
        for (Py_ssize_t f = 0; f < n0; f++)
            for (Py_ssize_t u = 0; u < width; u++) s->act0[f * batch + b0 + u] = row[u][f];
    }
}

static void step_forward(const Step *s) {
    for (Py_ssize_t l = 0; l < s->layers; l++) {
        const Junction *j = s->j + l;
        Problem p = {0};
        p.out = PTR(float, j->act);
        p.src = l == 0 ? s->act0 : PTR(const float, s->j[l - 1].act);
        p.index = PTR(const int32_t, j->fan_in_index);
        p.coef = PTR(const float, j->weight);
        p.bias = PTR(const float, j->bias);
        p.layers = 1, p.rows = j->n_out, p.fan = j->fan_in, p.batch = s->batch;
        p.src_ld = p.out_ld = s->batch;
        p.relu_src = l > 0; /* a hidden activation is read through its ReLU, as ConnectedLayers does */
        run_parallel(gather_rows, &p, s->threads);
    }
}

/* exp(x) for x <= 0 (a logit minus its sample's maximum), within 2 ulp: x = n ln 2 + r with |r| <= ln2 / 2,
 * a degree-6 polynomial for exp(r), times 2^n built in the exponent bits. Plain arithmetic, so the loops
 * that call it vectorise (libm's expf does not: it took 9 % of a profile's samples of fused steps). */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x; /* below, exp underflows to 0 in the sum anyway; keeps 2^n normal */
    const float n = __builtin_roundf(x * 1.44269504088896341f);
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
static double step_loss(const Step *s, float *grad, float *scratch, int64_t *correct) {
    const Junction *last = s->j + s->layers - 1;
    const float *z = PTR(const float, last->act);
    const Py_ssize_t outputs = last->n_out, batch = s->batch;
    float *top = scratch, *sum = scratch + batch, *best = scratch + 2 * batch, *pick = scratch + 3 * batch;
    for (Py_ssize_t b = 0; b < batch; b++) top[b] = best[b] = z[b], pick[b] = 0.0f;
    for (Py_ssize_t c = 1; c < outputs; c++) {
        const float *row = z + c * batch;
        for (Py_ssize_t b = 0; b < batch; b++) top[b] = row[b] > top[b] ? row[b] : top[b];
        if (c < s->classes)
            for (Py_ssize_t b = 0; b < batch; b++)
                if (row[b] > best[b]) best[b] = row[b], pick[b] = (float)c;
    }
    for (Py_ssize_t b = 0; b < batch; b++) sum[b] = 0.0f;
    for (Py_ssize_t c = 0; c < outputs; c++) {
        const float *row = z + c * batch;
        float *e = grad ? grad + c * batch : NULL;
        for (Py_ssize_t b = 0; b < batch; b++) {
            const float v = exp_nonpositive(row[b] - top[b]);
            sum[b] += v;
            if (e) e[b] = v;
        }
    }
    double total = 0.0;
    for (Py_ssize_t b = 0; b < batch; b++) {
        const int64_t label = s->labels[step_sample(s, b)];
        *correct += (int64_t)pick[b] == label;
        total += (double)(logf(sum[b]) + top[b] - z[label * batch + b]);
    }
    if (grad) {
        const float scale = 1.0f / (float)batch;
        for (Py_ssize_t b = 0; b < batch; b++) sum[b] = scale / sum[b];
        for (Py_ssize_t c = 0; c < outputs; c++) {
            float *e = grad + c * batch;
            for (Py_ssize_t b = 0; b < batch; b++) e[b] *= sum[b];
        }
        for (Py_ssize_t b = 0; b < batch; b++) grad[s->labels[step_sample(s, b)] * batch + b] -= scale;
    }
    return total;
}

/* Junction l's weight and bias gradients from its output gradient; and, below the first junction, the
 * gradient of its input through the ReLU (the fan-out gather, masked where the pre-activation <= 0). */
static void step_backward(const Step *s, const float *grad_out, float *grad_in, Py_ssize_t l) {
    const Junction *j = s->j + l;
    const float *input = l == 0 ? s->act0 : PTR(const float, s->j[l - 1].act);
    Problem q = {0};
    q.out = PTR(float, j->grad_weight);
    q.a = grad_out;
    q.src = input;
    q.index = PTR(const int32_t, j->fan_in_index);
    q.row_sums = PTR(float, j->grad_bias);
    q.layers = 1, q.rows = j->n_out, q.fan = j->fan_in, q.batch = s->batch;
    q.a_ld = q.src_ld = s->batch;
    q.relu_src = l > 0;
    run_parallel(dots_rows, &q, s->threads);
    if (l == 0)
        return;
    const float *w = PTR(const float, j->weight);
    const int32_t *position = PTR(const int32_t, j->fan_out_position);
    float *w_t = PTR(float, j->weight_t);
    for (Py_ssize_t e = 0; e < j->n_in * j->fan_out; e++) w_t[e] = w[position[e]];
    Problem r = {0};
    r.out = grad_in;
    r.src = grad_out;
    r.index = PTR(const int32_t, j->fan_out_right);
    r.coef = w_t;
    r.mask = input;
    r.layers = 1, r.rows = j->n_in, r.fan = j->fan_out, r.batch = s->batch;
    r.src_ld = r.out_ld = r.mask_ld = s->batch;
    run_parallel(gather_rows, &r, s->threads);
}

/* torch.optim.SGD's update (dampening 0, no Nesterov): d = g + decay p; buf = d on the first step, else
 * momentum buf + d; p -= lr buf (p -= lr d without momentum). */
static void sgd_update(float *p, const float *g, float *buf, Py_ssize_t n, float lr, float momentum, float decay,
                       int first) {
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
static double run_step(const Step *s, int train, float lr, float momentum, float decay_weight, float decay_bias,
                       int first, int64_t *correct) {
    gather_batch(s);
    step_forward(s);
    if (!train)
        return step_loss(s, NULL, s->grad[1], correct);
    const double total = step_loss(s, s->grad[0], s->grad[1], correct);
    for (Py_ssize_t l = s->layers - 1; l >= 0; l--) {
        const int turn = (int)((s->layers - 1 - l) % 2);
        step_backward(s, s->grad[turn], s->grad[1 - turn], l);
    }
    /* Every gradient is taken before any weight changes, as autograd then the optimiser do. */
    for (Py_ssize_t l = 0; l < s->layers; l++) {
        const Junction *j = s->j + l;
        sgd_update(PTR(float, j->weight), PTR(const float, j->grad_weight), PTR(float, j->weight_buf),
                   j->n_out * j->fan_in, lr, momentum, decay_weight, first);
        sgd_update(PTR(float, j->bias), PTR(const float, j->grad_bias), PTR(float, j->bias_buf), j->n_out, lr,
                   momentum, decay_bias, first);
    }
    return total;
}
