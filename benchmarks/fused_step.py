"""One Morse training step: the fused native step against the autograd path, at every fan-out of the preset.

For the net (64, 1024, 64) at each fan-out pair of config/morse.yaml, batch 256, SGD with momentum and
weight decay as `predsparse.train.make_optimizer` builds it, times (best of `--rounds` x `--steps` steps,
milliseconds per step):

- `autograd`: SparseLinear layers, cross_entropy, backward, SGD.step (dense blocks from the layer's
  DENSE_DISPATCH_DENSITY up, native gathers below);
- `fused`: `predsparse.nn.fused.FusedMLP.step`, gathers at every density;
- `autograd_no_products` (fo (128, 8) only): the autograd step with the native products replaced by
  no-ops, i.e. what the step costs besides its arithmetic.

Writes results/benchmarks/fused_step.csv (and prints it). Run it on a quiet machine. `--markdown CSV` prints
the README's table of such a CSV.

    python benchmarks/fused_step.py --rounds 5
    python benchmarks/fused_step.py --markdown benchmarks/measured/fused_step_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from predsparse.allocator import keep_freed_memory
from predsparse.io import atomic_write_csv
from predsparse.nn import native
from predsparse.nn.fused import FusedMLP
from predsparse.nn.models import build_model
from predsparse.patterns import generate_pattern
from native_stand_ins import NoopNative  # benchmarks/native_stand_ins.py, beside this script

# The fan-out pairs of config/morse.yaml's random runs (Fig. 3a, 3b, 3c).
FANOUTS = [(16, 1), (32, 2), (64, 4), (128, 8), (256, 16), (512, 32), (16, 31), (128, 24), (496, 1), (16, 63),
           (256, 48), (1008, 1)]
NET = (64, 1024, 64)
COLUMNS = ("fanouts", "density_1", "density_2", "method", "threads", "ms_per_step", "fused_vs_autograd")


def _sgd(model):
    return torch.optim.SGD([{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 1e-4},
                            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                           lr=0.01, momentum=0.9)


def _best(step, rounds: int, steps: int) -> float:
    for i in range(10):
        step(i)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        best = min(best, (time.perf_counter() - start) / steps * 1e3)
    return best


def time_fanouts(fanouts, rounds: int, steps: int, batch: int = 256) -> list[dict]:
    x = torch.randn(32 * batch, NET[0])
    y = torch.randint(0, NET[-1], (len(x),))

    def picks(i):
        start = (i * batch) % (len(x) - batch)
        return torch.arange(start, start + batch)

    model = build_model("mlp", generate_pattern(list(NET), list(fanouts), "random", 0), NET[-1], init="he_dense")
    optimizer = _sgd(model)

    def autograd(i):
        idx = picks(i)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fused = FusedMLP(model, optimizer, capacity=batch)
    fused.check_samples(x, y)  # as training does, once; then every step unchecked (its picks are samples)
    times = {"autograd": _best(autograd, rounds, steps),
             "fused": _best(lambda i: fused.step(x, y, picks(i), checked=True), rounds, steps)}
    if tuple(fanouts) == (128, 8):
        real = native._native
        native._native = NoopNative(real)
        try:
            times["autograd_no_products"] = _best(autograd, rounds, steps)
        finally:
            native._native = real
    densities = [f / n for f, n in zip(fanouts, NET[1:])]
    return [{"fanouts": "-".join(map(str, fanouts)), "density_1": round(densities[0], 4),
             "density_2": round(densities[1], 4), "method": method, "threads": torch.get_num_threads(),
             "ms_per_step": round(ms, 3),
             "fused_vs_autograd": round(times["fused"] / times["autograd"], 3) if method == "fused" else ""}
            for method, ms in times.items()]


def markdown(rows: list[dict]) -> str:
    """The README's table of a CSV of this benchmark: per fan-out pair, both steps and their ratio."""
    by_pair: dict[str, dict] = {}
    for row in rows:
        by_pair.setdefault(row["fanouts"], {"row": row})[row["method"]] = float(row["ms_per_step"])
    lines = ["| fo | densities | autograd ms | fused ms | fused / autograd |", "|---|---|---|---|---|"]
    for pair, times in by_pair.items():
        row = times["row"]
        densities = f"{float(row['density_1']) * 100:.3g} / {float(row['density_2']) * 100:.3g} %"
        lines.append(f"| ({pair.replace('-', ', ')}) | {densities} | {times['autograd']:.3f} | {times['fused']:.3f} | "
                     f"{times['fused'] / times['autograd']:.2f} |")
    no_products = [t["autograd_no_products"] for t in by_pair.values() if "autograd_no_products" in t]
    if no_products:
        lines.append("")
        lines.append(f"The autograd step at fo (128, 8) with its products replaced by no-ops: {no_products[0]:.3f} ms.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, metavar="CSV",
                        help="print the README's table of a CSV of this benchmark and exit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    if args.markdown:
        if not args.markdown.is_file():
            parser.error(f"--markdown {args.markdown}: no such file; run the benchmark first")
        with args.markdown.open(newline="") as handle:
            sys.stdout.write(markdown(list(csv.DictReader(handle))))
        return 0
    if not native.AVAILABLE:
        parser.error(native.STATUS)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `predsparse train` does
    rows = []
    for fanouts in FANOUTS:
        for row in time_fanouts(fanouts, args.rounds, args.steps):
            rows.append(row)
            ratio = f"  (fused / autograd {row['fused_vs_autograd']})" if row["fused_vs_autograd"] else ""
            print(f"fo {row['fanouts']:>7} {row['method']:>21}: {row['ms_per_step']:7.3f} ms{ratio}", flush=True)
    atomic_write_csv(args.out / "fused_step.csv", COLUMNS, rows)
    print(f"wrote {args.out / 'fused_step.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
