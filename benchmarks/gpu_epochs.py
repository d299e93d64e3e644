"""Training-epoch time of the Morse and MNIST CL nets on one device: dense against SparseLinear junctions.

An epoch is `predsparse.train.train_epoch` (seeded shuffle, mini-batches, forward + backward + optimiser
step, each dataset's default hyper-parameters) over random data of the dataset's shape (speed does not
depend on the values):
- morse: (64, 1024, 64), 320,000 samples (the paper's), SGD; the configurations of benchmarks/train_epoch.py
  (dense, then both junctions at 50 % down to 1.5625 %);
- mnist: (784, 224, 10), 60,000 samples of 784 inputs and 10 classes, Adam; dense and junction 1 at 50 %,
  25 %, 12.5 % and 1.8 % (fo_1 = 112, 56, 28, 4; junction 2 dense), the Fig. 2c family.
After an untimed warm-up epoch on about 4096 samples per configuration (lazy imports, allocator, Triton
autotuning of every batch shape), configurations are timed round-robin; the best and the median epoch
are reported. Writes OUT/gpu_epochs.csv. benchmarks/gpu_check.sh runs it on CUDA; on the CPU, use small
--samples.

    python benchmarks/gpu_epochs.py --device cuda
    python benchmarks/gpu_epochs.py --dataset mnist --samples 2048 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_epoch import CONFIGS as MORSE_CONFIGS, epoch_seconds  # noqa: E402  (benchmarks/train_epoch.py)

from predsparse.defaults import HYPERPARAMETERS  # noqa: E402
from predsparse.io import atomic_write_csv  # noqa: E402
from predsparse.nn.models import build_model, count_parameters  # noqa: E402
from predsparse.patterns import generate_pattern  # noqa: E402
from predsparse.spec import RunSpec  # noqa: E402
from predsparse.train import make_optimizer, train_epoch  # noqa: E402

# dataset -> (net, samples per epoch, classes, ((label, fan-outs), ...)); the first configuration is dense
DATASETS = {
    "morse": ((64, 1024, 64), 320_000, 64, MORSE_CONFIGS),
    "mnist": ((784, 224, 10), 60_000, 10,
              (("dense", (224, 10)), ("50%", (112, 10)), ("25%", (56, 10)), ("12.5%", (28, 10)),
               ("1.8%", (4, 10)))),
}
COLUMNS = ("dataset", "device", "net", "samples", "batch", "config", "fanouts", "density", "cl_weights", "min_s",
           "median_s", "repeats", "samples_per_s", "speedup_vs_dense")
WARMUP_SAMPLES = 4096


def setup(dataset: str, net, fanouts, dense: bool, device: torch.device):
    pattern = generate_pattern(net, fanouts, "dense" if dense else "random", 0)
    spec = RunSpec(study="bench", run_name="bench", dataset=dataset, data="", pattern="", device=device.type,
                   **HYPERPARAMETERS[dataset, "mlp"])
    torch.manual_seed(0)
    model = build_model(spec.model, pattern, spec.num_classes, init=spec.init, dataset=spec.dataset).to(device)
    return spec, model, make_optimizer(spec, model)


def time_dataset(dataset: str, samples: int | None, repeats: int, device: torch.device) -> list[dict]:
    net, default_samples, classes, configs = DATASETS[dataset]
    samples = samples or default_samples
    x = torch.rand(samples, net[0], device=device)
    y = torch.randint(0, classes, (samples,), device=device)
    runs = {label: setup(dataset, net, fanouts, i == 0, device) for i, (label, fanouts) in enumerate(configs)}
    for spec, model, optimizer in runs.values():
        # ending on a batch of the epoch's last size: that shape's autotuning is not timed either
        warm = min(samples, WARMUP_SAMPLES + samples % spec.batch_size)
        train_epoch(model, optimizer, x[:warm], y[:warm], spec.batch_size, torch.Generator().manual_seed(0),
                    lambda *_: None)
    times = {label: [] for label in runs}
    for _ in range(repeats):
        for label, (spec, model, optimizer) in runs.items():
            times[label].append(epoch_seconds(spec, model, optimizer, x, y, device))
    dense_best = min(times[configs[0][0]])
    dense_weights = sum(a * b for a, b in zip(net, net[1:]))
    rows = []
    for label, fanouts in configs:
        spec, model, _ = runs[label]
        weights = count_parameters(model)["cl_weights"]
        best = min(times[label])
        rows.append({
            "dataset": dataset, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "net": "-".join(map(str, net)), "samples": samples, "batch": spec.batch_size, "config": label,
            "fanouts": ",".join(map(str, fanouts)), "density": round(weights / dense_weights, 5), "cl_weights": weights,
            "min_s": round(best, 4), "median_s": round(statistics.median(times[label]), 4), "repeats": repeats,
            "samples_per_s": round(samples / best), "speedup_vs_dense": round(dense_best / best, 3),
        })
        print(f"{dataset} {label:>8}: {best:8.3f} s per epoch (median {rows[-1]['median_s']:.3f}), "
              f"{rows[-1]['samples_per_s']} samples/s, x{rows[-1]['speedup_vs_dense']:.2f} vs dense", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--samples", type=int, help="samples per epoch (default: the dataset's, 320,000 / 60,000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per configuration")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="folder of gpu_epochs.csv")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    if args.repeats < 1 or (args.samples is not None and args.samples < 1):
        parser.error("--repeats and --samples must be at least 1")
    rows = []
    for dataset in DATASETS if args.dataset == "all" else [args.dataset]:
        rows += time_dataset(dataset, args.samples, args.repeats, device)
    atomic_write_csv(args.out / "gpu_epochs.csv", COLUMNS, rows)
    print(f"wrote {args.out / 'gpu_epochs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
