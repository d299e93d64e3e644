"""CSC layer speed: forward + backward time vs dense and vs random pre-defined sparse of the same weights.

For N in {1024, 4096} (square layers N -> N), batch 256, one training step's products (forward, input
gradient, weight gradient) of:
- dense `nn.Linear(N, N)`;
- `CSCLinear` with L = 2 and L = 3 support layers at the sparsest radices (`csc_radices`), no activation
  (reconstruction from the abstract: mixed-radix cyclic support layers);
- `SparseLinear` with a random pattern of fan-in fi = sum(r_l), i.e. the same N * sum(r_l) weights in
  one junction.
Layers are timed round-robin and the best step is reported (the median too), so that load from other
processes hits every layer alike. Writes results/benchmarks/csc.csv and csc.png (best time per step, log
scale, speed-up over dense on top).

    python benchmarks/csc.py                      # CPU, N = 1024 and 4096
    python benchmarks/csc.py --device all         # also CUDA when a GPU is present
    python benchmarks/csc.py --sizes 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from predsparse.io import atomic_savefig, atomic_write_csv
from predsparse.nn.csc import CSCLinear
from predsparse.nn.sparse_linear import SparseLinear
from predsparse.patterns.csc import csc_radices
from predsparse.patterns.generate import random_fan_in_index
from plotting import pyplot_or_none  # benchmarks/plotting.py, beside this script

COLUMNS = ("device", "threads", "n", "batch", "method", "radices", "weights", "density", "median_ms", "min_ms",
           "repeats", "speedup_vs_dense")


def layers(n: int, device: torch.device) -> list[tuple[str, str, nn.Module]]:
    """(method, radices, layer) for one size N."""
    found = [("dense", "", nn.Linear(n, n))]
    for num_support in (2, 3):
        radices = csc_radices(n, num_support)
        label = ",".join(map(str, radices))
        found.append((f"csc L={num_support}", label, CSCLinear(n, n, radices)))
        index = random_fan_in_index(n, n, sum(radices), np.random.default_rng(0))
        found.append((f"random fi={sum(radices)}", label, SparseLinear(n, n, index)))
    return [(method, radices, layer.to(device)) for method, radices, layer in found]


def weights(layer: nn.Module) -> int:
    return sum(p.numel() for name, p in layer.named_parameters() if name.endswith("weight"))


def step_ms(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> float:
    """Milliseconds of one forward + backward (input and weight gradients)."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    layer(x).backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1e3


def run(sizes: list[int], batch: int, repeats: int, devices: list[str]) -> list[dict]:
    """Time every layer of a size round-robin (two warm-up rounds), so that load changes hit all alike."""
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        for n in sizes:
            torch.manual_seed(0)
            x = torch.randn(batch, n, device=device, requires_grad=True)
            grad = torch.randn(batch, n, device=device)
            found = layers(n, device)
            times = [[] for _ in found]
            for round_ in range(repeats + 2):
                for layer_times, (_, _, layer) in zip(times, found):
                    ms = step_ms(layer, x, grad)
                    if round_ >= 2:
                        layer_times.append(ms)
            dense_ms = min(times[0])
            for (method, radices, layer), layer_times in zip(found, times):
                count, best = weights(layer), min(layer_times)
                rows.append({
                    "device": device_name, "threads": torch.get_num_threads(), "n": n, "batch": batch,
                    "method": method, "radices": radices, "weights": count, "density": count / (n * n),
                    "median_ms": round(statistics.median(layer_times), 4), "min_ms": round(best, 4),
                    "repeats": repeats, "speedup_vs_dense": round(dense_ms / best, 3),
                })
                print(f"{device_name} N={n} {method:<14} radices {radices or '-':<9} weights {count:>9} "
                      f"min {best:9.3f} ms  x{dense_ms / best:.2f} vs dense", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> bool:
    """CSC, sparse and dense step times against N, one line per method; False (and a note) without matplotlib."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False

    groups = sorted({(r["device"], r["n"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.8), squeeze=False)
    for ax, (device, n) in zip(axes[0], groups):
        sel = [r for r in rows if (r["device"], r["n"]) == (device, n)]
        bars = ax.bar(range(len(sel)), [r["min_ms"] for r in sel],
                      color=["0.5" if r["method"] == "dense" else "C0" if r["method"].startswith("csc") else "C1"
                             for r in sel])
        for bar, r in zip(bars, sel):
            ax.annotate(f"x{r['speedup_vs_dense']:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(sel)), [f"{r['method']}\n{r['radices']}" for r in sel], fontsize=7)
        ax.set_yscale("log")
        ax.set(title=f"{device}, N={n}, batch {sel[0]['batch']}", ylabel="forward+backward, best of runs (ms)")
    fig.suptitle("CSC layers (reconstruction from the abstract) vs dense and random sparse of equal weights",
                 fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096", help="comma-separated N (default 1024,4096)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per layer (best and median reported)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu")
    parser.add_argument("--out", default="results/benchmarks", help="folder of csc.csv and csc.png")
    args = parser.parse_args()
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    if "cuda" in devices[args.device] and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    rows = run([int(n) for n in args.sizes.split(",")], args.batch, args.repeats, devices[args.device])
    out = Path(args.out)
    atomic_write_csv(out / "csc.csv", COLUMNS, rows)
    drawn = plot(rows, out / "csc.png")
    print(f"wrote {out / 'csc.csv'}" + (f" and {out / 'csc.png'}" if drawn else ""))


if __name__ == "__main__":
    main()
