"""SparseLinear speed and memory: one training step against dense, masked dense, torch.sparse and SparseProp.

One step = forward + input gradient + weight gradient (+ bias) at batch 256, random patterns, of:
- `sparse`: SparseLinear as it runs (the native CPU kernels of predsparse.nn.native, Triton on CUDA;
  dense blocks from DENSE_DISPATCH_DENSITY up);
- `torch gathers`: SparseLinear on its torch formulations (what runs where the native kernels are not
  built: embedding_bag + sampled_addmm), CPU only;
- `dense`: nn.Linear (the yardstick), `masked`: MaskedLinear (a dense weight times a 0/1 mask, what the
  authors' Keras code and torch.nn.utils.prune do), `csr`: the weights as a torch.sparse CSR matrix;
- `sparseprop`: SparseProp's SparseLinear (`pip install pybind11 && pip install --no-build-isolation
  sparseprop`, AVX2 CPUs), a column of its own where it is installed.
The default cases are the targets of the throughput issue: 1024x1024 at 0.78 / 6.25 / 25 %, 4096x4096
at 0.78 / 6.25 %, the Morse junctions 64->1024 and 1024->64 at 12.5 %. `--sweep` times 4096->512,
1024->1024 and 4096->4096 at 0.2 % to 50 % instead; `--dispatch` SparseLinear forced onto gathers and
onto dense blocks at 1/8 to 7/8 (the measurement behind DENSE_DISPATCH_DENSITY); `--tiles` its native
gathers forced row by row and onto packed tiles (the measurement behind native.TILED_SOURCE_BYTES);
`--parts` where SparseLinear's step goes: the time inside each native call and outside them (Python,
autograd, allocation), the step with no-op native calls, and the step of an autograd function that computes
nothing (torch's share), at the issue's cases and a tiny layer.

Times are the minimum over interleaved rounds (every round times each method once, after an untimed step
of the same method, so a noisy neighbour slows all methods alike); a speed-up is dense's best time over
the method's, both from this run. The machine's limits are measured in the same run: its dense GEMM
rate (an sgemm of the 4096x4096 step's shape) and its memory bandwidth (a 256 MiB copy). A step needs at
least 6 B nnz FLOPs and 12 B (N_i + N_{i+1}) + 36 nnz bytes (x, y, both gradients; weights, indices and
the weight gradient), so its limit is the larger of FLOPs / GEMM rate and bytes / bandwidth, and
`share_of_limit` = limit / time. Every method is timed in this process after
`predsparse.allocator.keep_freed_memory()`, as `predsparse train` runs, so that no step faults its fresh
buffers' pages in (that cost 0.4 ms of a 1.1 ms step in some processes). Peak extra memory of a
step (everything it allocates beyond the layer and its input) is measured on the CPU in a child process
whose malloc returns every freed block above 64 KiB to the system, so the peak resident set size is
exact; on CUDA it is the peak of torch's allocator. `--threads 1 --cpu-time` times by the process's CPU
time, for a CPU shared with other jobs.

Writes results/benchmarks/sparse_linear[_sweep|_dispatch|_tiles|_parts][_cuda_<dtype>].csv and .png and prints each
target with the value reached; `--markdown CSV` prints the README's table of such a CSV.

    python benchmarks/sparse_linear.py               # the issue's cases (minutes)
    python benchmarks/sparse_linear.py --quick       # 1024x1024 and the Morse junctions, 3 rounds
    python benchmarks/sparse_linear.py --markdown results/benchmarks/sparse_linear.csv
    python benchmarks/sparse_linear.py --sweep       # density sweep, three layers
    python benchmarks/sparse_linear.py --dispatch    # gathers vs dense blocks, 1/8 to 7/8
    python benchmarks/sparse_linear.py --tiles       # native gathers row by row vs packed tiles
    python benchmarks/sparse_linear.py --parts       # time inside and outside the native calls
    python benchmarks/sparse_linear.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from predsparse.allocator import keep_freed_memory
from predsparse.io import atomic_path, atomic_savefig
from predsparse.nn import MaskedLinear, SparseLinear, functional, native
from predsparse.patterns import generate_pattern, valid_fanouts
from native_stand_ins import NoopNative, TimedNative  # benchmarks/native_stand_ins.py, beside this script
from plotting import pyplot_or_none  # benchmarks/plotting.py, beside this script

# (N_i, N_{i+1}, density, the target speed-up over dense of SparseLinear's step)
CASES = [
    (1024, 1024, 0.0078125, 25.0), (1024, 1024, 0.0625, 6.0), (1024, 1024, 0.25, 1.5),
    (4096, 4096, 0.0078125, 40.0), (4096, 4096, 0.0625, 8.0),
    (64, 1024, 0.125, 3.0), (1024, 64, 0.125, 3.0),
]
QUICK_CASES = [case for case in CASES if case[0] * case[1] <= 1024 * 1024]
SWEEP_LAYERS = [(4096, 512), (1024, 1024), (4096, 4096)]
SWEEP_DENSITIES = [0.002, 0.004, 0.008, 0.016, 0.03125, 0.0625, 0.125, 0.25, 0.5]
DISPATCH_LAYERS = [(1024, 1024), (4096, 512)]
DISPATCH_DENSITIES = [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
SPARSEPROP_TARGET = 2.0  # SparseLinear at least this much faster than SparseProp at every density <= 25 %
# method -> (layer built, DENSE_DISPATCH_DENSITY forced during its steps or None, native kernels allowed,
# native gathers forced on packed tiles (True) or row by row (False), or None: native.TILED_SOURCE_BYTES's rule)
METHODS = {
    "sparse": ("sparse", None, True, None),
    "torch gathers": ("sparse", math.inf, False, None),
    "dense": ("dense", None, True, None),
    "masked": ("masked", None, True, None),
    "csr": ("csr", None, True, None),
    "sparseprop": ("sparseprop", None, True, None),
    "gathers": ("sparse", math.inf, True, None),
    "dense blocks": ("sparse", 0.0, True, None),
    "rows": ("sparse", math.inf, True, False),
    "tiles": ("sparse", math.inf, True, True),
}
DISPATCH_METHODS = ("gathers", "dense blocks", "dense")
TILES_LAYERS = [(1024, 1024), (2048, 2048), (4096, 4096), (4096, 512), (64, 1024), (1024, 64)]
TILES_DENSITIES = [0.0078125, 0.0625, 0.25]
TILES_METHODS = ("rows", "tiles", "dense")
MMAP_THRESHOLD = "65536"


class CsrLinear(nn.Module):
    """The torch.sparse baseline: weight values (N_{i+1} fi) of a CSR matrix rebuilt every step."""

    def __init__(self, layer: SparseLinear):
        super().__init__()
        n_out, fi = layer.fan_in_index.shape
        self.shape = (n_out, layer.in_features)
        self.register_buffer("row_start", torch.arange(0, n_out * fi + 1, fi, device=layer.weight.device))
        self.register_buffer("column", layer.fan_in_index.reshape(-1).long())
        self.values = nn.Parameter(layer.weight.detach().reshape(-1).clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())

    def forward(self, x):
        weight = torch.sparse_csr_tensor(self.row_start, self.column, self.values, self.shape, check_invariants=False)
        # sparse.mm (not @) keeps the weight gradient sparse; @ would build a dense N_{i+1} x N_i one.
        return torch.sparse.mm(weight, x.t()).t() + self.bias


def nearest_fanout(n_in: int, n_out: int, density: float) -> int:
    return min(valid_fanouts(n_in, n_out), key=lambda fo: (abs(fo / n_out - density), fo))


def build(kind: str, n_in: int, n_out: int, fo: int, device, dtype) -> nn.Module:
    torch.manual_seed(0)
    if kind == "dense":
        return nn.Linear(n_in, n_out).to(device, dtype)
    sparse = SparseLinear.from_pattern(generate_pattern([n_in, n_out], [fo], "random", 0), 0).to(device, dtype)
    if kind == "sparse":
        return sparse
    if kind == "csr":
        return CsrLinear(sparse)
    masked = MaskedLinear(n_in, n_out, sparse.adjacency()).to(device, dtype)
    with torch.no_grad():
        masked.weight.copy_(sparse.dense_weight())
    if kind == "sparseprop":  # the same connections and weights in SparseProp's CSR layer
        from sparseprop.modules.linear import SparseLinear as SparsePropLinear

        dense = nn.Linear(n_in, n_out)
        with torch.no_grad():
            dense.weight.copy_(sparse.dense_weight())
            dense.bias.copy_(sparse.bias)
        return SparsePropLinear.from_dense(dense)
    return masked


def sparseprop_available(device) -> bool:
    if device.type != "cpu":
        return False
    try:
        import sparseprop.modules.linear  # noqa: F401
    except ImportError:
        return False
    return True


def make_step(method: str, n_in, n_out, fo, x: torch.Tensor, grad_y: torch.Tensor):
    """A training step of `method`: forward, then the gradients of the input and of every parameter."""
    kind, forced, native_allowed, tiled = METHODS[method]
    layer = build(kind, n_in, n_out, fo, x.device, x.dtype)
    params = [x, *layer.parameters()]
    rule = functional.DENSE_DISPATCH_DENSITY

    def step():
        saved, built, tile_rule = rule.get(x.device.type, math.inf), native.AVAILABLE, native._tiled
        rule[x.device.type] = saved if forced is None else forced
        native.AVAILABLE = built and native_allowed
        if tiled is not None:
            native._tiled = lambda *sizes: tiled
        try:
            torch.autograd.grad(layer(x), params, grad_y)
        finally:
            rule[x.device.type], native.AVAILABLE, native._tiled = saved, built, tile_rule

    return step


def timed(step, device, clock=time.perf_counter) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (clock() - start) * 1e3


def step_inputs(batch, n_in, n_out, device, dtype, feature_major: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, N_i) and grad_y (B, N_{i+1}): row-major, as a layer fed by data and a loss sees them, or
    feature-major, as inside a stack of SparseLinear layers (the layout they output)."""
    if feature_major:
        x = torch.randn(n_in, batch, device=device, dtype=dtype).t().requires_grad_()
        return x, torch.randn(n_out, batch, device=device, dtype=dtype).t()
    x = torch.randn(batch, n_in, device=device, dtype=dtype, requires_grad=True)
    return x, torch.randn(batch, n_out, device=device, dtype=dtype)


def time_methods(methods, n_in, n_out, fo, batch, rounds, device, dtype, feature_major, clock) -> dict[str, list[float]]:
    """Milliseconds per step of every method, interleaved round by round.

    Each timed step follows an untimed one of the same method, as in training, where a layer's steps
    follow one another: its buffers are in cache and the allocator has blocks of the right sizes.
    """
    x, grad_y = step_inputs(batch, n_in, n_out, device, dtype, feature_major)
    steps = {m: make_step(m, n_in, n_out, fo, x, grad_y) for m in methods}
    times = {m: [] for m in methods}
    for _ in range(rounds):
        for method, step in steps.items():
            step()
            times[method].append(timed(step, device, clock))
    return times


class EmptyLayerFunction(torch.autograd.Function):
    """A layer's autograd function that computes nothing (uninitialised output and gradients): what torch's
    machinery alone costs a step of any layer written as a Python autograd function."""

    @staticmethod
    def forward(ctx, x, weight, bias, n_out):
        ctx.shapes = x.shape, weight.shape, bias.shape
        return x.new_empty(x.shape[0], n_out)

    @staticmethod
    def backward(ctx, grad_y):
        return (*(grad_y.new_empty(shape) for shape in ctx.shapes), None)


def time_parts(n_in, n_out, fo, batch, steps, rounds, dtype, feature_major) -> dict:
    """Where a SparseLinear step's time goes: the best of `rounds` mean step times over `steps` steps, and
    in that round the time spent inside each native call and outside them (Python, autograd, allocation);
    the same step with every native call a no-op (`noop_step_ms`): what the code outside the calls costs
    when the kernels have not just filled the caches with the step's data; and the step of
    EmptyLayerFunction on the same operands (`autograd_floor_ms`): the part of that which is torch's."""
    x, grad_y = step_inputs(batch, n_in, n_out, torch.device("cpu"), dtype, feature_major)
    step = make_step("sparse", n_in, n_out, fo, x, grad_y)
    layer = build("sparse", n_in, n_out, fo, x.device, x.dtype)
    operands = [x, layer.weight, layer.bias]

    def empty_step():
        torch.autograd.grad(EmptyLayerFunction.apply(*operands, n_out), operands, grad_y)

    real, best, noop, floor = native._native, None, math.inf, math.inf
    try:
        for _ in range(rounds):
            native._native = timer = TimedNative(real)
            step()
            timer.spent.clear()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            total = (time.perf_counter() - start) / steps * 1e3
            if best is None or total < best["step_ms"]:
                best = {"step_ms": total, **{f"{name}_ms": t / steps * 1e3 for name, t in timer.spent.items()}}
            native._native = NoopNative(real)
            step()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            noop = min(noop, (time.perf_counter() - start) / steps * 1e3)
            empty_step()
            start = time.perf_counter()
            for _ in range(steps):
                empty_step()
            floor = min(floor, (time.perf_counter() - start) / steps * 1e3)
    finally:
        native._native = real
    best["outside_native_ms"] = best["step_ms"] - sum(v for k, v in best.items() if k != "step_ms")
    best["noop_step_ms"], best["autograd_floor_ms"] = noop, floor
    return {k: round(v, 4) for k, v in best.items()}


def _resident(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def peak_extra_bytes(method, n_in, n_out, fo, batch, device, dtype, feature_major) -> int:
    """Peak memory a step allocates beyond the layer and its input (see the module docstring)."""
    x, grad_y = step_inputs(batch, n_in, n_out, device, dtype, feature_major)
    step = make_step(method, n_in, n_out, fo, x, grad_y)
    step()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set size (VmHWM)
    base = _resident("VmRSS")
    step()
    return _resident("VmHWM") - base


def measure_memory(configs: list[tuple], device, dtype, feature_major) -> list[int]:
    """Peak extra bytes of each (method, n_in, n_out, fo, batch); CPU ones in a child process."""
    if device.type == "cuda" or os.environ.get("MALLOC_MMAP_THRESHOLD_") == MMAP_THRESHOLD:
        return [peak_extra_bytes(*config, device, dtype, feature_major) for config in configs]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MMAP_THRESHOLD)
    command = [sys.executable, __file__, "--memory-probe", json.dumps(configs)]
    command += ["--feature-major"] if feature_major else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_limits(device, dtype) -> dict[str, float]:
    """The machine's dense GEMM rate (GFLOP/s, an sgemm of the 4096x4096 step's shape: (256 x 4096) @
    (4096 x 4096)) and memory bandwidth (GB/s, bytes read + written by a 256 MiB copy), best of 5."""
    a = torch.randn(256, 4096, device=device, dtype=dtype)
    b = torch.randn(4096, 4096, device=device, dtype=dtype)
    src = torch.empty(64 * 2**20, device=device, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    gemm = copy = math.inf
    for _ in range(5):
        gemm = min(gemm, timed(lambda: a @ b, device))
        copy = min(copy, timed(lambda: dst.copy_(src), device))
    return {"gemm_gflops": round(2 * 256 * 4096 * 4096 / gemm / 1e6, 1),
            "bandwidth_gbs": round(2 * src.numel() * 4 / copy / 1e6, 1)}


def step_limit_ms(n_in: int, n_out: int, nnz: int, batch: int, limits: dict) -> float:
    """The least time of a step: 6 B nnz FLOPs at the GEMM rate, or its least bytes at the bandwidth."""
    flops = 6 * batch * nnz
    least_bytes = 12 * batch * (n_in + n_out) + 36 * nnz
    return max(flops / limits["gemm_gflops"] / 1e6, least_bytes / limits["bandwidth_gbs"] / 1e6)


def run(methods, cases, batch, rounds, device, dtype, feature_major, clock, limits) -> list[dict]:
    """Rows of the CSV for every (N_i, N_{i+1}, density) case and method."""
    rows = []
    for n_in, n_out in dict.fromkeys((c[0], c[1]) for c in cases):
        fanouts = sorted({nearest_fanout(n_in, n_out, c[2]) for c in cases if c[:2] == (n_in, n_out)})
        configs = [(m, n_in, n_out, fo, batch) for fo in fanouts for m in methods]
        peak = dict(zip(configs, measure_memory(configs, device, dtype, feature_major)))
        times = {
            fo: time_methods(methods, n_in, n_out, fo, batch, rounds, device, dtype, feature_major, clock)
            for fo in fanouts
        }
        dense_ms = sorted(t for fo in fanouts for t in times[fo]["dense"])  # dense does not depend on fo
        for fo in fanouts:
            fi = n_in * fo // n_out
            limit = step_limit_ms(n_in, n_out, n_out * fi, batch, limits)
            for method in methods:
                ms = dense_ms if method == "dense" else sorted(times[fo][method])
                rows.append({
                    "device": device.type, "dtype": str(dtype).split(".")[1], "threads": torch.get_num_threads(),
                    "clock": clock.__name__, "layout": "feature-major" if feature_major else "row-major",
                    "kernels": native.STATUS if device.type == "cpu" else device.type,
                    "n_in": n_in, "n_out": n_out, "batch": batch, "fo": fo, "fi": fi,
                    "density": fo / n_out, "method": method, "min_ms": round(ms[0], 4),
                    "median_ms": round(ms[len(ms) // 2], 4), "rounds": len(ms),
                    "speedup_vs_dense": round(dense_ms[0] / ms[0], 3),
                    "peak_extra_mib": round(peak[(method, n_in, n_out, fo, batch)] / 2**20, 3),
                    "limit_ms": round(limit, 4), "share_of_limit": round(limit / ms[0], 3), **limits,
                })
                r = rows[-1]
                print(f"{n_in}->{n_out} density {r['density']:.4f} (fo={fo}, fi={fi}) {method:>13}: "
                      f"{r['min_ms']:9.3f} ms  x{r['speedup_vs_dense']:6.2f} vs dense  "
                      f"peak extra {r['peak_extra_mib']:8.2f} MiB  {r['share_of_limit']:6.1%} of limit", flush=True)
    return rows


def report_targets(table: pd.DataFrame, cases) -> list[str]:
    """The issue's targets for SparseLinear, each with the value this run reached ('ok' or 'MISSED')."""
    lines = []
    sparse = table[table.method == "sparse"]
    for n_in, n_out, density, wanted in cases:
        row = sparse[(sparse.n_in == n_in) & (sparse.n_out == n_out)]
        row = row.iloc[(row.density - density).abs().argsort()].iloc[0]
        got = row.speedup_vs_dense
        lines.append(f"target {n_in}->{n_out} at {row.density:.2%}: >= {wanted:g}x dense: {got:.2f}x "
                     f"{'ok' if got >= wanted else 'MISSED'}")
    low = table[table.density <= 0.25].pivot_table(index=["n_in", "n_out", "density"], columns="method",
                                                   values="min_ms")
    for rival, factor in (("sparseprop", SPARSEPROP_TARGET), ("masked", 1.0), ("csr", 1.0)):
        if rival in low:
            ratio = low[rival] / low["sparse"]
            short = [f"{n_in}->{n_out} {d:.2%} ({r:.2f}x)" for (n_in, n_out, d), r in ratio.items() if r < factor]
            lines.append(f"target >= {factor:g}x {rival} at every density <= 25 % (min {ratio.min():.2f}x): "
                         + ("ok" if not short else "MISSED at " + ", ".join(short)))
    memory = table.pivot_table(index=["n_in", "n_out", "density"], columns="method", values="peak_extra_mib")
    above = [f"{n_in}->{n_out} {d:.2%}" for (n_in, n_out, d), row in memory.iterrows() if row["sparse"] > row["dense"]]
    lines.append(f"target peak extra memory never above dense's (max sparse/dense "
                 f"{(memory['sparse'] / memory['dense']).max():.2f}): " + ("ok" if not above else "MISSED at "
                                                                            + ", ".join(above)))
    return lines


def markdown(table: pd.DataFrame) -> str:
    """The README's table of a benchmark CSV: per case, each method's step time and SparseLinear's ratios."""
    first = table.iloc[0]
    methods = [m for m in ("dense", "sparse", "torch gathers", "sparseprop", "masked", "csr") if m in set(table.method)]
    lines = [f"{first['device']}, {first['threads']} threads, batch {first['batch']}, {first['dtype']}, "
             f"{first['layout']} x; dense GEMM {first['gemm_gflops']:g} GFLOP/s, memory {first['bandwidth_gbs']:g} GB/s "
             f"(measured in the same run); {first['kernels']}", "",
             "| layer | density | " + " | ".join(f"{m} ms" for m in methods)
             + " | sparse vs dense | sparse vs sparseprop | share of limit | peak MiB sparse / dense |",
             "|---|---|" + "---|" * (len(methods) + 4)]
    for (n_in, n_out, density), case in table.groupby(["n_in", "n_out", "density"], sort=False):
        get = case.set_index("method")
        prop = (f"{get.min_ms['sparseprop'] / get.min_ms['sparse']:.2f}x" if "sparseprop" in get.index else "-")
        lines.append(f"| {n_in}x{n_out} | {density:.2%} | " + " | ".join(f"{get.min_ms[m]:.3f}" for m in methods)
                     + f" | {get.speedup_vs_dense['sparse']:.2f}x | {prop} | {get.share_of_limit['sparse']:.0%} | "
                     f"{get.peak_extra_mib['sparse']:.2f} / {get.peak_extra_mib['dense']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path) -> bool:
    """Log-log step time against density per layer (False, and a note, where matplotlib is missing)."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False

    layers = sorted(table.groupby(["n_in", "n_out"]).groups, key=lambda s: s[0] * s[1])
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 4.2), squeeze=False)
    for ax, (n_in, n_out) in zip(axes[0], layers):
        layer = table[(table.n_in == n_in) & (table.n_out == n_out)]
        for method, points in layer.groupby("method", sort=False):
            style = "k--" if method == "dense" else "o-"
            ax.plot(points.density, points.min_ms, style, label=method, markersize=4)
        dense = layer[layer.method == "dense"].min_ms.min()
        densities = sorted(layer.density.unique())
        ax.plot(densities, [dense * d for d in densities], ":", color="grey", label="ideal (dense x density)")
        if "limit_ms" in layer:
            limit = layer[layer.method == "sparse"]
            ax.plot(limit.density, limit.limit_ms, "v", color="grey", label="machine limit")
        ax.set(xscale="log", yscale="log", xlabel="density fi / N_i", ylabel="ms per step (fwd + bwd)",
               title=f"{n_in} -> {n_out}, batch {layer.batch.iloc[0]}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    first = table.iloc[0]
    fig.suptitle(f"SparseLinear on {first.device} ({first.threads} threads, {first.dtype}, {first.layout}, {first.clock})")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return True


PARTS_CASES = [(16, 16, 0.125, None), *CASES]  # a tiny layer: the step's fixed cost


def run_parts(args, dtype) -> int:
    rows = []
    for n_in, n_out, density, _ in PARTS_CASES:
        fo = nearest_fanout(n_in, n_out, density)
        batch = min(args.batch, 16) if n_in * n_out <= 256 else args.batch
        parts = time_parts(n_in, n_out, fo, batch, 2000 if n_in * n_out <= 256 else 50, args.rounds or 5, dtype,
                           args.feature_major)
        rows.append({"threads": torch.get_num_threads(), "kernels": native.STATUS, "n_in": n_in, "n_out": n_out,
                     "batch": batch, "fo": fo, "density": fo / n_out, **parts})
        inside = ", ".join(f"{k[:-3]} {v:.3f}" for k, v in parts.items()
                           if k not in ("step_ms", "outside_native_ms", "noop_step_ms", "autograd_floor_ms"))
        print(f"{n_in}->{n_out} density {fo / n_out:.4f} batch {batch}: step {parts['step_ms']:.3f} ms; native calls "
              f"{inside}; outside them {parts['outside_native_ms']:.3f} ms; with no-op calls "
              f"{parts['noop_step_ms']:.3f} ms; an empty autograd function {parts['autograd_floor_ms']:.3f} ms",
              flush=True)
    name = "sparse_linear_parts" + ("_feature_major" if args.feature_major else "")
    with atomic_path(args.out / f"{name}.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    print(f"wrote {args.out / name}.csv")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024x1024 and the Morse junctions, 3 rounds")
    parser.add_argument("--sweep", action="store_true", help="three layers at densities 0.2 %% to 50 %%")
    parser.add_argument("--dispatch", action="store_true", help="gathers vs dense blocks (DENSE_DISPATCH_DENSITY)")
    parser.add_argument("--tiles", action="store_true",
                        help="native gathers row by row vs on packed tiles (native.TILED_SOURCE_BYTES)")
    parser.add_argument("--parts", action="store_true",
                        help="where SparseLinear's step time goes: inside each native call and outside them")
    parser.add_argument("--markdown", type=Path, metavar="CSV", help="print the Markdown table of a CSV of this "
                        "benchmark (the README's speed table) and exit")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, help="timed rounds per case (default 5, --quick 3)")
    parser.add_argument("--feature-major", action="store_true",
                        help="x and grad_y feature-major, as inside a stack of SparseLinear layers (default: "
                        "row-major, as a layer fed by data and a loss sees them)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time steps by process CPU time, not wall time: with --threads 1, ratios that a busy "
                        "shared CPU does not distort")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: JSON configs, CPU child
    args = parser.parse_args(argv)
    if args.markdown:
        if not args.markdown.is_file():
            parser.error(f"--markdown {args.markdown}: no such file; run the benchmark first")
        sys.stdout.write(markdown(pd.read_csv(args.markdown)))
        return 0
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    if args.memory_probe:
        configs = [tuple(c) for c in json.loads(args.memory_probe)]
        print(json.dumps([peak_extra_bytes(*c, device, dtype, args.feature_major) for c in configs]))
        return 0
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    # Timing, as `predsparse train` trains: no step pays page faults for its fresh buffers (the memory
    # probe above runs in a child whose malloc returns them instead, so that its peak is exact).
    keep_freed_memory()
    if device.type == "cpu" and args.dtype != "float32":
        parser.error("--dtype bfloat16 needs --device cuda (the CPU path is float32/float64)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--cpu-time needs --device cpu --threads 1 (CPU time of several threads is not a duration)")
    if (args.dispatch or args.tiles or args.parts) and device.type != "cpu":
        parser.error("--dispatch, --tiles and --parts measure the CPU path; use --device cpu")
    if (args.tiles or args.parts) and not native.AVAILABLE:
        parser.error(f"--tiles and --parts time the native kernels: {native.STATUS}")
    if args.parts:
        return run_parts(args, dtype)
    if args.dispatch:
        cases = [(n_in, n_out, d, None) for n_in, n_out in DISPATCH_LAYERS for d in DISPATCH_DENSITIES]
        methods = DISPATCH_METHODS
    elif args.tiles:
        cases = [(n_in, n_out, d, None) for n_in, n_out in TILES_LAYERS for d in TILES_DENSITIES]
        methods = TILES_METHODS
    else:
        cases = ([(n_in, n_out, d, None) for n_in, n_out in SWEEP_LAYERS for d in SWEEP_DENSITIES] if args.sweep
                 else QUICK_CASES if args.quick else CASES)
        methods = ("dense", "sparse") + (("torch gathers",) if device.type == "cpu" else ()) \
            + (("sparseprop",) if sparseprop_available(device) else ()) + ("masked", "csr")
    rounds = args.rounds or (3 if args.quick else 5)
    clock = time.process_time if args.cpu_time else time.perf_counter
    limits = measure_limits(device, dtype)
    print(f"machine: dense GEMM {limits['gemm_gflops']} GFLOP/s, memory {limits['bandwidth_gbs']} GB/s; "
          f"{native.STATUS if device.type == 'cpu' else device}", flush=True)
    table = pd.DataFrame(run(methods, cases, args.batch, rounds, device, dtype, args.feature_major, clock, limits))
    if not (args.dispatch or args.tiles):
        for line in report_targets(table, [c for c in cases if c[3] is not None]):
            print(line)
    name = "sparse_linear" + ("_dispatch" if args.dispatch else "_tiles" if args.tiles else "_sweep" if args.sweep else "")
    name += "" if (device.type, args.dtype) == ("cpu", "float32") else f"_{device.type}_{args.dtype}"
    name += "_feature_major" if args.feature_major else ""
    name += "_cputime" if args.cpu_time else ""
    with atomic_path(args.out / f"{name}.csv") as tmp:
        table.to_csv(tmp, index=False)
    drawn = plot(table, args.out / f"{name}.png")
    print(f"wrote {args.out / name}.csv" + (" and .png" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
