"""The sparse linear map y = x W^T + b of a junction with fixed fan-in fi and fixed fan-out fo.

A junction joins N_i left to N_{i+1} right neurons. Right neuron j reads the fi left neurons
`fan_in_index[j]` with weights `weight[j]`; left neuron k feeds the fo right neurons `fan_out_right[k]`,
whose weights sit at `weight.view(-1)[fan_out_position[k]]` (see `predsparse.patterns.fan_out_index`).
Because fi and fo are both fixed, the three products of a training step need no scatter-add or atomics:

    forward         y[b, j]  = sum_k  weight[j, k] * x[b, fan_in_index[j, k]]
    input gradient  gx[b, k] = sum_m  weight.flat[fan_out_position[k, m]] * gy[b, fan_out_right[k, m]]
    weight gradient gw[j, k] = sum_b  gy[b, j] * x[b, fan_in_index[j, k]]

The first two are one primitive, `gather_reduce(src_t, index, coef)[r] = sum_k coef[r, k] src_t[index[r, k]]`
(over the fan-in index, then over the transposed fan-out index), the third is `connection_dots(a_t, x,
index)[j, k] = sum_b a_t[j, b] x[b, index[j, k]]`. `SparseLinearFunction`, the one autograd entry point,
runs the three products on a `Backend` chosen by `backend_for`:

- CUDA: Triton kernels for the two primitives (`predsparse.nn.triton_kernels`).
- CPU, float32: the native kernels of `predsparse.nn.native` (built by the install; register blocking
  over the batch, the CPU's widest vectors, OpenMP threads from torch's own pool), one native call for
  a layer's forward and one for its backward (each Python operation on a step's path costs several
  microseconds once the step's data has pushed the interpreter out of the caches). Sources beyond
  `native.TILED_SOURCE_BYTES` are gathered from packed tiles of the batch, which stay in L2.
- CPU otherwise (float64, or no native build: `native.STATUS` says why), torch formulations chosen by
  measurement: gather_reduce is `F.embedding_bag(mode="sum", per_sample_weights=coef)`, one bag per row
  (1.5-3x faster than torch.sparse CSR @ dense, and it never builds the batch x connections tensor of
  index_select + sum); connection_dots is `torch.sparse.sampled_addmm` on the CSR form of the index, which
  computes gy^T x at the existing connections only (a blocked gather + bmm was 6-10x slower).
- Dense blocks, at densities fi / N_i from DENSE_DISPATCH_DENSITY up: BLAS products with blocks of
  rows of the scattered N_{i+1} x N_i weight matrix. Gathers reach only about a third of dense BLAS's
  throughput per multiply-add, so from a density of about 0.35 (measured) the dense products are faster
  despite their 1/density times more work. They read x and grad_y in any layout (no transposes), and
  blocks of 1/16 of the matrix keep the step's memory below nn.Linear's up to a density of about 3/4.

Fused (native kernels only): the bias is added in the forward's store and its gradient summed while the
weight gradient reads grad_y; with `input_relu` a junction reads its input through a ReLU and returns the
input gradient already masked by it, so a hidden layer's activation costs no pass of its own.
`StackedSparseLinearFunction` runs R junctions of one shape (R runs trained together) in one call.

Layout: the gathers read feature-major (N, B) tensors, whose gathered rows are contiguous runs of the
batch. The output is a (B, N_{i+1}) tensor laid out so (strides (1, B); the native kernels allocate it so,
the other backends return the transposed view), and an input laid out so (the output of a previous
SparseLinear, through element-wise activations) is used without a copy: a stack of sparse layers never
transposes its activations, a row-major input (or grad_y) costs one transpose, which the native kernels
do inside the same call (on packed tiles: tile by tile, in L2). Like any such tensor, the output needs
`.contiguous()` before `.view()`; `.reshape()` works as is.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from predsparse.nn import native


class Backend(NamedTuple):
    """The three products of a step on feature-major (N, B) tensors (x alone is batch-major, (B, N_i)).

    `contiguous`: whether the feature-major inputs must be contiguous (gathers read their rows) or may be
    any view (BLAS takes transposed operands as they are, so the dense path never transposes).
    `fused`: the native backend, one native call for the forward and one for the backward (`forward` and
    `backward`, signatures in `_native_layer_forward` and `_native_layer_backward`), which also take the
    bias, the input's ReLU and its gradient, and the transposes; the others leave those to torch ops.
    """

    forward: Callable[..., torch.Tensor]  # (x_t, weight, fan_in_index) -> y_t
    input_grad: Callable[..., torch.Tensor] | None  # (grad_y_t, weight, fan_in_index, fan_out_right, fan_out_position) -> grad_x_t
    weight_grad: Callable[..., torch.Tensor] | None  # (grad_y_t, x, fan_in_index) -> grad_w
    contiguous: bool = True
    fused: bool = False
    backward: Callable[..., tuple] | None = None  # fused: the whole backward pass


def fan_out_weights(weight: torch.Tensor, fan_out_position: torch.Tensor) -> torch.Tensor:
    """The weights in fan-out order, weight.flat[fan_out_position], for one layer (2-D) or R stacked ones
    (3-D); where fan-outs differ, padded slots read the zero appended here."""
    lead = weight.shape[:-2]
    flat = weight.reshape(*lead, -1)
    if fan_out_position.shape[-1] * fan_out_position.shape[-2] > flat.shape[-1]:
        flat = F.pad(flat, (0, 1))
    if not lead:  # index_select takes the int32 index without an int64 copy of it
        return flat.index_select(0, fan_out_position.reshape(-1)).view(fan_out_position.shape)
    return torch.gather(flat, -1, fan_out_position.reshape(*lead, -1).long()).view(fan_out_position.shape)


def gather_backend(gather_reduce: Callable, connection_dots: Callable) -> Backend:
    """The backend of two gather primitives (module docstring): the forward gathers over the fan-in index,
    the input gradient over the transposed fan-out index, with the weights taken in fan-out order."""

    def input_grad(grad_y_t, weight, fan_in_index, fan_out_right, fan_out_position):
        return gather_reduce(grad_y_t, fan_out_right, fan_out_weights(weight, fan_out_position))

    return Backend(lambda x_t, weight, fan_in_index: gather_reduce(x_t, fan_in_index, weight), input_grad, connection_dots)


def _cpu_gather_reduce(src_t: torch.Tensor, index: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return F.embedding_bag(index, src_t, per_sample_weights=coef, mode="sum")


def _cpu_connection_dots(a_t: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    n_rows, fan = index.shape
    batch, n_cols = x.shape
    dots = torch.zeros(n_rows * fan, dtype=x.dtype, device=x.device)
    row_start = torch.arange(0, n_rows * fan + 1, fan, dtype=index.dtype, device=x.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        connections = torch.sparse_csr_tensor(row_start, index.reshape(-1), dots, (n_rows, n_cols), check_invariants=False)
    # sampled_addmm reads a column-major second operand without a copy; x is the transpose of a feature-major one.
    torch.sparse.sampled_addmm(connections, a_t, x, out=connections)
    return dots.view(n_rows, fan)


def _fan_out_coefficients(weight, fan_out_position) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The input gradient's coefficients for the native gathers, (coef, coef_index): with fixed fan-out the
    weights themselves, read in place through fan_out_position (a copy in fan-out order took 5.4 ms of a
    58 ms step at 4096x4096, 6.25 %; on packed tiles, which would read each weight once per tile, the native
    gathers make that copy themselves, on their threads); padded fan-outs read the zero that
    fan_out_weights's copy appends."""
    if fan_out_position.shape[-1] * fan_out_position.shape[-2] == weight.shape[-1] * weight.shape[-2]:
        return weight, fan_out_position
    return fan_out_weights(weight, fan_out_position), None


def _native_layer_forward(x, weight, fan_in_index, bias, input_relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x_fm): y = relu?(x) W^T + b and x laid out feature-major (`native.layer_forward`), for x (B, N_i);
    both (B, N) tensors with strides (1, B)."""
    return native.layer_forward(x, weight.contiguous(), None if bias is None else bias.contiguous(), fan_in_index,
                                input_relu)


def _native_layer_backward(grad_y, x_fm, weight, fan_in_index, fan_out_right, fan_out_position, input_relu: bool,
                           want_x: bool, want_w: bool, want_b: bool) -> tuple:
    """(grad_x, grad_w, grad_b) (`native.layer_backward`), None where not wanted."""
    coef, coef_index = _fan_out_coefficients(weight.contiguous(), fan_out_position)
    return native.layer_backward(grad_y, x_fm, coef, coef_index, fan_in_index, fan_out_right, input_relu, want_x,
                                 want_w, want_b)


def _stacked_forward(x_t, weight, fan_in_index, bias, input_relu: bool) -> torch.Tensor:
    """y_t = W relu?(x_t) + b for R stacked layers (3-D, feature-major)."""
    return native.gather_reduce(x_t, fan_in_index, weight, bias=bias, relu_src=input_relu)


def _stacked_input_grad(grad_y_t, weight, fan_out_right, fan_out_position, relu_input: torch.Tensor | None):
    """grad_x_t of R stacked layers, masked by the ReLU's gradient where `relu_input` (their feature-major
    input, read through a ReLU) is given."""
    coef, coef_index = _fan_out_coefficients(weight, fan_out_position)
    return native.gather_reduce(grad_y_t, fan_out_right, coef, mask=relu_input, coef_index=coef_index)


def _stacked_weight_grad(grad_y_t, x_t, fan_in_index, input_relu: bool):
    """(grad_w, grad_b) of R stacked layers (feature-major (R, N, B) operands): the bias gradient summed in
    the same pass over grad_y_t, as a single layer's backward does."""
    sums = grad_y_t.new_empty(grad_y_t.shape[:-1])
    return native.connection_dots(grad_y_t, x_t, fan_in_index, relu_src=input_relu, row_sums=sums), sums


def _row_blocks(n_right: int) -> list[slice]:
    """Successive blocks of right neurons for the dense path: 1/16 of the weight matrix each (at least 64
    rows, for BLAS efficiency), so it holds far less than the N_{i+1} x N_i gradient nn.Linear allocates."""
    step = min(n_right, max(64, -(-n_right // 16)))
    return [slice(start, start + step) for start in range(0, n_right, step)]


def _weight_block(weight: torch.Tensor, fan_in_index: torch.Tensor, rows: slice, n_left: int) -> torch.Tensor:
    """Rows `rows` of the dense N_{i+1} x N_i weight matrix, zero at missing connections."""
    index = fan_in_index[rows].long()
    return weight.new_zeros(index.shape[0], n_left).scatter_(1, index, weight[rows])


def _dense_forward(x_t: torch.Tensor, weight: torch.Tensor, fan_in_index: torch.Tensor) -> torch.Tensor:
    y_t = x_t.new_empty(fan_in_index.shape[0], x_t.shape[1])
    for rows in _row_blocks(fan_in_index.shape[0]):
        torch.mm(_weight_block(weight, fan_in_index, rows, x_t.shape[0]), x_t, out=y_t[rows])
    return y_t


def _dense_input_grad(grad_y_t, weight, fan_in_index, fan_out_right, fan_out_position) -> torch.Tensor:
    # Summed over blocks of right neurons: no transposed copy of the weights is needed.
    n_left = fan_out_right.shape[0]
    grad_x_t = grad_y_t.new_zeros(n_left, grad_y_t.shape[1])
    for rows in _row_blocks(fan_in_index.shape[0]):
        grad_x_t.addmm_(_weight_block(weight, fan_in_index, rows, n_left).t(), grad_y_t[rows])
    return grad_x_t


def _dense_weight_grad(grad_y_t: torch.Tensor, x: torch.Tensor, fan_in_index: torch.Tensor) -> torch.Tensor:
    grad_w = x.new_empty(fan_in_index.shape)
    for rows in _row_blocks(fan_in_index.shape[0]):
        torch.gather(grad_y_t[rows] @ x, 1, fan_in_index[rows].long(), out=grad_w[rows])
    return grad_w


CPU_BACKEND = gather_backend(_cpu_gather_reduce, _cpu_connection_dots)
NATIVE_BACKEND = Backend(_native_layer_forward, None, None, fused=True, backward=_native_layer_backward)
DENSE_BACKEND = Backend(_dense_forward, _dense_input_grad, _dense_weight_grad, contiguous=False)
_triton_backend: Backend | None = None

# Density fi / N_i from which a step runs on DENSE_BACKEND, per device type: where
# `benchmarks/sparse_linear.py --dispatch` measured dense blocks faster than gathers. inf: never
# (CUDA: not measured yet).
# CPU, native kernels: gathers / dense blocks on a 2-core Intel Xeon (AVX-512, at 5943bb9:
# benchmarks/measured/sparse_linear_dispatch_cpu_xeon.csv) 0.84 at 3/8, 1.01 at 1/2 and 1.36 at 5/8 on
# 1024x1024, 0.88 at 1/4 and 1.15 at 3/8 on 4096x512 (at 00a39e7: 0.60, 0.78, 1.02; 0.89, 1.31); on a
# 2-core AMD EPYC (AVX2, 3.7-5x slower BLAS, at 03b7aac: benchmarks/measured/sparse_linear_dispatch_cpu.csv)
# 0.61 at 3/8, 0.92 at 5/8 and 1.05 at 3/4 on 1024x1024, 0.66 at 3/8 and 0.98 at 5/8 on 4096x512; on a
# 2-core Zen 4 EPYC (AVX-512, at 9d763de: benchmarks/measured/sparse_linear_dispatch_cpu_zen4.csv) 0.50 at
# 3/8, 0.80 at 5/8 and 1.06 at 3/4 on 1024x1024, 0.77 at 3/8 and 1.24 at 5/8 on 4096x512. One
# density cannot fit every layer and machine: 0.35 keeps the Intel machine's wider layer's, at up to 1.7x
# the gathers' time between 3/8 and 5/8 elsewhere.
DENSE_DISPATCH_DENSITY = {"cpu": 0.35, "cuda": math.inf}


def backend_for(x: torch.Tensor, density: float) -> Backend:
    """The backend for input x and a junction of density fi / N_i (triton is imported only for CUDA)."""
    global _triton_backend
    if density >= DENSE_DISPATCH_DENSITY.get(x.device.type, math.inf):
        return DENSE_BACKEND
    if not x.is_cuda:
        return NATIVE_BACKEND if native.supports(x) else CPU_BACKEND
    if _triton_backend is None:
        from predsparse.nn import triton_kernels

        _triton_backend = gather_backend(triton_kernels.gather_reduce, triton_kernels.connection_dots)
    return _triton_backend


def _feature_major(x: torch.Tensor, backend: Backend) -> torch.Tensor:
    """(B, N) -> (N, B), made contiguous if the backend needs it (free when x already is a transpose). The
    native backend transposes inside its own calls; this serves the other backends."""
    return x.t().contiguous() if backend.contiguous else x.t()


def _once_differentiable(backward: Callable) -> Callable:
    """torch's `once_differentiable` where it acts: grad mode is on in a backward pass only under
    create_graph=True, and there its wrapper makes differentiating these products again (they are not
    differentiable twice) an error. Otherwise it adds only a no_grad block and a call, some 10 us of a
    0.2 ms step, and is skipped."""
    wrapped = once_differentiable(backward)

    @functools.wraps(backward)
    def run(ctx, *grads):
        return wrapped(ctx, *grads) if torch.is_grad_enabled() else backward(ctx, *grads)

    return run


class SparseLinearFunction(torch.autograd.Function):
    """y = relu?(x) W^T + b over 2-D x (B, N_i); returns (B, N_{i+1}) laid out feature-major (module docstring).

    `input_relu` (fused backends only): x is read through a ReLU, and the input gradient comes back
    times the ReLU's gradient, so the previous layer's activation needs no pass of its own either way.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, fan_in_index, fan_out_right, fan_out_position, backend: Backend,
                input_relu: bool = False):
        # x is kept feature-major (a copy of a row-major x; for the dense path x itself): the weight gradient
        # reads it. Transposing pieces of a row-major x in backward instead (which spared B N_i floats at
        # densities where the weights outnumber x) made the dots run over short batches: 1.8x slower at
        # 1024x1024, 25 %.
        if backend.fused:  # one native call, which transposes a row-major x on the way; y and x_fm come as
            y, x_fm = backend.forward(x, weight, fan_in_index, bias, input_relu)  # (B, N) tensors, not views
        else:
            x_t = _feature_major(x, backend)
            y_t = backend.forward(x_t, weight, fan_in_index)
            if bias is not None:
                y_t.add_(bias[:, None])
            x_fm, y = x_t.t(), y_t.t()
        ctx.save_for_backward(x_fm, weight, fan_in_index, fan_out_right, fan_out_position)
        ctx.backend, ctx.input_relu = backend, input_relu
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad_y):
        x, weight, fan_in_index, fan_out_right, fan_out_position = ctx.saved_tensors
        backend = ctx.backend
        grad_x = grad_w = grad_b = None
        want_bias = ctx.has_bias and ctx.needs_input_grad[2]
        if backend.fused:  # one native call, which transposes a row-major grad_y on the way
            grad_x, grad_w, grad_b = backend.backward(grad_y, x, weight, fan_in_index, fan_out_right,
                                                      fan_out_position, ctx.input_relu, ctx.needs_input_grad[0],
                                                      ctx.needs_input_grad[1], want_bias)
            return grad_x, grad_w, grad_b, None, None, None, None, None
        grad_y_t = _feature_major(grad_y, backend)
        # The input gradient first: a gather backend's transposed copy of the weights is freed before
        # grad_w exists.
        if ctx.needs_input_grad[0]:
            grad_x = backend.input_grad(grad_y_t, weight, fan_in_index, fan_out_right, fan_out_position).t()
        if ctx.needs_input_grad[1]:
            grad_w = backend.weight_grad(grad_y_t, x, fan_in_index)
        if want_bias and grad_b is None:
            grad_b = grad_y_t.sum(1)
        return grad_x, grad_w, grad_b, None, None, None, None, None


class StackedSparseLinearFunction(torch.autograd.Function):
    """R junctions of the same shape in one call, on feature-major stacks: x_t (R, N_i, B) -> (R, N_{i+1}, B).

    The native kernels of a single layer's step on 3-D operands, so every run's numbers are bit-for-bit
    those of `SparseLinearFunction` on it: the kernels compute each output in the same order whatever R
    (row by row or on packed tiles), and the weight gradient sums over the whole batch as the single layer
    does. CPU, float32, native kernels, fixed fan-out only (`predsparse.nn.stacked`).
    """

    @staticmethod
    def forward(ctx, x_t, weight, bias, fan_in_index, fan_out_right, fan_out_position, input_relu: bool):
        y_t = _stacked_forward(x_t, weight, fan_in_index, bias, input_relu)
        ctx.save_for_backward(x_t, weight, fan_in_index, fan_out_right, fan_out_position)
        ctx.input_relu = input_relu
        return y_t

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad_y_t):
        x_t, weight, fan_in_index, fan_out_right, fan_out_position = ctx.saved_tensors
        grad_y_t = grad_y_t.contiguous()
        grad_x_t = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x_t = _stacked_input_grad(grad_y_t, weight, fan_out_right, fan_out_position,
                                           x_t if ctx.input_relu else None)
        if ctx.needs_input_grad[1]:
            grad_w, grad_b = _stacked_weight_grad(grad_y_t, x_t, fan_in_index, ctx.input_relu)
        return grad_x_t, grad_w, grad_b, None, None, None, None


def sparse_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    fan_in_index: torch.Tensor,
    fan_out_right: torch.Tensor,
    fan_out_position: torch.Tensor,
    input_relu: bool = False,
) -> torch.Tensor:
    """y = x W^T + b for x of shape (..., N_i); weight (N_{i+1}, fi); index tensors as in the module docstring.

    `input_relu`: y = relu(x) W^T + b, the ReLU fused into the products where the backend can (the native
    CPU kernels), a torch.relu before them otherwise.
    """
    n_left = fan_out_right.shape[0]
    if x.shape[-1] != n_left:
        raise ValueError(f"sparse_linear: input has {x.shape[-1]} features (shape {tuple(x.shape)}), expected N_i = {n_left}")
    if x.dtype != weight.dtype:
        raise TypeError(f"sparse_linear: input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if not x.is_cuda and x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"sparse_linear on {x.device.type}: dtype {x.dtype} is not supported; use float32 or float64")
    backend = backend_for(x, weight.shape[1] / n_left)
    if input_relu and not backend.fused:
        x, input_relu = torch.relu(x), False
    # A 2-D x goes in as it is: a reshape would add two view nodes (some 15 us each) to the autograd graph.
    flat = x if x.dim() == 2 else x.reshape(-1, n_left)
    y = SparseLinearFunction.apply(flat, weight, bias, fan_in_index, fan_out_right, fan_out_position, backend,
                                   input_relu)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], weight.shape[0])
