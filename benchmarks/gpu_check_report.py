"""The summary of benchmarks/gpu_check.sh: one long-format CSV and one Markdown page from its work folder.

The work folder holds steps.tsv (one line per step: name, exit status, seconds, time limit, note), env.json
(the device and versions, from the script's CUDA probe), and each step's log and outputs:
- triton_tests: triton_tests.xml, pytest's JUnit report of tests/test_triton_kernels.py;
- layer_<dtype>_tf32_<on|off>/sparse_linear_cuda_<dtype>.csv (benchmarks/sparse_linear.py --quick);
- dispatch/sparse_linear_dispatch_cuda_float32.csv (--dispatch), from which DENSE_DISPATCH_DENSITY["cuda"]
  is derived: per layer, the density from which dense blocks beat the Triton gathers at every larger
  density of the sweep (interpolated where the time ratio crosses 1), and over layers the largest;
- epochs_<dataset>/gpu_epochs.csv (benchmarks/gpu_epochs.py).
A step fails when it exits non-zero, is not run (time budget), or leaves no readable result. CSV columns:
check, name, value, unit, dtype, tf32, layer, density, method, detail. Exit status 1 when a step failed,
3 when this script itself fails.
Standard library only: it must run wherever the check does.

    python benchmarks/gpu_check_report.py results/benchmarks/gpu_check --csv results/benchmarks/gpu_check.csv \
        --md results/benchmarks/gpu_check.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

COLUMNS = ("check", "name", "value", "unit", "dtype", "tf32", "layer", "density", "method", "detail")
LAYER_STEP = re.compile(r"layer_(float32|bfloat16)_tf32_(on|off)$")
LOG_TAIL = 25


class StepFailed(Exception):
    """A step ran but its result is missing or wrong; `lines`: what it did give, for the summary."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or []


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise StepFailed(f"no result file {path.name}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise StepFailed(f"{path.name} has no rows")
    return rows


def fmt(value: float, digits: int = 3) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def layer_name(row: dict) -> str:
    return f"{row['n_in']}x{row['n_out']}"


# ---------------------------------------------------------------------------------------------- checks
# Each takes (work folder, step name, CSV row maker, env.json) and returns Markdown lines; raises StepFailed.


def triton_tests(work: Path, name: str, add, env: dict) -> list[str]:
    path = work / "triton_tests.xml"
    if not path.is_file():
        raise StepFailed("pytest wrote no JUnit report")
    cases = ET.parse(path).getroot().iter("testcase")
    outcome = {}
    for case in cases:
        kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        outcome[f"{case.get('name')}"] = kind
    counts = {k: sum(v == k for v in outcome.values()) for k in ("passed", "failure", "error", "skipped")}
    for kind, n in counts.items():
        add(check=name, name={"failure": "failed", "error": "errors"}.get(kind, kind), value=n, unit="tests")
    compiled = outcome.get("test_kernels_in_the_interpreter") in (None, "skipped")
    lines = [f"{counts['passed']} passed, {counts['failure']} failed, {counts['error']} errors, "
             f"{counts['skipped']} skipped" + (" (compiled kernels on the GPU; the interpreter test skips there)."
                                               if compiled else ".")]
    bad = [case for case, kind in outcome.items() if kind in ("failure", "error")]
    if bad:
        lines.append("Failed: " + ", ".join(f"`{case}`" for case in bad))
    if not compiled:
        raise StepFailed("the kernels ran in the interpreter, not compiled (pytest saw no CUDA device)", lines)
    if counts["passed"] == 0:
        raise StepFailed("no kernel test passed", lines)
    return lines


def layer_run(work: Path, name: str, add, env: dict) -> list[str]:
    dtype, tf32 = LAYER_STEP.match(name).groups()
    rows = read_csv(work / name / f"sparse_linear_cuda_{dtype}.csv")
    for row in rows:
        common = dict(check="layer", dtype=dtype, tf32=tf32, layer=layer_name(row), density=row["density"],
                      method=row["method"], detail=f"batch {row['batch']}, fo={row['fo']}, fi={row['fi']}")
        add(name="min_ms", value=row["min_ms"], unit="ms", **common)
        add(name="speedup_vs_dense", value=row["speedup_vs_dense"], unit="x", **common)
        add(name="peak_extra_mib", value=row["peak_extra_mib"], unit="MiB", **common)
    lines = [f"**{dtype}, TF32 {tf32}** (batch {rows[0]['batch']}; dense = nn.Linear on cuBLAS; x = its best time / "
             "the method's):", "",
             "| layer | density | dense ms | sparse ms | sparse x | masked x | csr x | sparse / dense peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    cells = {(layer_name(r), float(r["density"]), r["method"]): r for r in rows}
    for layer, density in sorted({(layer, density) for layer, density, _ in cells}):
        get = lambda method, key: cells.get((layer, density, method), {}).get(key, "-")  # noqa: E731
        lines.append(f"| {layer} | {density:.2%} | {get('dense', 'min_ms')} | {get('sparse', 'min_ms')} | "
                     f"{get('sparse', 'speedup_vs_dense')} | {get('masked', 'speedup_vs_dense')} | "
                     f"{get('csr', 'speedup_vs_dense')} | {get('sparse', 'peak_extra_mib')} / "
                     f"{get('dense', 'peak_extra_mib')} |")
    log = work / f"{name}.log"
    targets = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("target ")] \
        if log.is_file() else []
    if targets:
        lines += ["", "Targets (benchmarks/sparse_linear.py):", ""]
        lines += [f"- {target.removeprefix('target ')}" for target in targets]
    return lines


def crossover(points: list[tuple[float, float, float]]) -> float:
    """Density from which dense blocks beat gathers at every larger swept density; points are (density,
    gathers ms, dense blocks ms) sorted by density. Interpolated (log time ratio, linear in density)
    between the last density gathers win and the next; inf where dense blocks lose at the largest density."""
    wins = [blocks < gathers for _, gathers, blocks in points]
    if not wins[-1]:
        return math.inf
    first = len(wins) - 1
    while first > 0 and wins[first - 1]:
        first -= 1
    if first == 0:
        return points[0][0]
    (d0, g0, b0), (d1, g1, b1) = points[first - 1], points[first]
    r0, r1 = math.log(g0 / b0), math.log(g1 / b1)  # <= 0 at d0 (gathers win), > 0 at d1
    return d0 + (d1 - d0) * (0 - r0) / (r1 - r0)


def dispatch(work: Path, name: str, add, env: dict) -> list[str]:
    rows = read_csv(work / name / "sparse_linear_dispatch_cuda_float32.csv")
    times = {(layer_name(r), float(r["density"]), r["method"]): float(r["min_ms"]) for r in rows}
    for row in rows:
        add(check=name, name="min_ms", value=row["min_ms"], unit="ms", dtype=row["dtype"], tf32="off",
            layer=layer_name(row), density=row["density"], method=row["method"])
    lines = ["Triton gathers against dense blocks (SparseLinear forced onto each; float32, TF32 off: torch's "
             "default), ms per step:", "",
             "| layer | density | gathers | dense blocks | nn.Linear | gathers / blocks |", "|---|---|---|---|---|---|"]
    per_layer = {}
    for layer in sorted({layer for layer, _, _ in times}, key=lambda s: [int(n) for n in s.split("x")]):
        points = []
        for density in sorted({d for l, d, _ in times if l == layer}):
            g, b = times.get((layer, density, "gathers")), times.get((layer, density, "dense blocks"))
            dense = times.get((layer, density, "dense"), math.nan)
            if g is None or b is None:
                raise StepFailed(f"{layer} at {density}: gathers or dense blocks missing")
            points.append((density, g, b))
            lines.append(f"| {layer} | {density:.3f} | {g} | {b} | {dense} | {g / b:.2f} |")
        per_layer[layer] = crossover(points)
        add(check=name, name="crossover_density", value=fmt(per_layer[layer]), unit="density", dtype="float32",
            tf32="off", layer=layer, detail="dense blocks faster from here at every larger swept density")
    proposed = max(per_layer.values())
    add(check=name, name="DENSE_DISPATCH_DENSITY[cuda]", value=fmt(proposed), unit="density", dtype="float32",
        tf32="off", detail="largest crossover over the layers (inf: dense blocks never faster at the top density)")
    lines += ["", "Crossover (dense blocks faster from this density up): "
              + ", ".join(f"{layer} {fmt(d)}" for layer, d in per_layer.items()) + ".",
              f"**Measured `DENSE_DISPATCH_DENSITY[\"cuda\"]` = {fmt(proposed)}** (the largest; in "
              f"src/predsparse/nn/functional.py it is now {env.get('DENSE_DISPATCH_DENSITY', '?')})."]
    return lines


def epochs(work: Path, name: str, add, env: dict) -> list[str]:
    rows = read_csv(work / name / "gpu_epochs.csv")
    lines = [f"{rows[0]['dataset']} ({rows[0]['net']}), {rows[0]['samples']} samples, batch {rows[0]['batch']}, "
             f"best of {rows[0]['repeats']} epochs:", "",
             "| config | fan-outs | CL density | epoch s | samples/s | x dense |", "|---|---|---|---|---|---|"]
    for row in rows:
        common = dict(check="epoch", layer=row["net"], density=row["density"], method=row["config"],
                      dtype="float32", tf32="off",
                      detail=f"{row['dataset']}, fan-outs {row['fanouts']}, {row['samples']} samples")
        add(name=f"{row['dataset']}_epoch_s", value=row["min_s"], unit="s", **common)
        add(name=f"{row['dataset']}_speedup_vs_dense", value=row["speedup_vs_dense"], unit="x", **common)
        lines.append(f"| {row['config']} | {row['fanouts']} | {float(row['density']):.2%} | {row['min_s']} | "
                     f"{row['samples_per_s']} | {row['speedup_vs_dense']} |")
    return lines


SECTIONS = (
    ("1. Triton kernel tests, compiled (tests/test_triton_kernels.py)", lambda n: n == "triton_tests", triton_tests),
    ("2. SparseLinear against cuBLAS (benchmarks/sparse_linear.py --device cuda --quick)",
     lambda n: bool(LAYER_STEP.match(n)), layer_run),
    ('3. DENSE_DISPATCH_DENSITY["cuda"] (benchmarks/sparse_linear.py --dispatch --quick)',
     lambda n: n == "dispatch", dispatch),
    ("4. Training epochs (benchmarks/gpu_epochs.py)", lambda n: n.startswith("epochs_"), epochs),
)


def read_steps(work: Path) -> list[dict]:
    steps = []
    path = work / "steps.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, seconds, limit, note = (line.split("\t") + [""] * 5)[:5]
        steps.append({"name": name, "rc": int(rc), "seconds": float(seconds), "limit": limit, "note": note})
    return steps


def log_tail(work: Path, name: str) -> list[str]:
    log = work / f"{name}.log"
    text = log.read_text(errors="replace").splitlines()[-LOG_TAIL:] if log.is_file() else ["(no log)"]
    return [f"`{name}` log, last lines:", "", "```", *text, "```"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the script's work folder")
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--md", type=Path, required=True)
    parser.add_argument("--total-s", type=float, help="wall time of the whole check")
    args = parser.parse_args(argv)
    work = args.work
    env = json.loads((work / "env.json").read_text()) if (work / "env.json").is_file() else {}
    steps = read_steps(work)
    rows: list[dict] = []

    def add(**row):
        rows.append({column: row.get(column, "") for column in COLUMNS})

    for key, value in env.items():
        add(check="env", name=key, detail=value)
    sections: dict[str, list[str]] = {title: [] for title, _, _ in SECTIONS}
    for step in steps:
        name, problem = step["name"], None
        if step["note"]:
            problem = step["note"]
        elif step["rc"] in (124, 137):
            problem = f"timed out after {step['limit']} s"
        elif step["rc"] != 0:
            problem = f"exit status {step['rc']}"
        title, reader = next(((t, r) for t, match, r in SECTIONS if match(name)), (None, None))
        body: list[str] = []
        if reader is not None and not step["note"]:
            try:
                body = reader(work, name, add, env)
            except StepFailed as error:
                # a step that failed and left nothing: its exit status says it all
                problem = f"{problem}; {error}" if problem and error.lines else problem or str(error)
                body = error.lines
            except Exception as error:  # a malformed result: the summary still gets written
                unreadable = f"unreadable result ({type(error).__name__}: {error})"
                problem = f"{problem}; {unreadable}" if problem else unreadable
        step["problem"] = problem
        add(check=name, name="ok", value=int(problem is None), unit="bool", detail=problem or "")
        add(check=name, name="exit_status", value=step["rc"], unit="")
        add(check=name, name="seconds", value=f"{step['seconds']:.1f}", unit="s")
        if title is not None:
            sections[title] += [f"*{name}*: " + ("ok" if problem is None else f"**FAILED: {problem}**"), ""]
            sections[title] += body + ([""] if body else [])
            if problem is not None and not step["note"]:
                sections[title] += log_tail(work, name) + [""]
    failed = [s for s in steps if s["problem"] is not None]

    md = [f"# GPU check: {env.get('device', 'unknown device')}", "",
          f"{env.get('date', '')}, commit {env.get('commit', 'unknown')}; torch {env.get('torch', '?')}, "
          f"CUDA {env.get('cuda', '?')}, triton {env.get('triton', '?')}, python {env.get('python', '?')}"
          + (f"; {args.total_s:.0f} s in all" if args.total_s is not None else "") + ".", "",
          ("**All steps passed.**" if not failed and steps else
           f"**{len(failed)} of {len(steps)} steps FAILED**: " + ", ".join(s["name"] for s in failed) + "."
           if steps else "**No step ran.**"), "",
          "| step | result | seconds | time limit s |", "|---|---|---|---|"]
    md += [f"| {s['name']} | {'ok' if s['problem'] is None else 'FAILED: ' + s['problem']} | {s['seconds']:.1f} | "
           f"{s['limit']} |" for s in steps]
    for title, body in sections.items():
        if body:
            md += ["", f"## {title}", "", *body]
    md += ["", f"Every number: {args.csv.name} (long format: {', '.join(COLUMNS)}); logs and raw CSVs: {work}/.", ""]

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text("\n".join(md))
    print(f"wrote {args.csv} and {args.md}: " + ("all steps passed" if not failed and steps else
                                                f"{len(failed)} of {len(steps)} steps failed"))
    return 1 if failed or not steps else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a bug here must not read as "a step failed" (exit status 1) to gpu_check.sh
        traceback.print_exc()
        sys.exit(3)
