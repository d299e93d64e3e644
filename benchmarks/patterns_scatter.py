"""Pattern generation and scatter timings, from the paper's nets up to 4096 x 4096 at 50 % (8.4M connections).

For every case: `generate_pattern` (in memory), `Pattern.save` (compressed .npz, atomic), `load_pattern`
(full validation) and `scatter_vector` (the whole vector, equivalent junction included), each the median
of --repeats runs. Cases:
- the paper's nets with the windows of their figures (Morse, MNIST CL with a 32 x 32 image input,
  MNIST conv+2CLs and CIFAR-10 conv+2CLs / conv+3CLs with conv-feature cuboids);
- single square junctions N -> N of random patterns at 1/64, 1/16 and 1/2 density (N up to 4096);
- two-junction nets, whose equivalent junction dominates the scatter cost;
- the other kinds (dense, planned, unstructured) on 1024 -> 1024.
Writes results/benchmarks/patterns_scatter.csv and patterns_scatter.png (time vs connections, log-log).

    python benchmarks/patterns_scatter.py            # every case, 3 repeats
    python benchmarks/patterns_scatter.py --quick    # small cases, 1 repeat (seconds)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from predsparse.io import atomic_savefig, atomic_write_csv
from predsparse.patterns import load_pattern
from predsparse.patterns.generate import generate_pattern
from predsparse.scatter import scatter_vector
from plotting import pyplot_or_none  # benchmarks/plotting.py, beside this script

COLUMNS = ("group", "case", "kind", "net", "fanouts", "connections", "generate_s", "save_s", "load_s",
           "scatter_s", "repeats", "scatter")

# (group, case, net, fan-outs, kind, options); options may hold shapes and clusters.
PAPER = [
    ("paper", "Morse CL 12.5% (Fig. 7a)", (64, 1024, 64), (128, 8), "random", {}),
    ("paper", "Morse CL 50%", (64, 1024, 64), (512, 32), "random", {}),
    ("paper", "MNIST CL (Fig. 7b)", (1024, 64, 16), (1, 4), "random", {"shapes": ((1, 32, 32), None, None)}),
    ("paper", "MNIST conv+2CLs", (3136, 784, 10), (16, 10), "random", {"shapes": ((64, 7, 7), None, None)}),
    ("paper", "CIFAR-10 conv+2CLs (Fig. 7c)", (4096, 512, 16), (1, 2), "random",
     {"shapes": ((256, 4, 4), None, None)}),
    ("paper", "CIFAR-10 conv+3CLs", (4096, 512, 256, 16), (1, 2, 16), "random",
     {"shapes": ((256, 4, 4), None, None, None)}),
]
QUICK_SIZES = (256, 1024)
FULL_SIZES = (256, 1024, 4096)
DENSITIES = (64, 16, 2)  # 1/64, 1/16, 1/2


def cases(quick: bool) -> list[tuple]:
    found = list(PAPER)
    for n in QUICK_SIZES if quick else FULL_SIZES:
        for inverse in DENSITIES:
            found.append(("single junction", f"{n}x{n} at 1/{inverse}", (n, n), (n // inverse,), "random", {}))
    two = [(256, 1024, 256)] if quick else [(256, 1024, 256), (1024, 4096, 1024)]
    for net in two:
        for inverse in (64, 8):
            fanouts = (net[1] // inverse, net[2] // inverse)
            found.append(("two junctions", f"{'-'.join(map(str, net))} at 1/{inverse}", net, fanouts, "random", {}))
    found += [
        ("kinds", "1024x1024 dense", (1024, 1024), (1024,), "dense", {}),
        ("kinds", "1024x1024 at 1/16 planned f=4,b=4", (1024, 1024), (64,), "planned",
         {"clusters": {1: {"f": 4, "b": 4}}}),
        ("kinds", "1024x1024 at 1/16 unstructured", (1024, 1024), (64,), "unstructured", {}),
    ]
    return found


def median_time(action, repeats: int):
    """(median seconds, last result) of `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run(quick: bool, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pattern.npz"
        for group, case, net, fanouts, kind, options in cases(quick):
            generate_s, pattern = median_time(lambda: generate_pattern(net, fanouts, kind, seed=0, **options), repeats)
            save_s, _ = median_time(lambda: pattern.save(path), repeats)
            load_s, loaded = median_time(lambda: load_pattern(path), repeats)
            scatter_s, result = median_time(lambda: scatter_vector(loaded), repeats)
            connections = sum(pattern.num_weights(i) for i in range(pattern.num_junctions))
            rows.append({
                "group": group, "case": case, "kind": kind, "net": "-".join(map(str, net)),
                "fanouts": "-".join(map(str, fanouts)), "connections": connections,
                "generate_s": round(generate_s, 5), "save_s": round(save_s, 5), "load_s": round(load_s, 5),
                "scatter_s": round(scatter_s, 5), "repeats": repeats, "scatter": round(result.scatter, 5),
            })
            print(f"{case:<36} {connections:>9} conn  generate {generate_s:7.3f} s  save {save_s:6.3f} s  "
                  f"load {load_s:6.3f} s  scatter {scatter_s:7.3f} s  S = {result.scatter:.4f}", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> bool:
    """Generate, save, load and scatter seconds against connections; False (and a note) without matplotlib."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    markers = {"paper": "o", "single junction": "s", "two junctions": "^", "kinds": "D"}
    for ax, (steps, title) in zip(axes, ((("generate_s", "save_s", "load_s"), "pattern: generate, save, load"),
                                         (("scatter_s",), "scatter vector"))):
        for colour, step in enumerate(steps):
            for group, marker in markers.items():
                sel = [r for r in rows if r["group"] == group]
                # Times below 10 us are drawn at 10 us so that the log axis can show them.
                ax.scatter([r["connections"] for r in sel], [max(r[step], 1e-5) for r in sel], marker=marker,
                           color=f"C{colour}", label=f"{step.removesuffix('_s')}, {group}", alpha=0.8)
        ax.set(xscale="log", yscale="log", xlabel="connections (all junctions)", title=title)
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
        ax.legend(fontsize=6, loc="upper left")
    axes[0].set_ylabel("seconds (median)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only, 1 repeat unless --repeats")
    parser.add_argument("--repeats", type=int, help="timed runs per step, median reported (default 3, quick 1)")
    parser.add_argument("--out", default="results/benchmarks", help="folder of patterns_scatter.csv and .png")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats {repeats}: must be at least 1")
    rows = run(args.quick, repeats)
    out = Path(args.out)
    atomic_write_csv(out / "patterns_scatter.csv", COLUMNS, rows)
    drawn = plot(rows, out / "patterns_scatter.png")
    print(f"wrote {out / 'patterns_scatter.csv'}" + (f" and {out / 'patterns_scatter.png'}" if drawn else ""))


if __name__ == "__main__":
    main()
