"""Initialisation of the connected layers (CLs): a run setting (`RunSpec.init`), recorded with every run.

- `uniform` (ours, the layers' own `reset_parameters`): every existing weight and bias of junction i
  ~ U(-1/sqrt(fi_i), +1/sqrt(fi_i)), as `torch.nn.Linear` does with its true fan-in. The pre-activation
  variance is then the same at every density.
- `he_dense` (the authors' Keras code): He normal over the *dense* fan-in, weight ~ N(0, 2 / N_i) with N_i
  the full width of the left layer, and only the existing connections kept; biases 0. A sparse junction's
  pre-activation variance then shrinks with its density (about fi_i / N_i of the dense one's).

Only CL junctions are touched (`SparseLinear`, `MaskedLinear`, dense `nn.Linear`); conv stacks keep
torch's defaults and CSC support layers their own law (their fan-in is the radix, not a layer width).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from predsparse.catalog import INITS
from predsparse.errors import ConfigError
from predsparse.nn.sparse_linear import MaskedLinear, SparseLinear


def he_dense_(layer: nn.Module) -> None:
    """Weights ~ N(0, 2 / in_features) on the connections that exist, biases 0 (in place)."""
    std = math.sqrt(2.0 / layer.in_features)
    with torch.no_grad():
        layer.weight.normal_(0.0, std)
        if isinstance(layer, MaskedLinear):  # absent weights are held at 0 (they never act)
            layer.weight.mul_(layer.mask)
        if layer.bias is not None:
            layer.bias.zero_()


def initialise_junctions(junctions: nn.ModuleList, scheme: str) -> None:
    """Apply `scheme` (one of INITS) to every CL junction; `uniform` leaves the layers' own init."""
    if scheme not in INITS:
        raise ConfigError(f"init '{scheme}' is not one of {list(INITS)}")
    if scheme == "uniform":
        return
    for layer in junctions:
        if isinstance(layer, (SparseLinear, MaskedLinear, nn.Linear)):
            he_dense_(layer)
