"""Epoch time of the Morse CL net (64, 1024, 64): dense against pre-defined sparse `SparseLinear` junctions.

One epoch is the training loop of `predsparse.train` (`train_epoch`: seeded shuffle, mini-batches of 256,
SGD with momentum as for Morse, forward + backward + step) over `--samples` Morse-shaped samples (the
paper's 320,000 by default; random values: speed does not depend on them). Densities: dense (fo 1024, 64:
`nn.Linear` junctions), 50 %, 12.5 %, 3.125 % and 1.5625 % (both junctions equally dense, random
patterns). Configurations are timed round-robin so that load from other processes hits each alike; the
best and the median epoch are reported. Writes results/benchmarks/train_epoch.csv and train_epoch.png.
Target: sparse epochs faster than dense at <= 12.5 % density.

    python benchmarks/train_epoch.py                       # CPU, 320k samples, 3 epochs each
    python benchmarks/train_epoch.py --samples 64000 --repeats 2 --threads 1
    python benchmarks/train_epoch.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from predsparse.allocator import keep_freed_memory
from predsparse.io import atomic_savefig, atomic_write_csv
from predsparse.patterns import generate_pattern
from predsparse.spec import RunSpec
from predsparse.nn.models import build_model, count_parameters
from predsparse.defaults import HYPERPARAMETERS
from predsparse.train import make_optimizer, train_epoch

NET = (64, 1024, 64)
# (label, fan-outs); junction densities fo_1/1024 = fo_2/64
CONFIGS = (("dense", (1024, 64)), ("50%", (512, 32)), ("12.5%", (128, 8)), ("3.125%", (32, 2)), ("1.5625%", (16, 1)))
COLUMNS = ("device", "threads", "samples", "batch", "config", "fanouts", "density", "cl_weights", "min_s",
           "median_s", "repeats", "speedup_vs_dense")


def setup(fanouts, device):
    kind = "dense" if fanouts == CONFIGS[0][1] else "random"
    pattern = generate_pattern(NET, fanouts, kind, 0)
    spec = RunSpec(study="bench", run_name="bench", dataset="morse", data="", pattern="", device=device.type,
                   **HYPERPARAMETERS["morse", "mlp"])
    torch.manual_seed(0)
    model = build_model(spec.model, pattern, spec.num_classes, init=spec.init, dataset=spec.dataset).to(device)
    return spec, model, make_optimizer(spec, model)


def epoch_seconds(spec, model, optimizer, x, y, device) -> float:
    generator = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_epoch(model, optimizer, x, y, spec.batch_size, generator, lambda *_: None)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=320_000, help="training samples per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    parser.add_argument("--out", default="results/benchmarks", help="folder of the CSV and the plot")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `predsparse train` does
    device = torch.device(args.device)
    x = torch.rand(args.samples, NET[0], device=device)
    y = torch.randint(0, NET[-1], (args.samples,), device=device)
    runs = {label: setup(fanouts, device) for label, fanouts in CONFIGS}
    for label in runs:  # warm-up: lazy imports, allocator, kernel autotuning
        spec, model, optimizer = runs[label]
        train_epoch(model, optimizer, x[:4096], y[:4096], spec.batch_size, torch.Generator().manual_seed(0),
                    lambda *_: None)
    times = {label: [] for label in runs}
    for _ in range(args.repeats):
        for label, (spec, model, optimizer) in runs.items():
            times[label].append(epoch_seconds(spec, model, optimizer, x, y, device))

    dense_best = min(times["dense"])
    rows = []
    for label, fanouts in CONFIGS:
        model = runs[label][1]
        weights = count_parameters(model)["cl_weights"]
        rows.append({
            "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
            "threads": torch.get_num_threads(), "samples": args.samples, "batch": runs[label][0].batch_size,
            "config": label, "fanouts": ",".join(map(str, fanouts)),
            "density": weights / (2 * NET[0] * NET[1]), "cl_weights": weights,
            "min_s": round(min(times[label]), 4), "median_s": round(statistics.median(times[label]), 4),
            "repeats": args.repeats, "speedup_vs_dense": round(dense_best / min(times[label]), 2),
        })
    out = Path(args.out)
    atomic_write_csv(out / "train_epoch.csv", COLUMNS, rows)
    drawn = plot(rows, out / "train_epoch.png")
    for row in rows:
        print(f"{row['config']:>8}  {row['min_s']:8.3f} s (median {row['median_s']:.3f})  "
              f"x{row['speedup_vs_dense']:.2f} vs dense")
    print(f"wrote {out / 'train_epoch.csv'}" + (f" and {out / 'train_epoch.png'}" if drawn else ""))


def plot(rows: list[dict], path: Path) -> bool:
    """Draws the PNG; False (and a note) where matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # optional: an image without matplotlib (the GPU check's) still gets the CSV
        print(f"matplotlib is not installed: {path} not drawn")
        return False

    fig = Figure(figsize=(5, 3.5), dpi=100, layout="tight")
    ax = fig.subplots()
    densities = [row["density"] for row in rows]
    ax.loglog(densities, [row["min_s"] for row in rows], marker="o", label="measured (best epoch)")
    ax.loglog(densities, [rows[0]["min_s"] * d for d in densities], linestyle="--", label="ideal: dense x density")
    for row in rows:
        ax.annotate(f"x{row['speedup_vs_dense']}", (row["density"], row["min_s"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set(xlabel="CL density", ylabel="epoch time (s)",
           title=f"Morse (64, 1024, 64), {rows[0]['samples']} samples, {rows[0]['device']}")
    ax.legend(fontsize=8)
    atomic_savefig(fig, path)
    return True


if __name__ == "__main__":
    main()
