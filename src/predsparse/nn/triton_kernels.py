"""Triton kernels of `SparseLinear` (the CUDA backend): two gathers, no atomics.

A junction joins N_i left to N_{i+1} right neurons with fixed fan-in fi and fan-out fo. All tensors here
are feature-major, (N, B) with the batch B contiguous, so that the rows a kernel gathers are contiguous
runs of the batch and every load is coalesced.

- `gather_reduce` computes out[r, b] = sum_k coef[r, k] * src[index[r, k], b]: the forward pass with the
  fan-in index (r a right neuron, k < fi) and the input gradient with the transposed fan-out index
  (r a left neuron, k < fo), so the input gradient is a gather over grad_y, never a scatter-add.
- `connection_dots` computes out[j, k] = sum_b a[j, b] * x[b, index[j, k]] (x given batch-major and
  transposed here): the weight gradient, one dot product over the batch per connection.

Inputs may be float32 or bfloat16 (or float16); products are accumulated in float32 and the result takes
the input dtype. Block sizes are autotuned per shape; under TRITON_INTERPRET=1 (the CPU interpreter used
by the tests) nothing can be timed, so the first config is used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton import knobs


def _first_config_when_interpreted(configs, named_args, **kwargs):
    return configs[:1] if knobs.runtime.interpret else configs


def _autotuned(block_names: tuple[str, str], sizes: list[tuple[int, int, int]], key: list[str]):
    """Autotune over (block, block, warps) triples, re-tuned whenever an argument named in `key` changes."""
    configs = [triton.Config({block_names[0]: a, block_names[1]: b}, num_warps=w) for a, b, w in sizes]
    return triton.autotune(configs, key, prune_configs_by={"early_config_prune": _first_config_when_interpreted})


@_autotuned(
    ("BLOCK_R", "BLOCK_B"),
    [(16, 64, 4), (32, 32, 4), (32, 64, 4), (64, 64, 4), (32, 128, 4), (64, 128, 8), (128, 64, 8), (16, 256, 8)],
    ["n_rows", "fan", "batch"],
)
@triton.jit
def _gather_reduce_kernel(
    src_ptr, index_ptr, coef_ptr, out_ptr, n_rows, fan, batch, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < n_rows
    ok = row_ok[:, None] & (cols < batch)[None, :]
    edge = rows.to(tl.int64) * fan
    acc = tl.zeros((BLOCK_R, BLOCK_B), dtype=tl.float32)
    for k in range(0, fan):
        src_row = tl.load(index_ptr + edge + k, mask=row_ok, other=0).to(tl.int64)
        coef = tl.load(coef_ptr + edge + k, mask=row_ok, other=0.0).to(tl.float32)
        values = tl.load(src_ptr + src_row[:, None] * batch + cols[None, :], mask=ok, other=0.0)
        acc += coef[:, None] * values.to(tl.float32)
    out = out_ptr + rows.to(tl.int64)[:, None] * batch + cols[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=ok)


@_autotuned(
    ("BLOCK_E", "BLOCK_B"),
    [(32, 32, 4), (64, 32, 4), (32, 64, 4), (64, 64, 4), (128, 32, 4), (128, 64, 8), (256, 32, 8)],
    ["n_edges", "fan", "batch"],
)
@triton.jit
def _connection_dots_kernel(
    a_ptr, src_ptr, index_ptr, out_ptr, n_edges, fan, batch, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr
):
    # Connections are flattened (edge e = j * fan + k), so any fan, fi = 1 included, fills whole blocks.
    edges = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    edge_ok = edges < n_edges
    a_row = (edges // fan).to(tl.int64)
    src_row = tl.load(index_ptr + edges, mask=edge_ok, other=0).to(tl.int64)
    acc = tl.zeros((BLOCK_E, BLOCK_B), dtype=tl.float32)
    for start in range(0, batch, BLOCK_B):
        cols = start + tl.arange(0, BLOCK_B)
        ok = edge_ok[:, None] & (cols < batch)[None, :]
        a = tl.load(a_ptr + a_row[:, None] * batch + cols[None, :], mask=ok, other=0.0)
        s = tl.load(src_ptr + src_row[:, None] * batch + cols[None, :], mask=ok, other=0.0)
        acc += a.to(tl.float32) * s.to(tl.float32)
    tl.store(out_ptr + edges, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=edge_ok)


def gather_reduce(src_t: torch.Tensor, index: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """out[r, b] = sum_k coef[r, k] * src_t[index[r, k], b]; src_t (N, B) -> out (n_rows, B)."""
    src_t, index, coef = src_t.contiguous(), index.contiguous(), coef.contiguous()
    n_rows, fan = index.shape
    batch = src_t.shape[1]
    out = torch.empty(n_rows, batch, device=src_t.device, dtype=src_t.dtype)
    if n_rows and batch:
        grid = lambda meta: (triton.cdiv(n_rows, meta["BLOCK_R"]), triton.cdiv(batch, meta["BLOCK_B"]))
        _gather_reduce_kernel[grid](src_t, index, coef, out, n_rows, fan, batch)
    return out


def connection_dots(a_t: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """out[j, k] = sum_b a_t[j, b] * x[b, index[j, k]]; a_t (n_rows, B), x (B, N) -> (n_rows, fan)."""
    a_t, src_t, index = a_t.contiguous(), x.t().contiguous(), index.contiguous()
    n_rows, fan = index.shape
    batch = src_t.shape[1]
    out = torch.empty(n_rows, fan, device=src_t.device, dtype=src_t.dtype)
    n_edges = n_rows * fan
    if batch == 0:
        return out.zero_()
    grid = lambda meta: (triton.cdiv(n_edges, meta["BLOCK_E"]),)
    _connection_dots_kernel[grid](a_t, src_t, index, out, n_edges, fan, batch)
    return out
