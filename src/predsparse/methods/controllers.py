"""Magnitude pruning and dynamic sparse training (SET, RigL) as controllers of `predsparse.train`.

The training loop asks a controller to build the model, calls it around every optimiser step and at
the start of every epoch, keeps as the run's result only a model of an `eligible` epoch (at the weight
budget), and stores `state_dict()` in its checkpoint. Every junction keeps the pattern file's number of
weights N_i * fo_i (the budget) after pruning and after every update; a `random` pattern file also keeps
every right neuron's fan-in fi (`predsparse.methods.options.CONSTRAINTS`).

Choices where the papers leave room, stated once here:
- pruning is one-shot, at the start of the first fine-tuning epoch, on the weights the dense phase ended
  with: a copy of the dense model whose pruned junctions are replaced (`PatternNet.replace_junction`),
  drawing nothing from the global RNG; the fine-tuning optimiser starts afresh (its state belonged to the
  dense weights);
- SET gives new connections values from the run's initialisation law (`spec.init`; as SET draws random weights),
  RigL gives them 0 (as RigL does); both zero their optimiser state;
- the dense gradient RigL grows by is that of the update step's mini-batch, captured by hooks in the
  same backward pass (no extra pass), for the CL junctions only.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from predsparse.errors import ConfigError
from predsparse.methods import masks
from predsparse.methods.options import CONSTRAINTS, drop_fraction
from predsparse.nn.models import PatternNet, build_model
from predsparse.nn.sparse_linear import MaskedLinear, SparseLinear
from predsparse.patterns import Pattern, generate_pattern

if TYPE_CHECKING:
    from predsparse.spec import RunSpec


class Controller:
    """What every method shares: the pattern file as the weight budget, the constraint, the checkpoint."""

    def __init__(self, spec: RunSpec, template: Pattern):
        if template.kind not in CONSTRAINTS:
            raise ConfigError(f"run {spec.run_name}: method {spec.method['name']} needs a pattern of kind "
                              f"{' or '.join(CONSTRAINTS)} (the constraint to keep), got '{template.kind}'")
        self.spec, self.template = spec, template
        self.method = spec.method
        self.masked = CONSTRAINTS[template.kind] == "none"
        self.connections = template  # the current connections (the model's, from `build` on)

    def build(self) -> PatternNet:
        """The model of the current connections (the training loop loads its weights after a resume)."""
        spec = self.spec
        return build_model(spec.model, self.connections, spec.num_classes, init=spec.init, masked=self.masked,
                           dataset=spec.dataset)

    def attach(self, model: PatternNet, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def start_epoch(self, epoch: int) -> PatternNet | None:
        """Called before every epoch; a new model when the method replaced it (the loop makes its optimiser;
        the model given to `attach` stays as it was)."""
        return None

    def before_batch(self, step: int) -> None:
        """Called before the forward pass of optimiser step `step` (0-based over the whole run)."""

    def after_step(self, step: int) -> None:
        """Called after optimiser step `step`."""

    def eligible(self, epoch: int) -> bool:
        """Whether the model after `epoch` is at the weight budget (may be the run's result)."""
        return True

    def final_pattern(self, model: PatternNet) -> Pattern:
        """The connections `model` has (after the best epoch's weights were loaded), as a pattern."""
        return masks.pattern_of(model, self.template, self.template.kind, self._meta())

    def _meta(self) -> dict:
        return {"options": self.template.meta.get("options", {}), "method": self.method,
                "initial_seed": self.template.meta.get("seed")}

    def state_dict(self) -> dict:
        return {"connections": masks.pattern_to_tensor(masks.pattern_of(self.model, self.template,
                                                                       self.connections.kind, self._meta()))}

    def load_state_dict(self, state: dict) -> None:
        self.connections = masks.pattern_from_tensor(state["connections"], f"checkpoint of run {self.spec.run_name}")


class MagnitudePruning(Controller):
    """Dense training for `epochs - finetune_epochs` epochs, one-shot magnitude pruning to the budget,
    then fine-tuning of the sparse net (fixed fan-in: the fi largest |w| of every row; unconstrained:
    the N_i fo_i largest |w| of the junction)."""

    def __init__(self, spec: RunSpec, template: Pattern):
        super().__init__(spec, template)
        self.dense_epochs = spec.epochs - self.method["finetune_epochs"]
        self.connections = generate_pattern(template.net, template.net[1:], "dense", shapes=template.shapes)

    @property
    def pruned(self) -> bool:
        return self.connections.kind != "dense"

    def eligible(self, epoch: int) -> bool:
        return epoch > self.dense_epochs

    def start_epoch(self, epoch: int) -> PatternNet | None:
        if epoch <= self.dense_epochs or self.pruned:
            return None
        pruned, junctions = copy.deepcopy(self.model), []  # the dense model stays as it was
        for i, layer in enumerate(self.model.junctions()):
            n_left, n_right = self.template.net[i], self.template.net[i + 1]
            if self.template.fanouts[i] == n_right:  # a dense junction of the budget stays dense
                junctions.append(masks.dense_junction(n_left, n_right))
                continue
            if self.masked:
                keep = masks.largest_overall(layer.weight.detach().abs(), n_left * self.template.fanouts[i])
                pruned.replace_junction(i, masks.kept_overall(layer, keep))
                junctions.append(masks.mask_junction(keep))
            else:
                index = masks.largest_per_row(layer.weight.detach().abs(), self.template.fanins[i])
                pruned.replace_junction(i, masks.kept_per_row(layer, index, i))
                junctions.append(masks.index_junction(index))
        self.connections = masks.pattern_from_junctions(self.template, junctions, self.template.kind, self._meta())
        return pruned


class DynamicSparse(Controller):
    """SET or RigL: every `update_every` steps until `stop`, replace a decaying fraction of each sparse
    junction's connections (the smallest |w|) by new ones (random: SET; largest dense |gradient|: RigL)."""

    def __init__(self, spec: RunSpec, template: Pattern, steps_per_epoch: int):
        super().__init__(spec, template)
        self.total_steps = spec.epochs * steps_per_epoch
        # Its own stream: the run's other random draws (init, shuffling) are those of a pre-defined run.
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.fraction = 0.0
        self.gradients: dict[int, torch.Tensor] = {}
        self._hooks: list = []

    def _sparse_junctions(self):
        return [(i, layer) for i, layer in enumerate(self.model.junctions())
                if isinstance(layer, (SparseLinear, MaskedLinear))]

    def before_batch(self, step: int) -> None:
        self.fraction = drop_fraction(self.method, step, self.total_steps)
        if self.fraction and self.method["name"] == "rigl":
            for i, layer in self._sparse_junctions():
                self._hooks.append(layer.register_forward_hook(self._capture(i), with_kwargs=True))

    def _capture(self, i: int):
        """A forward hook keeping dL/dW = grad_y^T x of junction i's dense weight matrix for this step."""
        def hook(module, inputs, kwargs, output):
            x = inputs[0].detach().reshape(-1, module.in_features)
            if kwargs.get("input_relu") or (len(inputs) > 1 and inputs[1]):  # a SparseLinear's fused ReLU
                x = torch.relu(x)

            def on_grad(grad):
                self.gradients[i] = grad.reshape(-1, module.out_features).t() @ x
            output.register_hook(on_grad)
        return hook

    def after_step(self, step: int) -> None:
        if not self.fraction:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for i, layer in self._sparse_junctions():
            self.update(i, layer, self.fraction)
        self.gradients.clear()

    def grow_scores(self, i: int, layer: nn.Module) -> torch.Tensor:
        shape = (layer.out_features, layer.in_features)
        if self.method["name"] == "rigl":
            return self.gradients[i].abs()
        return torch.rand(shape, generator=self.generator).to(layer.weight.device)

    def update(self, i: int, layer: nn.Module, fraction: float) -> None:
        """Replace `fraction` of junction i's connections (per row for a SparseLinear)."""
        rigl = self.method["name"] == "rigl"
        if isinstance(layer, SparseLinear):
            k = round(fraction * layer.fan_in)
            if k == 0:
                return
            new_values = (torch.zeros(layer.out_features, k) if rigl else
                          masks.init_like(torch.empty(layer.out_features, k), torch.tensor(float(layer.fan_in)),
                                          self.generator, self.spec.init, layer.in_features))
            masks.replace_per_row(layer, k, self.grow_scores(i, layer), new_values.to(layer.weight.device),
                                  self.optimizer)
        else:
            k = round(fraction * int(layer.mask.sum()))
            if k == 0:
                return
            scores = self.grow_scores(i, layer)
            # The rows' present fan-ins set the law; values are read only where connections are grown.
            new_values = (torch.zeros_like(layer.weight) if rigl else
                          masks.init_like(layer.weight, layer.mask.sum(1, keepdim=True), self.generator,
                                          self.spec.init, layer.in_features))
            masks.replace_overall(layer, k, scores, new_values, self.optimizer)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


def make_controller(spec: RunSpec, template: Pattern, steps_per_epoch: int) -> Controller | None:
    """The controller of the spec's method; None for fixed connections."""
    if not spec.method:
        return None
    if spec.method["name"] == "prune":
        return MagnitudePruning(spec, template)
    return DynamicSparse(spec, template, steps_per_epoch)
