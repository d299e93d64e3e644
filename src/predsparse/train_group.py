"""Training several runs in one process: a group of runs that share a net.

`train_group(specs, out_dirs)` trains runs that differ only in pattern, seed, study and name (same
dataset file, model, net, fan-outs and hyper-parameters: `RunSpec.group_key`). Runs that the fused step
applies to (`predsparse.nn.fused`: a sparse MLP on the native CPU kernels, trained with SGD) train one
after the other with `train_run`, sharing the process's start-up: each run's activations stay in cache,
and a fused step of one run costs less than its share of a stacked step of several (`benchmarks/study.py
--group 8`, with and without `--path autograd`). Other models that stack (`predsparse.nn.stacked.stackable`:
the same MLPs trained with Adam) take every step as one layer call per junction for all of them
(`StackedConnectedLayers`); the rest train one after the other too.

Each run stays its own: its folder, spec.json, checkpoint after every epoch (the single run's format, so
a group can resume what `train_run` started and the other way round), history, curves, metrics.json and
MLflow run. Its numbers are bit-for-bit those of `train_run` on the CPU: same initialisation (its own
seed), same shuffle (its own generator), same sums (see `StackedSparseLinearFunction`), and evaluation by
the single run's own `evaluate` on its own model; each run's bookkeeping (checkpoint, history, best model,
failure, metrics.json) is the single run's `predsparse.train.RunState`. Only the time differs: a run's `wall_time_s` is its
share of the group's time (the group's time / its size), and metrics.json records the group in `group`.

A run whose loss becomes non-finite gets its failure.json and is no longer recorded; its stacked slice
goes on computing (it cannot touch the others' numbers) and the group raises TrainingError at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from predsparse import rundir
from predsparse.data import load_arrays
from predsparse.errors import ConfigError, TrainingError
from predsparse.nn import native
from predsparse.nn.fused import FusedMLP
from predsparse.nn.stacked import StackedConnectedLayers, stackable
from predsparse.spec import GROUP_FREE_KEYS, RunSpec
from predsparse.train import (_CHECK_EVERY, RunState, evaluate, load_data, make_optimizer, resolve_device,
                              train_run)


def _member(spec: RunSpec, out_dir: Path, device: torch.device, track: bool, arrays: dict) -> RunState:
    """One run of the group set up as `train_run` sets it up (same seed order, so the same initial weights)
    and resumed from its checkpoint; nothing written yet. Its checkpoints record its own RNG state."""
    member = RunState.open(spec, out_dir, device, track, arrays, alone=False)
    member.resume()
    return member


def _stacked_optimizer(spec: RunSpec, stack: StackedConnectedLayers, members: list[RunState]) -> torch.optim.Optimizer:
    """`make_optimizer`'s optimiser over the stacked parameters (same groups, same order), its state the
    members' stacked along the first dimension."""
    weights, biases = stack.parameter_groups()
    groups = [{"params": weights, "weight_decay": spec.weight_decay}, {"params": biases, "weight_decay": 0.0}]
    if spec.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=spec.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    states = [m.optimizer_state for m in members]
    if states[0] is not None:
        stacked = optimizer.state_dict()
        stacked["state"] = {pid: {key: _stack_state([s["state"][pid][key] for s in states])
                                  for key in states[0]["state"][pid]} for pid in states[0]["state"]}
        optimizer.load_state_dict(stacked)
    return optimizer


def _stack_state(values: list):
    """Per-parameter optimiser values of R runs as the stacked optimiser keeps them (a shared step count stays one)."""
    first = values[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return torch.stack(values)
    return first


def _run_optimizer_state(optimizer: torch.optim.Optimizer, r: int) -> dict:
    """Run r's slice of the stacked optimiser state, in the form of its own optimiser's state_dict."""
    state = optimizer.state_dict()
    state["state"] = {pid: {key: value[r].clone() if isinstance(value, torch.Tensor) and value.dim() > 0 else value
                            for key, value in values.items()} for pid, values in state["state"].items()}
    return state


def train_group(specs: list[RunSpec], out_dirs: list[str | Path], track: bool = True) -> list[dict]:
    """Train (or resume, or return the finished results of) the runs `specs` into `out_dirs`; returns their
    metrics.json contents in order. Raises TrainingError after the others finish if any run failed."""
    if len(specs) != len(out_dirs):
        raise ConfigError(f"train_group: {len(specs)} specs but {len(out_dirs)} run folders")
    keys = {spec.group_key() for spec in specs}
    if len(keys) > 1 or None in keys:
        raise ConfigError("train_group: the runs differ in more than " + ", ".join(GROUP_FREE_KEYS)
                          + " (or change their connections); train them apart")
    out_dirs = [Path(d) for d in out_dirs]
    results: dict[int, dict] = {}
    pending = []
    for i, (spec, out_dir) in enumerate(zip(specs, out_dirs)):
        if (out_dir / rundir.METRICS).is_file():
            results[i] = train_run(spec, out_dir, track)  # checks the run id, finishes its MLflow side
        else:
            pending.append(i)
    spec = specs[pending[0]] if pending else None
    device = resolve_device(spec.device) if spec else None
    arrays = load_arrays(spec.data) if spec else None
    members = {i: _member(specs[i], out_dirs[i], device, track, arrays) for i in pending}
    # Runs at different epochs (some resumed) stack by epoch; models that cannot stack train alone.
    by_epoch: dict[int, list[int]] = {}
    for i in pending:
        by_epoch.setdefault(len(members[i].history), []).append(i)
    failed = []
    for indices in by_epoch.values():
        group = [members[i] for i in indices]
        if len(group) == 1 or stackable([m.model for m in group]) is not None or \
                FusedMLP.reason(group[0].model, make_optimizer(group[0].spec, group[0].model)) is None:
            for i in indices:
                try:
                    results[i] = train_run(specs[i], out_dirs[i], track)
                except TrainingError as exc:
                    failed.append(str(exc))
            continue
        for member in group:
            member.begin()
        data = load_data(spec, group[0].model.input_shape, device, arrays)
        for i, metrics in zip(indices, _train_stacked(group, data)):
            if metrics is None:
                failed.append(f"run {specs[i].run_name} failed (see {out_dirs[i] / rundir.FAILURE})")
            else:
                results[i] = metrics
    if failed:
        raise TrainingError("; ".join(failed))
    return [results[i] for i in range(len(specs))]


def _stacked_epoch(members: list[RunState], stack: StackedConnectedLayers, optimizer: torch.optim.Optimizer,
                   x_t: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[list[float], list[float]]:
    """One epoch of every member in the stack; their mean train losses and accuracies. A member whose loss
    becomes non-finite fails (its slice goes on computing: it cannot touch the others' numbers)."""
    spec, size, n = members[0].spec, len(members), len(y)
    batches = math.ceil(n / spec.batch_size)
    stack.train()
    orders = [torch.randperm(n, generator=m.shuffle).to(y.device) for m in members]
    loss_sum = torch.zeros(size, device=y.device)
    correct = torch.zeros(size, device=y.device, dtype=torch.long)
    for b in range(batches):
        picks = [order[b * spec.batch_size:(b + 1) * spec.batch_size] for order in orders]
        inputs = torch.stack([x_t.index_select(1, idx) for idx in picks])
        targets = [y.index_select(0, idx) for idx in picks]
        logits = [l.t() for l in stack(inputs).unbind(0)]  # (B, classes) views, as a single run's
        losses = torch.stack([nn.functional.cross_entropy(l, t) for l, t in zip(logits, targets)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        loss_sum += losses.detach() * len(picks[0])
        correct += torch.stack([(members[0].model.predict(l.detach()) == t).sum()
                                for l, t in zip(logits, targets)])
        if b % _CHECK_EVERY == _CHECK_EVERY - 1 or b == batches - 1:
            seen = min((b + 1) * spec.batch_size, n)
            for r, total in enumerate(loss_sum.tolist()):
                if not math.isfinite(total / seen) and not members[r].failed:
                    members[r].fail(epoch, f"batch {b + 1} of {batches}")
    # Means as train_epoch takes them: the float32 sums, divided in Python.
    return [total / n for total in loss_sum.tolist()], [count / n for count in correct.tolist()]


def _train_stacked(members: list[RunState], data: dict) -> list[dict | None]:
    """Train the members (all at the same epoch) in one stack; their metrics.json, None for a failed run."""
    spec = members[0].spec
    size = len(members)
    stack = StackedConnectedLayers.from_models([m.model for m in members])
    optimizer = _stacked_optimizer(spec, stack, members)
    x_t = data["xtr"].reshape(len(data["xtr"]), -1).t().contiguous()  # (N_1, samples): batches are column picks
    for epoch in range(len(members[0].history) + 1, spec.epochs + 1):
        started = time.perf_counter()
        train_loss, train_acc = _stacked_epoch(members, stack, optimizer, x_t, data["ytr"], epoch)
        epoch_time = time.perf_counter() - started
        for r, member in enumerate(members):
            if member.failed:
                continue
            started = time.perf_counter()
            stack.load_run(r, member.model)
            val_loss, val_acc = evaluate(member.model, data["xva"], data["yva"])
            # Each run is charged its share of the step time and its own evaluation.
            member.end_epoch(epoch, train_loss[r], train_acc[r], val_loss, val_acc,
                             epoch_time / size + time.perf_counter() - started, _run_optimizer_state(optimizer, r))
    group = {"group": {"runs": size, "stacked": True, "kernels": native.STATUS}}
    return [None if m.failed else m.finish(data, group) for m in members]
