"""A training step of a sparse MLP as one native call: the CPU fast path of `predsparse.train`.

A step of the autograd path (`SparseLinear` layers, `cross_entropy`, `backward`, `SGD.step`) spends as much
time in Python, autograd and optimiser code as in its products: on the Morse net (64, 1024, 64) at
fo (128, 8), batch 256, one thread, about 1.3 ms of a 2.1-3.0 ms step remained with the native products
replaced by no-ops (`benchmarks/fused_step.py`, on a 2-core AMD EPYC). `FusedMLP.step` does the whole step
in C (`_native_step.h`): it gathers the batch from the data set, runs the forward pass, softmax
cross-entropy over all outputs, every gradient, and torch.optim.SGD's update, in place.

The last two junctions (the only two of the Morse net) run as one pass over their hidden neurons, forward
and backward, so a hidden row is read once per pass where the layer's products read it fan-out times from
L2; the junctions below run on the layer's own kernels (gather_rows, dots_rows). Every sum runs in the
layer's order, except that an output of the last junction sums its connections in the order of their
hidden neurons: the same order, bit for bit, when its fan-in row is sorted, as every generator's rows are.
It computes what the autograd path computes, summed in another order only where torch's own ops sum (the
loss and its gradient, the SGD update: a few ulp apart per step; `tests/test_fused.py` checks six steps
against the autograd path). Its results do not depend on the thread count (the passes split rows or
chunks of the batch whose sums are each computed whole by one thread). Denormal numbers are flushed to
zero while it runs, on every thread of the step, and the caller's setting is back after (`_native.c`,
flush_denormals): without, a Morse run's epochs slowed from 0.6 s to 2.0 s over its 30 epochs.

It applies (`FusedMLP.reason` is None) to an `mlp` whose junctions are all SparseLinear layers with fixed
fan-in and fan-out and a bias, float32 on the CPU (`predsparse.nn.stacked.native_mlp`), trained by the SGD
`predsparse.train.make_optimizer` builds (no dampening or Nesterov), with no method changing its
connections. Anything else trains on the autograd path. It gathers at every density: the layer's switch to
dense blocks from density 0.35 (`DENSE_DISPATCH_DENSITY`) pays off against the autograd path's gathers, not
against this step, on the Morse configurations of config/morse.yaml (densities up to 98 %) but one:
fo (16, 63), junction 2 at 98 %, where the fused step measured 0.88-1.22x the autograd step's time over
five runs on two days (the README's table is `benchmarks/fused_step.py`'s; one run of the preset, some
5-10 s).
Larger nets were not measured.

Momentum buffers live where torch's SGD keeps them, `optimizer.state[p]["momentum_buffer"]`, so a
checkpoint written after fused steps resumes on either path.
"""

from __future__ import annotations

import torch

from predsparse.nn import native
from predsparse.nn.stacked import native_mlp

ENABLED = True  # False: every step on the autograd path (benchmarks/study.py --path autograd compares the two)
# Samples per batch of a fused evaluation: at 1024 (the autograd path's EVAL_BATCH) the Morse net's hidden
# activations (4 MB) leave L2; measured 44 ms vs 50-53 ms per 64,000 Morse samples at fo (128, 8).
EVAL_CAPACITY = 256

# The int64 fields of one junction, in the order of `Junction` in _native_step.h.
JUNCTION_FIELDS = ("n_in", "n_out", "fan_in", "fan_out", "weight", "bias", "fan_in_index", "fan_out_right",
                   "fan_out_position", "weight_buf", "bias_buf", "act", "grad_weight", "grad_bias", "weight_t")


class FusedMLP:
    """The fused step and evaluation of one `PatternNet` (and its SGD optimiser, for training).

    Built per epoch (cheap): it holds the addresses of the model's parameters, which the step updates in
    place, and workspace for batches of up to `capacity` samples.
    """

    def __init__(self, model, optimizer: torch.optim.SGD | None = None, capacity: int = 256):
        self.model, self.optimizer = model, optimizer
        self.junctions = model.junctions()
        self.capacity = capacity
        self.classes = model.num_classes
        self.first = False
        self._buffers: list[torch.Tensor | None] = []
        if optimizer is not None:
            self.lr, self.momentum, self.decay_weight, self.decay_bias = self._hyperparameters(optimizer)
            self._buffers, self.first = self._momentum_buffers(optimizer)
        self._workspace(capacity)

    @staticmethod
    def reason(model, optimizer=None, controller=None) -> str | None:
        """None if the fused step applies to this model, optimiser and method, else why not."""
        if not ENABLED:
            return "the fused step is switched off (predsparse.nn.fused.ENABLED)"
        if controller is not None:
            return "a method changes the connections"
        if optimizer is not None:
            if type(optimizer) is not torch.optim.SGD:
                return f"the optimiser is {type(optimizer).__name__}, not SGD"
            for group in optimizer.param_groups:
                if group["dampening"] or group["nesterov"] or group["maximize"]:
                    return "SGD with dampening, Nesterov momentum or maximize"
        return native_mlp(model)

    def _hyperparameters(self, optimizer) -> tuple[float, float, float, float]:
        """lr, momentum and the weight decay of the weights and of the biases, from the parameter groups."""
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        weights = [group_of[id(j.weight)] for j in self.junctions]
        biases = [group_of[id(j.bias)] for j in self.junctions]
        settings = {(g["lr"], g["momentum"]) for g in weights + biases}
        if len(settings) != 1 or len({g["weight_decay"] for g in weights}) != 1 or \
                len({g["weight_decay"] for g in biases}) != 1:
            raise ValueError("FusedMLP: every weight (and every bias) must share lr, momentum and weight decay")
        (lr, momentum), = settings
        return lr, momentum, weights[0]["weight_decay"], biases[0]["weight_decay"]

    def _momentum_buffers(self, optimizer) -> tuple[list[torch.Tensor | None], bool]:
        """The SGD momentum buffers of every weight and bias (created, zero, before the first step, which
        then sets them to the gradient, as SGD does); whether this is that first step."""
        if not self.momentum:
            return [None] * (2 * len(self.junctions)), False
        buffers, first = [], False
        for junction in self.junctions:
            for p in (junction.weight, junction.bias):
                state = optimizer.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p)
                    first = True
                buffers.append(state["momentum_buffer"])
        return buffers, first

    def _workspace(self, capacity: int) -> None:
        """Activations, gradients and the junction table for batches of up to `capacity` samples."""
        widths = [self.junctions[0].in_features] + [j.out_features for j in self.junctions]
        new = self.junctions[0].weight.new_empty
        self.ld = leading_dimension(capacity)
        self.act0 = new(widths[0] * self.ld)
        # grads[1] also holds the loss's 4 per-sample values before the backward pass writes it
        self.grads = [new(max(*widths, 4) * self.ld) for _ in range(2)]
        self._keep = []
        rows = []
        for i, j in enumerate(self.junctions):
            act = new(j.out_features * self.ld)
            grad_weight, grad_bias = torch.empty_like(j.weight), torch.empty_like(j.bias)
            weight_t = new(j.fan_out_right.numel())
            self._keep += [act, grad_weight, grad_bias, weight_t]
            weight_buf, bias_buf = self._buffers[2 * i:2 * i + 2] if self._buffers else (None, None)
            values = {
                "n_in": j.in_features, "n_out": j.out_features, "fan_in": j.weight.shape[1],
                "fan_out": j.fan_out_right.shape[1], "weight": j.weight, "bias": j.bias,
                "fan_in_index": j.fan_in_index, "fan_out_right": j.fan_out_right,
                "fan_out_position": j.fan_out_position, "weight_buf": weight_buf, "bias_buf": bias_buf,
                "act": act, "grad_weight": grad_weight, "grad_bias": grad_bias, "weight_t": weight_t}
            rows.append([_address(values[name]) for name in JUNCTION_FIELDS])
        self.table = torch.tensor(rows, dtype=torch.int64)

    def _call(self, x: torch.Tensor, y: torch.Tensor, batch: int, start: int, picks: torch.Tensor | None,
              train: bool) -> tuple[float, int]:
        if batch > self.capacity:
            raise ValueError(f"FusedMLP: batch of {batch} samples exceeds the workspace's {self.capacity}")
        rows = x.reshape(len(x), -1)
        if rows.stride(-1) != 1 or rows.dtype != torch.float32 or y.dtype != torch.int64:
            raise ValueError("FusedMLP: inputs must be float32 with contiguous samples, labels int64")
        if rows.shape[1] != self.junctions[0].in_features:  # the native gather reads that many per sample
            raise ValueError(f"FusedMLP: samples have {rows.shape[1]} values, the net takes "
                             f"{self.junctions[0].in_features}")
        with torch.no_grad():
            loss_sum, correct = native.mlp_step(
                self.table, len(self.junctions), batch, self.ld, self.classes, rows, rows.stride(0), start, picks, y,
                self.act0, self.grads[0], self.grads[1], train, self.lr if train else 0.0,
                self.momentum if train else 0.0, self.decay_weight if train else 0.0,
                self.decay_bias if train else 0.0, self.first and train)
        if train:
            self.first = False
        return loss_sum, correct

    def check_samples(self, x: torch.Tensor, y: torch.Tensor, picks: torch.Tensor | None = None) -> None:
        """What the native code reads without bounds checks, checked: one label per sample, every label an
        output (as cross_entropy requires; the native loss indexes the logits by it) and, if given, every
        pick a sample (int64, one dimension, contiguous)."""
        if y.dim() != 1 or len(y) != len(x):
            raise ValueError(f"FusedMLP: {len(x)} samples need as many labels, got shape {tuple(y.shape)}")
        outputs = self.junctions[-1].out_features
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= outputs):
            raise ValueError(f"FusedMLP: labels must lie in 0..{outputs - 1}, got {int(y.min())}..{int(y.max())}")
        if picks is not None:
            if picks.dtype != torch.int64 or picks.dim() != 1 or not picks.is_contiguous():
                raise ValueError(f"FusedMLP: picks must be a contiguous 1-D int64 tensor, got {picks.dtype} "
                                 f"of shape {tuple(picks.shape)}")
            if len(picks) and (int(picks.min()) < 0 or int(picks.max()) >= len(x)):
                raise ValueError(f"FusedMLP: picks must lie in 0..{len(x) - 1}, got "
                                 f"{int(picks.min())}..{int(picks.max())}")

    def step(self, x: torch.Tensor, y: torch.Tensor, picks: torch.Tensor, checked: bool = False) -> tuple[float, int]:
        """One SGD step on the samples `picks` (int64) of (x, y); returns the batch's summed loss and its
        number of correct predictions, as of before the update. `checked`: the caller has passed (x, y) and
        a superset of the picks through `check_samples` (train does, once an epoch), so the step does not."""
        if not checked:
            self.check_samples(x, y, picks)
        return self._call(x, y, len(picks), 0, picks, True)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """Summed loss and correct predictions over all of (x, y), in batches of `capacity`."""
        self.check_samples(x, y)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), self.capacity):
            part_loss, part_correct = self._call(x, y, min(self.capacity, len(x) - start), start, None, False)
            loss_sum, correct = loss_sum + part_loss, correct + part_correct
        return loss_sum, correct


def leading_dimension(capacity: int) -> int:
    """Floats between rows of the step's (n, batch) buffers: the capacity rounded up to a cache line, plus
    one. Rows exactly 1 KB apart (capacity 256) put rows four apart at 4 KB, where the core takes a load
    from one row as dependent on a store to the other (4K aliasing): the last junction's forward stores to its
    output rows while it loads them, and the evaluation ran 1.23x slower so (fo (128, 8): 53.8 against
    43.8 ms per 64,000 samples)."""
    return -(-capacity // 16) * 16 + 16


def _address(value) -> int:
    """A junction table entry: a size as it is, a tensor (or None) as native passes its address."""
    return value if isinstance(value, int) else native._pointer(value)
