"""The native CPU kernels (`_native.c`, built by the ordinary install) behind torch-shaped calls.

Both primitives of `predsparse.nn.functional` on float32 CPU tensors, for one layer (2-D operands) or R
stacked layers (3-D, a leading R), in the feature-major layout described there:

    gather_reduce(src_t (N, B), index (M, K) int32, coef (M, K))        -> (M, B)  (or coef[coef_index])
    connection_dots(a_t (M, B), x_t (N, B), index (M, K) int32, out)    -> (M, K), out += if accumulate

and a SparseLinear layer's whole forward and whole backward, each in one call on the same loops
(`layer_forward`, `layer_backward`: x and grad_y in any layout, their transposes done on the way).

`AVAILABLE` says whether the extension was built; `STATUS` says which kernels run and, if they are not
the native ones, why (no compiler at install time, a build for another Python, ...).
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

# The instruction sets the kernels are compiled for, best first. PREDSPARSE_NATIVE_ISA=<one of them> runs a
# lesser one than the CPU's best (the tests run every set the CPU has, since a CI machine has one best set).
ISAS = ("avx512f", "avx2+fma", "baseline")
ISA_VARIABLE = "PREDSPARSE_NATIVE_ISA"

_HOW = "reinstall with a C compiler (`pip install -e .` runs gcc) for the fast CPU path"
if importlib.util.find_spec("predsparse.nn._native") is None:  # the install found no compiler
    _native = None
    STATUS = f"native CPU kernels not built (no predsparse/nn/_native*.so); using torch formulations; {_HOW}"
else:
    try:
        from predsparse.nn import _native
    except ImportError as exc:  # built, but not loadable here (another Python, a missing library)
        _native = None
        STATUS = f"native CPU kernels not loadable ({exc}); using torch formulations; {_HOW}"
    else:
        _wanted = os.environ.get(ISA_VARIABLE)
        if _wanted and _wanted not in ISAS:
            warnings.warn(f"{ISA_VARIABLE}={_wanted!r} is not one of {', '.join(ISAS)}; using {_native.ISA}")
        elif _wanted and not _native.use_isa(_wanted):
            warnings.warn(f"{ISA_VARIABLE}={_wanted!r}: this CPU lacks it; using {_native.ISA}")
        STATUS = f"native CPU kernels (predsparse.nn._native, {_native.ISA})"

AVAILABLE = _native is not None


def supports(*tensors: torch.Tensor) -> bool:
    """Whether the native kernels take these operands: built, CPU, float32."""
    return AVAILABLE and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _layout(t: torch.Tensor) -> tuple[int, int]:
    """(row stride, layer stride) of a 2-D tensor (one layer: layer stride 0) or a 3-D stack (R, rows, cols).
    (Strides, not views: a view costs microseconds, and these calls are in every step's path.)"""
    strides = t.stride()
    return (strides[0], 0) if len(strides) == 2 else (strides[1], strides[0])


def _check_rows(name: str, t: torch.Tensor) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"native kernels: {name} must have contiguous rows, has strides {tuple(t.stride())}")


def _check_index(name: str, index: torch.Tensor) -> None:
    """The kernels walk an index (and coefficients in its shape) row after row: contiguous per layer."""
    strides, fan = index.stride(), index.shape[-1]
    if index.dtype != torch.int32 or (fan > 1 and strides[-1] != 1) or (index.shape[-2] > 1 and strides[-2] != fan):
        raise ValueError(f"native kernels: {name} must be int32 with contiguous rows, is {index.dtype} "
                         f"of strides {tuple(strides)}")


def _pointer(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


# Sources from this size up (N x B floats of one layer) are gathered from packed tiles (`_native.c`'s
# gather_tiles); smaller ones row by row, where they stay in L2 anyway and the packing costs more than it
# saves. `benchmarks/sparse_linear.py --tiles` on an Intel Xeon with a 2 MB L2 per core (at 5943bb9,
# benchmarks/measured/sparse_linear_tiles_cpu_xeon.csv): tiles / rows 0.97-1.02 at 1024 source rows
# (1 MiB at batch 256), 0.82-1.12 at 2048 (2 MiB), 0.76-0.82 at 4096 (at 00a39e7: 0.96-1.22, 0.85-0.95,
# 0.75-0.76); on an AMD EPYC with a 512 KB L2 (at 03b7aac, benchmarks/measured/sparse_linear_tiles_cpu.csv)
# 0.88-1.11, 1.00-1.10 and 0.94-1.05: there a tile of 4096 rows outgrows L2 too, and the rule matters little.
TILED_SOURCE_BYTES = 2 * 2**20


def _tiled(src_rows: int, batch: int, layers: int, threads: int) -> bool:
    """Whether gather_reduce packs tiles: a source beyond TILED_SOURCE_BYTES, and a tile for every thread."""
    return src_rows * batch * 4 >= TILED_SOURCE_BYTES and layers * -(-batch // _native.PACK) >= threads


def _pack_buffers(tiled: bool, threads: int, src_rows: int, dtype: torch.dtype) -> torch.Tensor | None:
    """The packed tiles' workspace, one src_rows x PACK buffer per thread (None when not tiled)."""
    return torch.empty((threads, src_rows, _native.PACK), dtype=dtype) if tiled else None


def _coef_copy(tiled: bool, coef_index: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Where tiled gathers copy coefficients read through coef_index before gathering (see run_gather in
    _native.c), shaped like the index; None where they read them directly."""
    return torch.empty(coef_index.shape, dtype=dtype) if tiled and coef_index is not None else None


def gather_reduce(src_t: torch.Tensor, index: torch.Tensor, coef: torch.Tensor, bias: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None, relu_src: bool = False,
                  coef_index: torch.Tensor | None = None) -> torch.Tensor:
    """out[r, i, b] = sum_k c[r, i, k] * f(src_t[r, index[r, i, k], b]) (+ bias[r, i]), zeroed where
    mask[r, i, b] <= 0; f is max(., 0) (NaN kept) if `relu_src`, else the identity. r is absent for 2-D
    operands; bias is (R, M) or (M,), mask shaped like the output. c is coef, shaped like index, or with
    `coef_index` (shaped like index) c[r, i, k] = coef[r].flatten()[coef_index[r, i, k]]: a layer's input
    gradient reads its weights in fan-out order so, without a transposed copy of them. Row by row, or on
    packed tiles of the batch where the source is large (`_tiled`): the same results either way."""
    src_ld, src_r = _layout(src_t)
    index_r = _layout(index)[1]
    _check_rows("src_t", src_t)
    _check_index("index", index)
    coef = coef.contiguous()
    if coef_index is None:
        if coef.shape != index.shape:
            raise ValueError(f"native kernels: coef of shape {tuple(coef.shape)} does not match index {tuple(index.shape)}")
    else:
        _check_index("coef_index", coef_index)
        if coef_index.shape != index.shape or coef_index.stride() != index.stride():
            raise ValueError(f"native kernels: coef_index of shape {tuple(coef_index.shape)} and strides "
                             f"{coef_index.stride()} does not match index {tuple(index.shape)}, {index.stride()}")
    coef_r = _layout(coef)[1] if coef.dim() == index.dim() else 0
    shape = index.shape
    src_rows, batch = src_t.shape[-2], src_t.shape[-1]
    layers = shape[0] if len(shape) == 3 else 1
    threads = torch.get_num_threads()
    tiled = _tiled(src_rows, batch, layers, threads)
    out = src_t.new_empty((*shape[:-1], batch))
    out_ld, out_r = _layout(out)
    bias_r = mask_ld = mask_r = 0
    if bias is not None:
        bias = bias.contiguous()
        bias_r = bias.stride(0) if bias.dim() == 2 else 0
    if mask is not None:
        _check_rows("mask", mask)
        if mask.shape != out.shape:
            raise ValueError(f"native kernels: mask of shape {tuple(mask.shape)} does not match the output {tuple(out.shape)}")
        mask_ld, mask_r = _layout(mask)
    pack = _pack_buffers(tiled, threads, src_rows, src_t.dtype)
    coef_copy = _coef_copy(tiled, coef_index, coef.dtype)
    _native.gather_reduce(out.data_ptr(), src_t.data_ptr(), index.data_ptr(), coef.data_ptr(), _pointer(coef_index),
                          _pointer(coef_copy), layers, shape[-2], shape[-1], batch, src_ld, out_ld, src_r, out_r,
                          index_r, coef_r, _pointer(bias), bias_r, _pointer(mask), mask_ld, mask_r, int(relu_src),
                          int(tiled), src_rows, _pointer(pack), threads)
    return out


def connection_dots(a_t: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None,
                    accumulate: bool = False, relu_src: bool = False,
                    row_sums: torch.Tensor | None = None) -> torch.Tensor:
    """out[r, i, k] (+)= sum_b a_t[r, i, b] * f(x_t[r, index[r, i, k], b]), f as in `gather_reduce`; a new
    tensor unless `out` is given. `row_sums` (contiguous (R, M) or (M,)), if given, receives sum_b a_t[r, i, b]."""
    a_ld, a_r = _layout(a_t)
    x_ld, x_r = _layout(x_t)
    index_r = _layout(index)[1]
    shape = index.shape
    _check_rows("a_t", a_t)
    _check_rows("x_t", x_t)
    _check_index("index", index)
    if x_t.shape[-1] != a_t.shape[-1]:
        raise ValueError(f"native kernels: a_t has batch {a_t.shape[-1]}, x_t {x_t.shape[-1]}")
    if out is None:
        out = a_t.new_empty(shape)
        accumulate = False
    elif not out.is_contiguous() or out.shape != shape:
        raise ValueError(f"native kernels: out must be contiguous of shape {tuple(shape)}")
    out_r = _layout(out)[1]
    sums_r = 0
    if row_sums is not None:
        if not row_sums.is_contiguous() or row_sums.shape != shape[:-1]:
            raise ValueError(f"native kernels: row_sums must be contiguous of shape {tuple(shape[:-1])}")
        sums_r = row_sums.stride(0) if row_sums.dim() == 2 else 0
    layers = shape[0] if len(shape) == 3 else 1
    _native.connection_dots(out.data_ptr(), a_t.data_ptr(), x_t.data_ptr(), index.data_ptr(), layers, shape[-2],
                            shape[-1], a_t.shape[-1], a_ld, x_ld, a_r, x_r, index_r, out_r, _pointer(row_sums),
                            sums_r, int(relu_src), int(accumulate), torch.get_num_threads())
    return out


def _readable(x: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """(x, ld, batch_major) for a 2-D (B, N) x as the kernels read it: feature-major (sample b of feature n
    at n * ld + b) or batch-major (at b * ld + n); a contiguous copy where x is neither (an expanded
    gradient, a strided slice). (Strides, not a transposed view: a view costs microseconds per call.)"""
    batch_stride, feature_stride = x.stride()
    batch, features = x.shape
    if batch_stride == 1 or batch == 1:
        return x, feature_stride, False
    if feature_stride == 1 or features == 1:
        return x, batch_stride, True
    x = x.contiguous()
    return x, x.stride(0), True


def _feature_major_empty(batch: int, features: int, dtype: torch.dtype) -> torch.Tensor:
    """A new (B, N) tensor laid out feature-major (strides (1, B)): what a transposed (N, B) one would be,
    without the view."""
    return torch.empty_strided((batch, features), (1, batch), dtype=dtype)


def layer_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fan_in_index: torch.Tensor,
                  relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A SparseLinear layer's forward in one native call, for a 2-D x (B, N_i) in any layout: (y, x_fm),
    y = relu?(x) W^T + b (B, N_{i+1}) laid out feature-major, and x_fm, x laid out feature-major for the
    backward pass: x itself if it is, else the copy the gathers wrote on the way. The layer's buffers are
    trusted (SparseLinear checked them); see gather_reduce for the general, checked primitive."""
    x, ld, batch_major = _readable(x)
    batch, n_in = x.shape
    n_out, fan = fan_in_index.shape
    threads = torch.get_num_threads()
    tiled = _tiled(n_in, batch, 1, threads)
    y = _feature_major_empty(batch, n_out, x.dtype)
    copy = _feature_major_empty(batch, n_in, x.dtype) if batch_major else None
    pack = _pack_buffers(tiled, threads, n_in, x.dtype)
    _native.layer_forward(y.data_ptr(), x.data_ptr(), fan_in_index.data_ptr(), weight.data_ptr(), _pointer(bias),
                          _pointer(copy), _pointer(pack), n_in, n_out, fan, batch, ld, int(batch_major), int(relu),
                          int(tiled), threads)
    return y, (copy if batch_major else x)


def layer_backward(grad_y: torch.Tensor, x_fm: torch.Tensor, coef: torch.Tensor, coef_index: torch.Tensor | None,
                   fan_in_index: torch.Tensor, fan_out_right: torch.Tensor, relu: bool, want_x: bool,
                   want_w: bool, want_b: bool):
    """A SparseLinear layer's backward in one native call: (grad_x (B, N_i) laid out feature-major, grad_w,
    grad_b), each None where not wanted, from grad_y (B, N_{i+1}) in any layout and layer_forward's x_fm.
    The input gradient's coefficients are coef[coef_index] (the weights in fan-out order, read in place) or
    coef itself (padded fan-outs: fan_out_weights's copy); with `relu` it is masked by the gradient of
    relu(x_fm). grad_b comes with grad_w (the row sums of the same pass), else from a sum of grad_y."""
    grad_y, ld, batch_major = _readable(grad_y)
    batch, n_out = grad_y.shape
    n_in, fo = fan_out_right.shape
    fi = fan_in_index.shape[1]
    threads = torch.get_num_threads()
    tiled = want_x and _tiled(n_out, batch, 1, threads)
    grad_x = _feature_major_empty(batch, n_in, grad_y.dtype) if want_x else None
    grad_w = torch.empty((n_out, fi), dtype=grad_y.dtype) if want_w else None
    grad_b = torch.empty(n_out, dtype=grad_y.dtype) if want_b and want_w else None
    copy = torch.empty((n_out, batch), dtype=grad_y.dtype) if batch_major else None
    pack = _pack_buffers(tiled, threads, n_out, grad_y.dtype)
    coef_copy = _coef_copy(tiled, coef_index, coef.dtype)
    _native.layer_backward(_pointer(grad_x), _pointer(grad_w), _pointer(grad_b), grad_y.data_ptr(), _pointer(copy),
                           _pointer(pack), x_fm.data_ptr(), coef.data_ptr(), _pointer(coef_index),
                           _pointer(coef_copy), fan_in_index.data_ptr(), fan_out_right.data_ptr(), n_in, n_out, fi,
                           fo, batch, ld, x_fm.stride(1), int(batch_major), int(relu), int(tiled), threads)
    if want_b and grad_b is None:
        grad_b = copy.sum(1) if batch_major else grad_y.sum(0)
    return grad_x, grad_w, grad_b


def mlp_step(table: torch.Tensor, layers: int, batch: int, ld: int, classes: int, x: torch.Tensor, x_ld: int,
             start: int, picks: torch.Tensor | None, labels: torch.Tensor, act0: torch.Tensor, grad0: torch.Tensor,
             grad1: torch.Tensor, train: bool, lr: float, momentum: float, decay_weight: float, decay_bias: float,
             first: bool) -> tuple[float, int]:
    """A fused MLP step or evaluation batch (see `predsparse.nn.fused`, which builds the junction table and
    the workspace, whose (n, batch) buffers have rows `ld` floats apart); returns the batch's summed loss and
    number of correct predictions."""
    return _native.mlp_step(table.data_ptr(), layers, batch, ld, classes, x.data_ptr(), x_ld, start,
                            _pointer(picks), labels.data_ptr(), act0.data_ptr(), grad0.data_ptr(), grad1.data_ptr(),
                            int(train), lr, momentum, decay_weight, decay_bias, int(first), torch.get_num_threads())
