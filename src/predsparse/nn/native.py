"""The native CPU kernels (`_native.c`, built by the ordinary install) behind torch-shaped calls.

Both primitives of `predsparse.nn.functional` on float32 CPU tensors, for one layer (2-D operands) or R
stacked layers (3-D, a leading R), in the feature-major layout described there:

    gather_reduce(src_t (N, B), index (M, K) int32, coef (M, K))        -> (M, B)
    connection_dots(a_t (M, B), x_t (N, B), index (M, K) int32, out)    -> (M, K), out += if accumulate

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


def _stacked(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(R, rows, cols) view of a 2-D or 3-D tensor, and its layer stride (0 for a single layer)."""
    return (t[None], 0) if t.dim() == 2 else (t, t.stride(0))


def _check_rows(name: str, t: torch.Tensor) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"native kernels: {name} must have contiguous rows, has strides {tuple(t.stride())}")


def _check_index(index: torch.Tensor, coef: torch.Tensor | None = None) -> None:
    """The kernels walk an index (and its coefficients) row after row: both contiguous per layer."""
    rows_apart = index.shape[1] == 1 or index.stride(1) == index.shape[2]
    if index.dtype != torch.int32 or not rows_apart or (index.shape[2] > 1 and index.stride(2) != 1):
        raise ValueError(f"native kernels: index must be int32 with contiguous rows, is {index.dtype} "
                         f"of strides {tuple(index.stride())}")
    if coef is not None and (coef.shape != index.shape or not coef[0].is_contiguous()):
        raise ValueError(f"native kernels: coef of shape {tuple(coef.shape)} does not match index {tuple(index.shape)}")


def _pointer(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def gather_reduce(src_t: torch.Tensor, index: torch.Tensor, coef: torch.Tensor, bias: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None, relu_src: bool = False) -> torch.Tensor:
    """out[r, i, b] = sum_k coef[r, i, k] * f(src_t[r, index[r, i, k], b]) (+ bias[r, i]), zeroed where
    mask[r, i, b] <= 0; f is max(., 0) (NaN kept) if `relu_src`, else the identity. r is absent for 2-D
    operands; bias is (R, M) or (M,), mask shaped like the output."""
    src3, src_r = _stacked(src_t)
    index3, index_r = _stacked(index)
    coef3, coef_r = _stacked(coef.contiguous())
    layers, rows, fan = index3.shape
    batch = src3.shape[2]
    _check_rows("src_t", src3)
    _check_index(index3, coef3)
    out = src_t.new_empty((*index.shape[:-1], batch))
    out3, out_r = _stacked(out)
    bias_r = mask_ld = mask_r = 0
    if bias is not None:
        bias = bias.contiguous()
        bias_r = bias.stride(0) if bias.dim() == 2 else 0
    if mask is not None:
        mask3, mask_r = _stacked(mask)
        _check_rows("mask", mask3)
        if mask3.shape != out3.shape:
            raise ValueError(f"native kernels: mask of shape {tuple(mask.shape)} does not match the output {tuple(out.shape)}")
        mask, mask_ld = mask3, mask3.stride(1)
    _native.gather_reduce(out3.data_ptr(), src3.data_ptr(), index3.data_ptr(), coef3.data_ptr(), layers, rows, fan,
                          batch, src3.stride(1), out3.stride(1), src_r, out_r, index_r, coef_r, _pointer(bias), bias_r,
                          _pointer(mask), mask_ld, mask_r, int(relu_src), torch.get_num_threads())
    return out


def transpose(x: torch.Tensor) -> torch.Tensor:
    """x.t().contiguous() for a 2-D x with contiguous rows, in register tiles on all threads (torch's copy
    is single-threaded and element by element: 4-6x slower at (256, 1024))."""
    _check_rows("x", x)
    rows, cols = x.shape
    out = x.new_empty((cols, rows))
    _native.transpose(out.data_ptr(), x.data_ptr(), rows, cols, x.stride(0), rows, torch.get_num_threads())
    return out


def connection_dots(a_t: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None,
                    accumulate: bool = False, relu_src: bool = False,
                    row_sums: torch.Tensor | None = None) -> torch.Tensor:
    """out[r, i, k] (+)= sum_b a_t[r, i, b] * f(x_t[r, index[r, i, k], b]), f as in `gather_reduce`; a new
    tensor unless `out` is given. `row_sums` (contiguous (R, M) or (M,)), if given, receives sum_b a_t[r, i, b]."""
    a3, a_r = _stacked(a_t)
    x3, x_r = _stacked(x_t)
    index3, index_r = _stacked(index)
    layers, rows, fan = index3.shape
    _check_rows("a_t", a3)
    _check_rows("x_t", x3)
    _check_index(index3)
    if x3.shape[2] != a3.shape[2]:
        raise ValueError(f"native kernels: a_t has batch {a3.shape[2]}, x_t {x3.shape[2]}")
    if out is None:
        out = a_t.new_empty(index.shape)
        accumulate = False
    out3, out_r = _stacked(out)
    if not out3.is_contiguous() or out3.shape != index3.shape:
        raise ValueError(f"native kernels: out must be contiguous of shape {tuple(index.shape)}")
    sums_r = 0
    if row_sums is not None:
        if not row_sums.is_contiguous() or row_sums.shape != index.shape[:-1]:
            raise ValueError(f"native kernels: row_sums must be contiguous of shape {tuple(index.shape[:-1])}")
        sums_r = row_sums.stride(0) if row_sums.dim() == 2 else 0
    _native.connection_dots(out3.data_ptr(), a3.data_ptr(), x3.data_ptr(), index3.data_ptr(), layers, rows, fan,
                            a3.shape[2], a3.stride(1), x3.stride(1), a_r, x_r, index_r, out_r, _pointer(row_sums),
                            sums_r, int(relu_src), int(accumulate), torch.get_num_threads())
    return out


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
