"""benchmarks/gpu_check.sh and what it runs, checked without a GPU.

The GPU image has torch, triton, numpy, pandas and pytest only, so the layers, models, training loop and
the benchmark scripts must import (and the benchmarks run) without mlflow, snakemake, matplotlib,
seaborn, yaml or jsonschema; without CUDA the script stops at once with exit status 2.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
ABSENT_ON_GPU_IMAGE = ("mlflow", "snakemake", "matplotlib", "seaborn", "yaml", "jsonschema")

sys.path.insert(0, str(BENCHMARKS))
import gpu_check_report  # noqa: E402
import gpu_epochs  # noqa: E402


def child_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(BENCHMARKS)]), **extra)


@pytest.mark.slow
def test_layers_training_and_benchmarks_import_and_run_without_the_pipeline_packages(tmp_path):
    code = f"""
import sys
for name in {ABSENT_ON_GPU_IMAGE!r}:
    sys.modules[name] = None  # import name now raises ImportError, as on the GPU image
import predsparse.nn, predsparse.nn.models, predsparse.train
import csc, gpu_check_report, gpu_epochs, gpu_layer, patterns_scatter, sparse_linear, train_epoch
from pathlib import Path
out = Path({str(tmp_path)!r})
assert gpu_epochs.main(["--dataset", "mnist", "--samples", "300", "--repeats", "1", "--out", str(out)]) == 0
assert not train_epoch.plot([], out / "train_epoch.png")  # no matplotlib: the PNG is skipped, not an error
loaded = [name for name in {ABSENT_ON_GPU_IMAGE!r} if sys.modules.get(name) is not None]
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "matplotlib is not installed" in done.stdout
    assert (tmp_path / "gpu_epochs.csv").read_text().count("\nmnist,") == len(gpu_epochs.DATASETS["mnist"][3])


def test_script_without_cuda_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh")],
        env=child_env(CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable, GPU_CHECK_OUT=str(out)),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("no CUDA device: ") and done.stderr.count("\n") == 1, done.stderr
    assert not out.exists()


def test_crossover_is_where_dense_blocks_win_from_on():
    # (density, gathers ms, dense blocks ms)
    assert gpu_check_report.crossover([(0.25, 1.0, 2.0), (0.5, 2.0, 1.0)]) == pytest.approx(0.375)
    assert gpu_check_report.crossover([(0.25, 2.0, 1.0), (0.5, 2.0, 1.0)]) == 0.25
    assert gpu_check_report.crossover([(0.25, 1.0, 2.0), (0.5, 1.0, 2.0)]) == float("inf")
    # a dense-blocks win below a gathers win does not count: from 0.75 on only
    points = [(0.25, 2.0, 1.0), (0.5, 1.0, 2.0), (0.75, 2.0, 1.0)]
    assert 0.5 < gpu_check_report.crossover(points) < 0.75


def test_report_records_every_failure_and_keeps_going(tmp_path):
    work = tmp_path / "gpu_check"
    (work / "epochs_mnist").mkdir(parents=True)
    (work / "env.json").write_text(json.dumps({"device": "Fake GPU", "DENSE_DISPATCH_DENSITY": "inf"}))
    (work / "epochs_mnist" / "gpu_epochs.csv").write_text(
        "dataset,device,net,samples,batch,config,fanouts,density,cl_weights,min_s,median_s,repeats,samples_per_s,"
        "speedup_vs_dense\nmnist,Fake GPU,784-224-10,60000,256,dense,\"224,10\",1.0,177856,0.5,0.5,2,120000,1.0\n")
    (work / "layer_float32_tf32_on.log").write_text("TF32 on\n")
    (work / "steps.tsv").write_text(
        "layer_float32_tf32_on\t124\t75.2\t75\t\n"  # timed out
        "dispatch\t0\t20.0\t90\t\n"  # exit 0 but no CSV
        "epochs_mnist\t0\t9.5\t45\t\n"
        "epochs_morse\t125\t0\t3\tnot run: the time budget was spent\n")
    csv_path, md_path = tmp_path / "gpu_check.csv", tmp_path / "gpu_check.md"
    assert gpu_check_report.main([str(work), "--csv", str(csv_path), "--md", str(md_path)]) == 1
    md = md_path.read_text()
    assert "**3 of 4 steps FAILED**" in md and "Fake GPU" in md
    assert "timed out after 75 s" in md and "no result file sparse_linear_dispatch_cuda_float32.csv" in md
    assert "not run: the time budget was spent" in md and "| dense | 224,10 |" in md
    rows = csv_path.read_text().splitlines()
    assert rows[0] == ",".join(gpu_check_report.COLUMNS)
    assert "epochs_mnist,ok,1,bool" in "\n".join(rows) and "dispatch,ok,0,bool" in "\n".join(rows)
    assert any(row.startswith("epoch,mnist_epoch_s,0.5,s,") for row in rows)
