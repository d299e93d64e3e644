"""Training one run: a `RunSpec` in, a run folder (`predsparse.rundir`) out.

`train_run(spec, out_dir)` trains the model of `predsparse.nn.models` on the spec's pattern and dataset:

- Optimiser: Adam or SGD with momentum; L2 as weight decay on weight tensors only (conv kernels and the CL
  weights, which in a `SparseLinear` are exactly the existing connections; biases and batch norm are not
  decayed, as with Keras kernel regularisers). Coupled L2 (added to the gradient), as in the paper's Keras.
- Data: the whole `.npz` in memory as tensors on the device; each epoch a seeded permutation, slices of it
  as mini-batches (the last one may be smaller); no augmentation.
- Per epoch: train loss/accuracy (running over the epoch's batches), validation loss/accuracy; the model
  of the best validation accuracy (first epoch on ties) is kept, and its test accuracy is reported.
  Accuracies count only real classes (`PatternNet.predict`).
- Deterministic on CPU for a seed; a checkpoint after every epoch (model, optimiser, RNG states, history,
  best model) written atomically; rerunning a killed run resumes from it and ends with the same metrics.
  `RunState` owns all of it (load, resume, save, the run's end), for `train_run` and for every run of
  `predsparse.train_group` alike; `train_run` is a loop of epochs over it.
- Progress on stderr (`Progress`): a bar on a terminal; in a log, a line per epoch and, in a slow epoch,
  a line at every tenth of it.
- A non-finite loss stops the run: `failure.json` records it and `TrainingError` is raised.
- A spec with a `method` (prune, set, rigl) hands the connections to its controller
  (`predsparse.methods.controllers`): called before every epoch and around every optimiser step, its
  state in the checkpoint. Only epochs at the weight budget can give the best model (not a pruning
  run's dense phase), and metrics.json describes the connections trained (`final_pattern.npz`), with the
  pattern file's under `initial`.

Hyper-parameters a spec does not give come from the one table of defaults, `predsparse.defaults`.
"""

from __future__ import annotations

import gc
import math
import pickle
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from predsparse import rundir
from predsparse.errors import ConfigError, DatasetError, TrainingError
from predsparse.data import load_arrays
from predsparse.provenance import git_commit, versions
from predsparse.density import pattern_density
from predsparse.io import atomic_path, atomic_savefig, atomic_write_json
from predsparse.methods.controllers import Controller, make_controller
from predsparse.nn.fused import EVAL_CAPACITY, FusedMLP
from predsparse.nn.models import PatternNet, build_model, count_macs, count_parameters
from predsparse.patterns import Pattern, load_pattern
from predsparse.scatter import scatter_vector
from predsparse.spec import RunSpec
from predsparse.tracking import RunTracker

CHECKPOINT_FORMAT = 1
# What every checkpoint holds (`_save_checkpoint` in `train_run`; a method's runs also "method").
_CHECKPOINT_KEYS = ("model", "optimizer", "best_model", "best_epoch", "history", "rng")
EVAL_BATCH = 1024  # samples per evaluation batch: its activations stay in cache (measured 1.5x faster than 4096)
_CHECK_EVERY = 16  # batches between non-finite checks (each one is a device sync)

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    return torch.device(name)


def load_data(spec: RunSpec, input_shape: tuple[int, ...], device: torch.device,
              arrays: dict | None = None) -> dict[str, torch.Tensor]:
    """The dataset's six arrays (validated by `predsparse.data.load_arrays`; read unless given) as tensors
    on `device`, inputs reshaped to the model's `input_shape`."""
    arrays = load_arrays(spec.data) if arrays is None else arrays
    size = math.prod(input_shape)
    if math.prod(arrays["xtr"].shape[1:]) != size:
        raise DatasetError(f"{spec.data}: samples have shape {list(arrays['xtr'].shape[1:])} but model {spec.model} "
                           f"takes {size} values ({'x'.join(map(str, input_shape))}); use the matching data layout")
    data = {}
    for x_name, y_name in (("xtr", "ytr"), ("xva", "yva"), ("xte", "yte")):
        y = arrays[y_name]
        if y.max() >= spec.num_classes:
            raise DatasetError(f"{spec.data}: {y_name} holds class {y.max()} but {spec.dataset} has classes "
                               f"0..{spec.num_classes - 1}")
        data[x_name] = torch.from_numpy(arrays[x_name]).reshape(len(y), *input_shape).to(device)
        data[y_name] = torch.from_numpy(y).to(device)
    return data


def make_optimizer(spec: RunSpec, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD; weight decay on weight tensors (ndim >= 2: conv kernels, CL weights) only."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)


@torch.no_grad()
def evaluate(model: PatternNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy (over all outputs) and accuracy (over real classes) of `model` on (x, y)."""
    model.eval()
    if FusedMLP.reason(model) is None:  # the native forward and loss in one call per batch
        loss_sum, correct = FusedMLP(model, capacity=EVAL_CAPACITY).evaluate(x, y)
        return loss_sum / len(x), correct / len(x)
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start:start + EVAL_BATCH])
        target = y[start:start + EVAL_BATCH]
        loss += nn.functional.cross_entropy(logits, target, reduction="sum")
        correct += (model.predict(logits) == target).sum()
    return loss.item() / len(x), correct.item() / len(x)


class Progress:
    """Progress on stderr. On a terminal: a tqdm bar over the epoch's batches with loss and accuracy (redrawn
    at most 5 times a second; a bar of our own where tqdm is not installed). In a log (no terminal): a line
    per epoch, and within an epoch that is slow (projected to take `SLOW_EPOCH_S` or more) a line at every
    tenth of it, so minutes-long epochs are not silent and fast ones log nothing more. Training reports
    batches only at its non-finite checks (every `_CHECK_EVERY` batches, a device sync anyway), and the bar
    is updated by those chunks, so neither costs anything per step.
    """

    SLOW_EPOCH_S = 10.0
    LOG_EVERY = 10  # percent of an epoch between log lines
    REDRAW_S = 0.2  # least time between redraws of the bar

    def __init__(self, name: str, epochs: int, batches: int, clock=time.monotonic):
        self.name, self.epochs, self.batches = name, epochs, batches
        self.tty = sys.stderr.isatty()
        self.clock = clock
        self._last = 0.0
        self._started: float | None = None
        self._next = self.LOG_EVERY
        self._bar = None  # the epoch's tqdm bar

    def start_epoch(self, epoch: int) -> None:
        self.close()
        self._started, self._next = self.clock(), self.LOG_EVERY
        if self.tty:
            self._bar = _tqdm_bar(f"{self.name} {epoch}/{self.epochs}", self.batches)

    def batch(self, epoch: int, done: int, loss: float, acc: float) -> None:
        if self.tty:
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", refresh=False)
                self._bar.update(done - self._bar.n)
            else:
                self._own_bar(epoch, done, loss, acc)
            return
        now = self.clock()
        if self._started is None:
            self._started = now
        percent = 100 * done // self.batches
        if percent < self._next or done >= self.batches:
            return
        self._next = (percent // self.LOG_EVERY + 1) * self.LOG_EVERY
        spent = now - self._started
        total = spent * self.batches / done
        if total >= self.SLOW_EPOCH_S:
            sys.stderr.write(f"{self.name} epoch {epoch}/{self.epochs}: {percent}% ({done}/{self.batches} batches) "
                             f"loss {loss:.4f} acc {acc:.4f}, {spent:.0f} s, ~{total - spent:.0f} s left\n")
            sys.stderr.flush()

    def _own_bar(self, epoch: int, done: int, loss: float, acc: float) -> None:
        now = self.clock()
        if now - self._last < self.REDRAW_S and done < self.batches:
            return
        self._last = now
        filled = int(30 * done / self.batches)
        sys.stderr.write(f"\r{self.name} {epoch}/{self.epochs} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{done}/{self.batches} loss {loss:.4f} acc {acc:.4f}")
        sys.stderr.flush()

    def close(self) -> None:
        """Take the bar off the terminal (the epoch line, or an error, follows)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def epoch(self, row: dict) -> None:
        self.close()
        line = (f"{self.name} epoch {row['epoch']}/{self.epochs} train_loss {row['train_loss']:.4f} "
                f"train_acc {row['train_acc']:.4f} val_loss {row['val_loss']:.4f} val_acc {row['val_acc']:.4f} "
                f"({row['wall_time_s']:.1f} s)")
        sys.stderr.write(("\r" + line + "\033[K\n") if self.tty else line + "\n")
        sys.stderr.flush()


def _tqdm_bar(description: str, batches: int):
    """A tqdm bar of `batches` on stderr, None where tqdm is not installed (the GPU check image)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=batches, desc=description, unit="batch", file=sys.stderr, leave=False,
                mininterval=Progress.REDRAW_S, dynamic_ncols=True)


def train_epoch(model: PatternNet, optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                generator: torch.Generator, on_batch, controller: Controller | None = None,
                first_step: int = 0) -> tuple[float, float]:
    """One pass over (x, y) in a seeded random order; returns mean loss and accuracy over the epoch.

    `controller` (a method that changes the connections) is called around every optimiser step, numbered
    from `first_step`. Raises FloatingPointError when the loss becomes NaN or infinite. Where
    `predsparse.nn.fused` applies (a sparse MLP on the native CPU kernels, SGD, no method), each step is one
    native call; otherwise autograd and the optimiser run it.
    """
    model.train()
    n = len(x)
    order = torch.randperm(n, generator=generator).to(x.device)
    if FusedMLP.reason(model, optimizer, controller) is None:
        return _fused_epoch(FusedMLP(model, optimizer, capacity=batch_size), x, y, order, batch_size, on_batch)
    loss_sum, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.long)
    batches = math.ceil(n / batch_size)
    for b in range(batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if controller:
            controller.before_batch(first_step + b)
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if controller:
            controller.after_step(first_step + b)
        loss_sum += loss.detach() * len(idx)
        correct += (model.predict(logits.detach()) == yb).sum()
        if b % _CHECK_EVERY == _CHECK_EVERY - 1 or b == batches - 1:
            seen = min((b + 1) * batch_size, n)
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"batch {b + 1} of {batches}")
            on_batch(b + 1, mean_loss, correct.item() / seen)
    return loss_sum.item() / n, correct.item() / n


def _fused_epoch(fused: FusedMLP, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int,
                 on_batch) -> tuple[float, float]:
    """train_epoch on the fused native step (`predsparse.nn.fused`): the same batches in the same order, the
    same checks. The collector is paused: a step allocates only a few objects, but enough to start its
    scans of the whole heap (torch, mlflow) every few hundred steps: 8 % of the samples of a profile of
    fused Morse steps."""
    n = len(x)
    batches = math.ceil(n / batch_size)
    fused.check_samples(x, y, order)  # once: every batch's picks are a slice of order
    loss_sum, correct = 0.0, 0
    paused = gc.isenabled()
    gc.disable()
    try:
        for b in range(batches):
            batch_loss, batch_correct = fused.step(x, y, order[b * batch_size:(b + 1) * batch_size], checked=True)
            loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
            if b % _CHECK_EVERY == _CHECK_EVERY - 1 or b == batches - 1:
                seen = min((b + 1) * batch_size, n)
                if not math.isfinite(loss_sum / seen):
                    raise FloatingPointError(f"batch {b + 1} of {batches}")
                on_batch(b + 1, loss_sum / seen, correct / seen)
    finally:
        if paused:
            gc.enable()
    return loss_sum / n, correct / n


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()} threads"


def run_info(spec: RunSpec, pattern: Pattern, model: PatternNet, device: torch.device) -> dict:
    """What defines and describes the run, before any training: the head of metrics.json."""
    params, macs = count_parameters(model), count_macs(model)
    account = pattern_density(pattern, other_params=params["conv"], other_ops=macs["conv"]).to_dict()
    return {
        "run_id": spec.run_id(),
        "study": spec.study,
        "run_name": spec.run_name,
        "spec": spec.to_dict(),
        "pattern": {
            "id": Path(spec.pattern).stem,
            "kind": pattern.kind,
            "options": pattern.meta.get("options", {}),
            **{key: account[key] for key in (
                "net", "fanouts", "fanins", "junction_densities", "overall_density", "weights", "dense_weights",
                "compression", "param_reduction", "op_reduction")},
        },
        "scatter": scatter_vector(pattern).to_dict(),
        "model": {"name": spec.model, "input_shape": list(model.input_shape), "params": params, "macs": macs},
        "device": device_name(device),
        "versions": versions(),
        "git_commit": git_commit(),  # predsparse.provenance: the same as the pipeline's run_info.json
    }


def _load_checkpoint(path: Path, run_id: str, device: torch.device) -> dict | None:
    """The checkpoint of this run at `path`, None if there is none; anything else is refused in one line.

    Only tensors and plain values are unpickled (weights_only): a file holding other objects is not ours,
    and is never loaded with weights_only=False, whatever torch's own message suggests.
    """
    if not path.is_file():
        return None
    restart = f"move it away (or delete {path.parent}) to restart the run"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on a foreign pickle protocol
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds; its message advises an unsafe load
        why = "" if isinstance(exc, pickle.UnpicklingError) else f" ({type(exc).__name__})"
        raise TrainingError(f"{path} is not a predsparse checkpoint: it is not a torch file of tensors and plain "
                            f"values{why}, so it was not loaded; {restart}") from None
    if not isinstance(state, dict):
        raise TrainingError(f"{path} is not a predsparse checkpoint: it holds a {type(state).__name__}, not a mapping "
                            f"of run state; {restart}")
    if state.get("format") != CHECKPOINT_FORMAT or state.get("run_id") != run_id:
        raise ConfigError(f"{path} belongs to another run (run id {state.get('run_id')!r}, format "
                          f"{state.get('format')!r}; this spec's run id is {run_id}, format {CHECKPOINT_FORMAT}); "
                          f"train into another folder or delete {path.parent}")
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["rng"], dict) or not {"shuffle", "torch"} <= set(state["rng"]):
        raise TrainingError(f"{path} is not a complete predsparse checkpoint: it lacks "
                            f"{missing or ['rng.shuffle', 'rng.torch']}; {restart}")

    def tensors(value) -> bool:
        return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())

    malformed = [key for key, ok in (
        ("model", tensors(state["model"])), ("optimizer", isinstance(state["optimizer"], dict)),
        ("best_model", state["best_model"] is None or tensors(state["best_model"])),
        ("best_epoch", isinstance(state["best_epoch"], int) and not isinstance(state["best_epoch"], bool)),
        ("history", isinstance(state["history"], list) and all(isinstance(row, dict) for row in state["history"])),
        ("rng", all(isinstance(state["rng"][k], torch.Tensor) for k in ("shuffle", "torch"))),
    ) if not ok]
    if malformed:
        raise TrainingError(f"{path} is not a predsparse checkpoint: its {', '.join(malformed)} "
                            f"{'is' if len(malformed) == 1 else 'are'} not what training saves; {restart}")
    return state


# What loading a checkpoint of another model (or a torn one) into a run's model and optimiser raises.
RESTORE_ERRORS = (RuntimeError, ValueError, KeyError, TypeError)


def checkpoint_misfit(path: Path, exc: Exception) -> TrainingError:
    """The one-line error of a checkpoint that does not fit the run's model."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TrainingError(f"checkpoint {path} does not fit this run's model ({reason}); delete it to restart the run")


def checkpoint_state(run_id: str, model: dict, optimizer: dict, best_model: dict | None, best_epoch: int,
                     history: list[dict], shuffle: torch.Tensor, rng: torch.Tensor) -> dict:
    """What a checkpoint holds (`_CHECKPOINT_KEYS`; a method's runs add "method"), alone or in a group."""
    return {"format": CHECKPOINT_FORMAT, "run_id": run_id, "model": model, "optimizer": optimizer,
            "best_model": best_model, "best_epoch": best_epoch, "history": history,
            "rng": {"shuffle": shuffle, "torch": rng}}


def finished_metrics(info: dict, spec: RunSpec, history: list[dict], best_epoch: int, test_loss: float,
                     test_acc: float, wall_time_s: float) -> dict:
    """metrics.json of a finished run: its info, its summary, its test figures and wall time."""
    return {**info, "status": "finished", **_summarise(history, best_epoch), "epochs": spec.epochs,
            "test_loss": test_loss, "test_acc": test_acc, "wall_time_s": wall_time_s}


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _summarise(history: list[dict], best_epoch: int) -> dict:
    by_epoch = {row["epoch"]: row for row in history}
    last = history[-1]
    return {
        "epochs_done": len(history),
        "best_val_epoch": best_epoch,
        "best_val_acc": by_epoch[best_epoch]["val_acc"],
        "val_acc_epoch1": by_epoch[1]["val_acc"],
        "val_acc_epoch5": by_epoch[5]["val_acc"] if 5 in by_epoch else None,
        "final": {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
    }


def write_curves(history: list[dict], path: Path, title: str = "") -> None:
    """A small PNG of loss and accuracy per epoch (train and validation), titled (e.g. study / run)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, a faster import
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(8, 3.2), dpi=80, layout="tight")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split in ("train", "val"):
        ax_loss.plot(epochs, [row[f"{split}_loss"] for row in history], marker=".", label=split)
        ax_acc.plot(epochs, [row[f"{split}_acc"] for row in history], marker=".", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (real classes)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax_acc.legend()
    if title:
        fig.suptitle(title, fontsize=10)
    atomic_savefig(fig, path)


def _batches(spec: RunSpec, arrays: dict) -> int:
    """Optimiser steps per epoch (the last batch may be smaller)."""
    return math.ceil(len(arrays["ytr"]) / spec.batch_size)


class RunState:
    """One run between its folder and its epochs: what `train_run` carries from epoch to epoch and its
    checkpoint holds (model, optimiser, shuffle generator, RNG, history, best model, a method's state).

    `open` builds the run's model as a fresh start does (seeded, so the same initial weights), `resume`
    loads the checkpoint into it (nothing when there is none), `begin` writes spec.json and starts the
    MLflow run, `end_epoch` records an epoch and saves the checkpoint, `fail` and `finish` write the run's
    end. A run trained alone (`alone=True`) owns the process's global RNG: a resume restores it and
    checkpoints record it. A run of a stacked group (`predsparse.train_group`, `alone=False`) keeps the
    state its checkpoint records in `rng`, and its optimiser state in `optimizer_state` (the group's
    optimiser holds the runs' states stacked).
    """

    def __init__(self, spec: RunSpec, out_dir: Path, device: torch.device, track: bool, pattern: Pattern,
                 arrays: dict, controller: Controller | None, model: PatternNet, checkpoint: dict | None):
        self.spec, self.out_dir, self.device, self.track = spec, out_dir, device, track
        self.run_id = spec.run_id()
        self.pattern, self.arrays, self.controller, self.model = pattern, arrays, controller, model
        self.checkpoint = checkpoint
        self.batches = _batches(spec, arrays)
        self.shuffle = torch.Generator().manual_seed(spec.seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_state: dict | None = None
        self.rng: torch.Tensor | None = None  # None: the process's global RNG state is the run's
        self.history: list[dict] = []
        self.best_epoch, self.best_state = 0, None
        self.elapsed = 0.0  # wall time so far, over every attempt
        self.info: dict = {}
        self.tracker: RunTracker | None = None
        self.progress = Progress(spec.run_name, spec.epochs, self.batches)
        self.failed = False

    @classmethod
    def open(cls, spec: RunSpec, out_dir: Path, device: torch.device, track: bool = True,
             arrays: dict | None = None, alone: bool = True) -> "RunState":
        """The run's checkpoint (read, not loaded yet), pattern, data arrays (read unless given) and model."""
        checkpoint = _load_checkpoint(out_dir / rundir.CHECKPOINT, spec.run_id(), device)
        pattern = load_pattern(spec.pattern)
        torch.manual_seed(spec.seed)
        arrays = load_arrays(spec.data) if arrays is None else arrays
        controller = make_controller(spec, pattern, _batches(spec, arrays))
        if controller and checkpoint is not None:
            controller.load_state_dict(checkpoint["method"])
        if controller:
            model = controller.build()
        else:
            model = build_model(spec.model, pattern, spec.num_classes, init=spec.init, dataset=spec.dataset)
        run = cls(spec, out_dir, device, track, pattern, arrays, controller, model.to(device), checkpoint)
        if not alone:
            run.rng = torch.get_rng_state()
        return run

    def resume(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load the checkpoint (if any) into the model, `optimizer` (without one: into `optimizer_state`), the
        shuffle generator and the RNG, and take its history and best model."""
        self.optimizer, checkpoint = optimizer, self.checkpoint
        if checkpoint is not None:
            try:
                self.model.load_state_dict(checkpoint["model"])
                if optimizer is not None:
                    optimizer.load_state_dict(checkpoint["optimizer"])
                else:
                    self.optimizer_state = checkpoint["optimizer"]
                self.shuffle.set_state(checkpoint["rng"]["shuffle"])
                if self.rng is None:
                    torch.set_rng_state(checkpoint["rng"]["torch"])
                else:
                    self.rng = checkpoint["rng"]["torch"]
            except RESTORE_ERRORS as exc:
                raise checkpoint_misfit(self.out_dir / rundir.CHECKPOINT, exc) from None
            self.history, self.best_epoch = checkpoint["history"], checkpoint["best_epoch"]
            self.best_state = checkpoint["best_model"]
            self.elapsed = self.history[-1]["wall_time_s"] if self.history else 0.0
        if self.controller:
            self.controller.attach(self.model, optimizer)

    def begin(self) -> None:
        """What is written before the first epoch: spec.json and the start (or continuation) of the MLflow run."""
        self.info = run_info(self.spec, self.pattern, self.model, self.device)
        atomic_write_json(self.out_dir / rundir.SPEC, self.spec.to_dict())
        self.tracker = RunTracker(self.spec.tracking_uri) if self.track else None
        if self.tracker:
            self.tracker.start(self.info, self.out_dir, self.history, resumed=self.checkpoint is not None)

    def start_epoch(self, epoch: int) -> None:
        """Before an epoch: the method's controller may replace the model (it gets a new optimiser)."""
        self.progress.start_epoch(epoch)
        if self.controller and (replaced := self.controller.start_epoch(epoch)) is not None:
            self.model, self.optimizer = replaced, make_optimizer(self.spec, replaced)
            self.controller.attach(self.model, self.optimizer)

    def end_epoch(self, epoch: int, train_loss: float, train_acc: float, val_loss: float, val_acc: float,
                  seconds: float, optimizer_state: dict | None = None) -> dict:
        """Record an epoch of `seconds`: its history row, the best model, the checkpoint (`optimizer_state`
        in place of the optimiser's own), the progress line and MLflow."""
        self.elapsed += seconds
        row = {"study": self.spec.study, "run_id": self.run_id, "epoch": epoch, "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc, "wall_time_s": self.elapsed}
        self.history.append(row)
        # Only a model at the weight budget can be the result (not a pruning run's dense phase).
        eligible = self.controller is None or self.controller.eligible(epoch)
        if eligible and (self.best_state is None or val_acc > self.history[self.best_epoch - 1]["val_acc"]):
            self.best_epoch = epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.save(optimizer_state)
        rundir.write_history(self.out_dir / rundir.HISTORY, self.history)
        self.progress.epoch(row)
        if self.tracker:
            self.tracker.log_epoch(row)
        return row

    def save(self, optimizer_state: dict | None = None) -> None:
        """Write the checkpoint (atomically)."""
        state = checkpoint_state(
            self.run_id, self.model.state_dict(),
            self.optimizer.state_dict() if optimizer_state is None else optimizer_state, self.best_state,
            self.best_epoch, self.history, self.shuffle.get_state(),
            torch.get_rng_state() if self.rng is None else self.rng)
        if self.controller:
            state["method"] = self.controller.state_dict()
        _save_checkpoint(self.out_dir / rundir.CHECKPOINT, state)

    def fail(self, epoch: int, where: str) -> str:
        """failure.json of a non-finite loss in `epoch` (`where`: its batch); returns the message."""
        message = (f"run {self.spec.run_name}: non-finite training loss in epoch {epoch} ({where}); lower lr "
                   f"(now {self.spec.lr})")
        self.progress.close()
        atomic_write_json(self.out_dir / rundir.FAILURE, {**self.info, "status": "failed", "error": message,
                                                          "failed_epoch": epoch, "epochs_done": len(self.history)})
        if self.tracker:
            self.tracker.publish(self.out_dir)
        self.failed = True
        return message

    def finish(self, data: dict[str, torch.Tensor], extra: dict | None = None) -> dict:
        """The best model's test evaluation and metrics.json (with `extra`), curves, MLflow; returns metrics."""
        started = time.perf_counter()
        self.model.load_state_dict(self.best_state)
        test_loss, test_acc = evaluate(self.model, data["xte"], data["yte"])
        info = self.info
        if self.controller:  # describe the connections trained, keeping the pattern file's as the initial ones
            final = self.controller.final_pattern(self.model)
            final.save(self.out_dir / rundir.FINAL_PATTERN)
            info = {**run_info(self.spec, final, self.model, self.device),
                    "initial": {"pattern": info["pattern"], "scatter": info["scatter"]}}
        metrics = {**finished_metrics(info, self.spec, self.history, self.best_epoch, test_loss, test_acc,
                                      self.elapsed + time.perf_counter() - started), **(extra or {})}
        write_curves(self.history, self.out_dir / rundir.CURVES, f"{self.spec.study} / {self.spec.run_name}")
        (self.out_dir / rundir.FAILURE).unlink(missing_ok=True)
        atomic_write_json(self.out_dir / rundir.METRICS, metrics)
        if self.tracker:
            self.tracker.publish(self.out_dir)
        return metrics


def finished_run(spec: RunSpec, out_dir: Path, track: bool) -> dict | None:
    """metrics.json of the run when `out_dir` holds it finished (its MLflow side finished too), else None."""
    if not (out_dir / rundir.METRICS).is_file():
        return None
    done = rundir.read_json(out_dir / rundir.METRICS)
    run_id = spec.run_id()
    if done.get("run_id") != run_id:
        raise ConfigError(f"{out_dir} holds the finished run {done.get('run_id')}, not this spec's {run_id}; "
                          f"train into another folder or delete {out_dir}")
    if track:  # a run killed between metrics.json and MLflow: finish its MLflow side
        RunTracker(spec.tracking_uri).publish(out_dir)
    return done


def train_run(spec: RunSpec, out_dir: str | Path, track: bool = True) -> dict:
    """Train (or resume, or return the finished result of) the run `spec` in `out_dir`; return metrics.json.

    `track=False` skips MLflow (results are written all the same).
    """
    out_dir = Path(out_dir)
    if (done := finished_run(spec, out_dir, track)) is not None:
        return done
    run = RunState.open(spec, out_dir, resolve_device(spec.device), track)
    data = load_data(spec, run.model.input_shape, run.device, run.arrays)
    run.resume(make_optimizer(spec, run.model))
    run.begin()
    for epoch in range(len(run.history) + 1, spec.epochs + 1):
        started = time.perf_counter()
        run.start_epoch(epoch)
        try:
            train_loss, train_acc = train_epoch(
                run.model, run.optimizer, data["xtr"], data["ytr"], spec.batch_size, run.shuffle,
                lambda done, loss, acc: run.progress.batch(epoch, done, loss, acc), run.controller,
                (epoch - 1) * run.batches)
        except FloatingPointError as exc:
            raise TrainingError(run.fail(epoch, str(exc))) from None
        val_loss, val_acc = evaluate(run.model, data["xva"], data["yva"])
        run.end_epoch(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - started)
    return run.finish(data)
