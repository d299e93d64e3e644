/* Native CPU kernels of the two gather primitives of predsparse.nn.functional, float32.
 *
 *   gather_reduce   out[r, i, b] = sum_k coef[r, i, k] * src[r, index[r, i, k], b]  (+ bias[r, i])
 *                   (or coef[r, coef_index[r, i, k]]: the weights read in another order where they lie)
 *   connection_dots out[r, i, k] (+)= sum_b a[r, i, b] * src[r, index[r, i, k], b]  (row_sums[r, i] = sum_b a)
 *
 * and, built on them, a SparseLinear layer's forward and backward, one call each (layer_forward,
 * layer_backward: a batch-major x or grad_y transposed inside), and mlp_step: a whole SGD step (or
 * evaluation batch) of an MLP in one call (_native_step.h; predsparse.nn.fused drives it).
 *
 * Fused options, each saving a pass over an (N, B) activation: src read through a ReLU (the previous
 * layer's activation), a bias added, the output zeroed where a mask (the ReLU's input) is <= 0 (the
 * ReLU's gradient), the bias gradient summed while a row of the output gradient is read anyway.
 *
 * Every operand but the index and coef is feature-major: row n of an (N, B) tensor is a contiguous run of
 * the batch, rows `ld` floats apart. r runs over R stacked layers (R patterns trained together), whose
 * operands lie `*_stride_r` elements apart; R = 1 is a single layer.
 *
 * Why it is fast: with fixed fan-in there is no scatter and no atomic, every output row is computed by
 * one thread, and a gathered source row is a contiguous stretch of the batch. gather_reduce keeps 64
 * outputs of a row in registers (register blocking over the batch) while it runs over the fan-in, so
 * each multiply-add costs one load; connection_dots runs over the batch for eight connections at a time,
 * so a[i] is loaded once for eight dot products.
 *
 * Determinism: an output's sum always runs over k (gather_reduce) or over b (connection_dots) in the same
 * order, whatever the thread count or R, so a stacked call is bit-for-bit R single calls.
 *
 * Vector width: the loops (_native_kernels.h) are compiled three times, with GCC vectors of the native
 * width of AVX-512, AVX2+FMA and baseline SSE2, and the best set the CPU has is chosen at import
 * (`_native.ISA`), so one build runs on any x86-64 CPU at its best width; other CPUs get the baseline.
 *
 * Limit: each multiply-add of gather_reduce loads one gathered float, and a random row is rarely in L1,
 * so the loops run at the core's L2/L3 bandwidth (measured: about a third of dense sgemm's multiply-add
 * rate), not at its FMA rate. A source beyond L2 is gathered from packed tiles of the batch instead
 * (gather_tiles: a tile of every source row copied into one contiguous buffer per thread, which stays in
 * L2), the same sums in the same order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    float *out;
    const float *src, *coef, *a;
    const int32_t *index;
    const int32_t *coef_index; /* gather_reduce: coefficients read as coef[coef_index[...]] (optional) */
    float *coef_copy;          /* where, on packed tiles, those are copied first (layers x rows x fan; optional) */
    Py_ssize_t layers, rows, fan, batch, src_ld, out_ld, a_ld;
    Py_ssize_t src_stride_r, out_stride_r, index_stride_r, coef_stride_r, a_stride_r;
    /* gather_reduce: a bias per output row added, outputs zeroed where mask <= 0 (both optional) */
    const float *bias, *mask;
    Py_ssize_t bias_stride_r, mask_ld, mask_stride_r;
    /* connection_dots: a's row sums (optional) */
    float *row_sums;
    Py_ssize_t row_sums_stride_r;
    /* gather_reduce on packed tiles (gather_tiles): the source's rows, whether it is batch-major (B, N)
     * (else feature-major (N, B)), one buffer of src_rows x PACK floats per thread (pack_stride apart), and
     * where a batch-major source's feature-major copy goes (optional; rows copy_ld apart; batch-major sources
     * come one layer at a time) */
    Py_ssize_t src_rows, pack_stride, copy_ld;
    int src_batch_major;
    float *pack, *copy;
    int relu_src; /* sources read through max(., 0): the ReLU of the previous layer, fused */
    int accumulate;
    int flush;    /* every thread flushes denormals to zero meanwhile, then takes MXCSR state `csr` */
    unsigned csr; /* (the fused step's products: the calling thread's state before the step) */
} Problem;

/* max(x, 0) that keeps NaN, as torch.relu does (the vector form is in _native_kernels.h). */
static inline float relu_scalar(float x) { return x <= 0.0f ? 0.0f : x; }

typedef void (*Worker)(const Problem *, Py_ssize_t, Py_ssize_t);

#define DOTS 8 /* connections per pass of connection_dots over a row of a */

/* Denormal floats flushed to zero as results and read as zero as operands (MXCSR's FTZ and DAZ bits; x86
 * only, elsewhere nothing changes) on this thread: flush_denormals returns the state before, which
 * restore_denormals(state) sets again. The fused step runs so: over a Morse run's 30 epochs its weights'
 * and momentum buffers' smallest values became denormal, whose arithmetic the core does in microcode, and
 * an epoch slowed from 0.6 s to 2.0 s. Each thread of a parallel pass of the step sets the caller's state
 * back on leaving, so that a pool thread started inside the step (it inherits the flushed state) does not
 * keep it for the products of the autograd path, which keep denormals. */
#define DENORMALS_TO_ZERO 0x8040u

static inline unsigned flush_denormals(void) {
#if defined(__SSE__)
    const unsigned state = _mm_getcsr();
    _mm_setcsr(state | DENORMALS_TO_ZERO);
    return state;
#else
    return 0;
#endif
}

static inline void restore_denormals(unsigned state) {
#if defined(__SSE__)
    _mm_setcsr(state);
#else
    (void)state;
#endif
}

/* `total` work items split evenly over the threads, [begin, end) to each worker call. */
static void run_items(Worker worker, const Problem *p, Py_ssize_t total, int threads) {
#ifdef _OPENMP
    if (threads > 1 && total > 1) {
#pragma omp parallel num_threads(threads)
        {
            const Py_ssize_t n = omp_get_num_threads(), t = omp_get_thread_num();
            if (p->flush)
                flush_denormals();
            worker(p, total * t / n, total * (t + 1) / n);
            if (p->flush)
                restore_denormals(p->csr);
        }
        return;
    }
#endif
    (void)threads;
    worker(p, 0, total);
}

/* Rows split evenly over the threads; each output row is one thread's. */
static void run_parallel(Worker worker, const Problem *p, int threads) { run_items(worker, p, p->layers * p->rows, threads); }

/* Rows [begin, end) of the flattened (r, i) range of coef_copy[r, i, k] = coef[r].flat[coef_index[r, i, k]]:
 * the coefficients in the order the gathers read them, rows contiguous. */
static void copy_coef_rows(const Problem *p, Py_ssize_t begin, Py_ssize_t end) {
    for (Py_ssize_t ri = begin; ri < end; ri++) {
        const Py_ssize_t r = ri / p->rows, i = ri % p->rows;
        const float *c = p->coef + r * p->coef_stride_r;
        const int32_t *ci = p->coef_index + r * p->index_stride_r + i * p->fan;
        float *o = p->coef_copy + ri * p->fan;
        for (Py_ssize_t k = 0; k < p->fan; k++) o[k] = c[ci[k]];
    }
}

/* One copy of the loops per instruction set (_native_kernels.h), the best one the CPU has chosen at import. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MAX_PS _mm_max_ps
#endif
#define VL 4
#define TILE 8
#define PACK 32
#define ISA base
#include "_native_kernels.h"
#undef VL
#undef TILE
#undef PACK
#undef ISA
#undef MAX_PS

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VL 8
#define TILE 8
#define PACK 64
#define ISA avx2
#define MAX_PS _mm256_max_ps
#include "_native_kernels.h"
#undef VL
#undef TILE
#undef PACK
#undef ISA
#undef MAX_PS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#define VL 16
#define TILE 4
#define PACK 64
#define ISA avx512
#define MAX_PS _mm512_max_ps
#include "_native_kernels.h"
#undef VL
#undef TILE
#undef PACK
#undef ISA
#undef MAX_PS
#pragma GCC pop_options
#endif

typedef double (*StepRunner)(const Step *, int, float, float, float, float, int, int64_t *);

static Worker gather_rows = gather_rows_base, dots_rows = dots_rows_base, transpose_rows = transpose_rows_base;
static Worker gather_tiles = gather_tiles_base;
static StepRunner run_step = run_step_base;
static const char *isa = "baseline";
static int pack = 32; /* the chosen set's PACK */

/* Point the workers at one instruction set's loops ("avx512f", "avx2+fma" or "baseline"): 1, or 0 if the CPU
 * lacks that set or the name is none of them (nothing changes then). */
static int select_isa(const char *name) {
    if (strcmp(name, "baseline") == 0) {
        gather_rows = gather_rows_base, dots_rows = dots_rows_base, transpose_rows = transpose_rows_base;
        gather_tiles = gather_tiles_base, pack = 32;
        run_step = run_step_base;
        isa = "baseline";
        return 1;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (strcmp(name, "avx512f") == 0 && __builtin_cpu_supports("avx512f")) {
        gather_rows = gather_rows_avx512, dots_rows = dots_rows_avx512, transpose_rows = transpose_rows_avx512;
        gather_tiles = gather_tiles_avx512, pack = 64;
        run_step = run_step_avx512;
        isa = "avx512f";
        return 1;
    }
    if (strcmp(name, "avx2+fma") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        gather_rows = gather_rows_avx2, dots_rows = dots_rows_avx2, transpose_rows = transpose_rows_avx2;
        gather_tiles = gather_tiles_avx2, pack = 64;
        run_step = run_step_avx2;
        isa = "avx2+fma";
        return 1;
    }
#endif
    return 0;
}

/* The best set the CPU has. */
static void choose_isa(void) {
    if (!select_isa("avx512f") && !select_isa("avx2+fma"))
        select_isa("baseline");
}

/* "O&" converter: a raw pointer passed from Python as an int (tensor.data_ptr(); 0 for none). */
static int as_pointer(PyObject *value, void *address) {
    void *pointer = PyLong_AsVoidPtr(value);
    if (pointer == NULL && PyErr_Occurred())
        return 0;
    *(void **)address = pointer;
    return 1;
}

/* Run a parsed problem over its rows with the GIL released. */
static PyObject *run_released(Worker worker, const Problem *p, int threads) {
    Py_BEGIN_ALLOW_THREADS
    run_parallel(worker, p, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gather_reduce of a parsed problem: on packed tiles (one work item per layer and tile of PACK samples; p's
 * pack, src_rows and, for a batch-major source, src_batch_major and copy set) or row by row. On tiles,
 * coefficients read through coef_index are copied into coef_copy first where it is given: the tiles would
 * read each of them at random once per tile, and read the copy in order (at 4096x4096 6.25 % the input
 * gradient's tiled gathers took 12.9 ms through the index, 8.0 ms from the copy). */
static void run_gather(Problem *p, int tiled, int threads) {
    if (!tiled) {
        run_parallel(gather_rows, p, threads);
        return;
    }
    if (p->coef_index && p->coef_copy) {
        run_parallel(copy_coef_rows, p, threads);
        p->coef = p->coef_copy, p->coef_stride_r = p->rows * p->fan, p->coef_index = NULL;
    }
    p->pack_stride = p->src_rows * pack;
    run_items(gather_tiles, p, p->layers * ((p->batch + pack - 1) / pack), threads);
}

static PyObject *py_gather_reduce(PyObject *self, PyObject *args) {
    Problem p = {0};
    int threads, tiled;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&nnnnnnnnnnO&nO&nniinO&i", as_pointer, &p.out, as_pointer, &p.src,
                          as_pointer, &p.index, as_pointer, &p.coef, as_pointer, &p.coef_index, as_pointer,
                          &p.coef_copy, &p.layers, &p.rows,
                          &p.fan, &p.batch, &p.src_ld, &p.out_ld, &p.src_stride_r, &p.out_stride_r, &p.index_stride_r,
                          &p.coef_stride_r, as_pointer, &p.bias, &p.bias_stride_r, as_pointer, &p.mask, &p.mask_ld,
                          &p.mask_stride_r, &p.relu_src, &tiled, &p.src_rows, as_pointer, &p.pack, &threads))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    run_gather(&p, tiled, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* out (cols, rows) = src (rows, cols)^T, src's rows src_ld floats apart, out's rows rows floats apart. */
static void transpose_into(float *out, const float *src, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t src_ld,
                           int threads) {
    Problem t = {0};
    t.out = out, t.src = src, t.batch = rows, t.rows = cols, t.src_ld = src_ld, t.out_ld = rows, t.layers = 1;
    run_parallel(transpose_rows, &t, threads);
}

/* gather_reduce of one layer (p's index, coef, rows, fan, batch, out, bias, mask, relu_src set) from a
 * source of src_rows rows, feature-major (rows src_ld apart) or batch-major (samples src_ld apart): on
 * packed tiles if `tiled` (buf: the threads' buffers of src_rows x PACK floats), writing a batch-major source's feature-major copy
 * to `copy` if given; else row by row, a batch-major source first transposed into `copy` (then required). */
static void gather_layer(Problem *p, const float *src, Py_ssize_t src_rows, Py_ssize_t src_ld, int batch_major,
                         float *copy, int tiled, float *buf, int threads) {
    p->layers = 1, p->out_ld = p->batch, p->src_rows = src_rows, p->pack = buf;
    if (batch_major && !tiled) {
        transpose_into(copy, src, p->batch, src_rows, src_ld, threads);
        src = copy, src_ld = p->batch, batch_major = 0;
    }
    p->src = src, p->src_ld = src_ld, p->src_batch_major = batch_major;
    p->copy = batch_major ? copy : NULL, p->copy_ld = p->batch;
    run_gather(p, tiled, threads);
}

/* A SparseLinear layer's forward in one call: y_t (N_out, B) = W relu?(x) + b, x feature-major or
 * batch-major (then its feature-major copy goes to `copy`, for the backward pass). */
static PyObject *py_layer_forward(PyObject *self, PyObject *args) {
    Problem p = {0};
    const float *x;
    float *copy, *buf;
    Py_ssize_t n_in, x_ld;
    int batch_major, tiled, threads;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&O&nnnnniiii", as_pointer, &p.out, as_pointer, &x, as_pointer, &p.index,
                          as_pointer, &p.coef, as_pointer, &p.bias, as_pointer, &copy, as_pointer, &buf, &n_in, &p.rows,
                          &p.fan, &p.batch, &x_ld, &batch_major, &p.relu_src, &tiled, &threads))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    gather_layer(&p, x, n_in, x_ld, batch_major, copy, tiled, buf, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* A SparseLinear layer's backward in one call, from grad_y (feature-major or batch-major; a batch-major one
 * is copied feature-major into gy_copy) and the saved feature-major input x_t: grad_x_t (N_in, B), the
 * fan-out gather with coefficients coef (or coef[coef_index], copied into coef_copy on tiles: run_gather),
 * masked by relu?(x_t)'s gradient; then grad_w (N_out, fi) and grad_b, the connection dots and row sums of
 * grad_y. Outputs given as 0 are skipped. */
static PyObject *py_layer_backward(PyObject *self, PyObject *args) {
    float *grad_x, *grad_w, *grad_b, *gy_copy, *buf, *coef_copy;
    const float *gy, *x_t, *coef;
    const int32_t *coef_index, *index, *right;
    Py_ssize_t n_in, n_out, fi, fo, batch, gy_ld, x_ld;
    int batch_major, relu, tiled, threads;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&O&O&O&O&O&O&nnnnnnniiii", as_pointer, &grad_x, as_pointer, &grad_w,
                          as_pointer, &grad_b, as_pointer, &gy, as_pointer, &gy_copy, as_pointer, &buf, as_pointer,
                          &x_t, as_pointer, &coef, as_pointer, &coef_index, as_pointer, &coef_copy, as_pointer,
                          &index, as_pointer, &right, &n_in, &n_out, &fi, &fo, &batch, &gy_ld, &x_ld, &batch_major,
                          &relu, &tiled, &threads))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (grad_x) {
        Problem r = {0};
        r.out = grad_x, r.index = right, r.coef = coef, r.coef_index = coef_index, r.coef_copy = coef_copy;
        r.rows = n_in, r.fan = fo;
        r.batch = batch;
        if (relu)
            r.mask = x_t, r.mask_ld = x_ld;
        gather_layer(&r, gy, n_out, gy_ld, batch_major, gy_copy, tiled, buf, threads);
    } else if (batch_major) {
        transpose_into(gy_copy, gy, batch, n_out, gy_ld, threads);
    }
    if (grad_w) {
        Problem q = {0};
        q.out = grad_w, q.a = batch_major ? gy_copy : gy, q.a_ld = batch_major ? batch : gy_ld;
        q.src = x_t, q.src_ld = x_ld, q.index = index, q.layers = 1, q.rows = n_out, q.fan = fi, q.batch = batch;
        q.row_sums = grad_b, q.relu_src = relu;
        run_parallel(dots_rows, &q, threads);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_connection_dots(PyObject *self, PyObject *args) {
    Problem p = {0};
    int threads;
    if (!PyArg_ParseTuple(args, "O&O&O&O&nnnnnnnnnnO&niii", as_pointer, &p.out, as_pointer, &p.a, as_pointer, &p.src,
                          as_pointer, &p.index, &p.layers, &p.rows, &p.fan, &p.batch, &p.a_ld, &p.src_ld, &p.a_stride_r,
                          &p.src_stride_r, &p.index_stride_r, &p.out_stride_r, as_pointer, &p.row_sums,
                          &p.row_sums_stride_r, &p.relu_src, &p.accumulate, &threads))
        return NULL;
    return run_released(dots_rows, &p, threads);
}

static PyObject *py_use_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    const int done = select_isa(name);
    if (done && (PyModule_AddStringConstant(self, "ISA", isa) < 0 || PyModule_AddIntConstant(self, "PACK", pack) < 0))
        return NULL;
    return PyBool_FromLong(done);
}

static PyObject *py_mlp_step(PyObject *self, PyObject *args) {
    Step s = {0};
    int train, first;
    float lr, momentum, decay_weight, decay_bias;
    if (!PyArg_ParseTuple(args, "O&nnnnO&nnO&O&O&O&O&iffffii", as_pointer, &s.j, &s.layers, &s.batch, &s.ld, &s.classes,
                          as_pointer, &s.x, &s.x_ld, &s.start, as_pointer, &s.picks, as_pointer, &s.labels,
                          as_pointer, &s.act0, as_pointer, &s.grad[0], as_pointer, &s.grad[1], &train, &lr,
                          &momentum, &decay_weight, &decay_bias, &first, &s.threads))
        return NULL;
    int64_t correct = 0;
    double total;
    Py_BEGIN_ALLOW_THREADS
    s.csr = flush_denormals(); /* this thread's; a pool thread sets its own in each parallel pass */
    total = run_step(&s, train, lr, momentum, decay_weight, decay_bias, first, &correct);
    restore_denormals(s.csr);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("dL", total, (long long)correct);
}

static PyMethodDef methods[] = {
    {"use_isa", py_use_isa, METH_VARARGS,
     "use_isa(name) -> bool: run the loops of instruction set `name` (avx512f, avx2+fma, baseline) from now on; "
     "False (and no change) if the CPU lacks it."},
    {"gather_reduce", py_gather_reduce, METH_VARARGS,
     "gather_reduce(out, src, index, coef, coef_index, coef_copy, layers, rows, fan, batch, src_ld, out_ld, src_stride_r, out_stride_r, "
     "index_stride_r, coef_stride_r, bias, bias_stride_r, mask, mask_ld, mask_stride_r, relu_src, tiled, src_rows, "
     "pack, threads): raw pointers (0: none) and sizes; tiled: on packed tiles of PACK samples (buffers of "
     "src_rows x PACK floats per thread at pack); see predsparse.nn.native."},
    {"connection_dots", py_connection_dots, METH_VARARGS,
     "connection_dots(out, a, src, index, layers, rows, fan, batch, a_ld, src_ld, a_stride_r, src_stride_r, "
     "index_stride_r, out_stride_r, row_sums, row_sums_stride_r, relu_src, accumulate, threads): raw pointers "
     "(0: none) and sizes; see predsparse.nn.native."},
    {"layer_forward", py_layer_forward, METH_VARARGS,
     "layer_forward(y, x, index, weight, bias, copy, pack, n_in, n_out, fi, batch, x_ld, batch_major, relu, tiled, "
     "threads): a SparseLinear forward; see predsparse.nn.native.layer_forward."},
    {"layer_backward", py_layer_backward, METH_VARARGS,
     "layer_backward(grad_x, grad_w, grad_b, grad_y, gy_copy, pack, x_t, coef, coef_index, coef_copy, index, right, n_in, n_out, "
     "fi, fo, batch, gy_ld, x_ld, batch_major, relu, tiled, threads): a SparseLinear backward; see "
     "predsparse.nn.native.layer_backward."},
    {"mlp_step", py_mlp_step, METH_VARARGS,
     "mlp_step(junctions, layers, batch, ld, classes, x, x_ld, start, picks, labels, act0, grad0, grad1, train, lr, "
     "momentum, decay_weight, decay_bias, first, threads) -> (loss sum, correct): a fused MLP step; see "
     "predsparse.nn.fused."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of predsparse (float32).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    choose_isa();
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddStringConstant(m, "ISA", isa) < 0 || PyModule_AddIntConstant(m, "PACK", pack) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
