"""CSC layers: one dense layer N_in -> N_out as a few sequential sparse support layers.

Reconstruction from the abstract of Hosseini et al. (DAC 2019); the construction, the non-square rule
and the weight counts are those of `predsparse.patterns.csc`. Each support layer is a `SparseLinear` on
the cyclic fan-in index (the ordinary index path; the index could be computed on the fly, see
`predsparse.patterns.csc.cyclic_fan_in`, but the gathers need it in memory anyway on CPU and GPU).

- `CSCLinear(in_features, out_features, radices, activation=None, bias=True)`: zero-pads a compressing
  layer's input to Nbig, runs the L support layers, drops an expanding layer's padding outputs.
- `activation`: what sits between the support layers: None (the default: a CSC layer is then one linear
  map, a structured factorisation of the dense layer it replaces) or "relu" (the support layers become
  hidden layers of their own). The default was chosen by measurement on Morse (64, 1024, 64), baseline
  variant, 1000/200/200 samples per class, 20 epochs, 2 seeds, CSC nets at 8x, 16x and 23x compression:
  without activation the best validation accuracy was higher in all 12 pairs, by 3 to 9 points with
  Adam (lr 1e-3) and 5 to 14 points with SGD (lr 0.05, momentum 0.9).
- Biases: the last support layer has the layer's bias. Intermediate support layers have biases only
  with an activation between them (without one, their biases would only add to the last one's).
- Initialisation: support layer l ~ U(-b, b) with b = sqrt(3 g_l / fi_l), so that it multiplies the
  variance of its input by g_l (fi_l = its real fan-in): g = 1 between linear support layers, 2 before a
  ReLU (He), and 1/3 for the last one. The whole CSC layer then scales the input variance by 1/3, as an
  nn.Linear of the same shape does at its default initialisation. The output bias ~ U(+-1/sqrt(N_in)),
  as nn.Linear's; intermediate biases start at 0.
- `csc_linear_layers(pattern)`: the CSC layers of a 'csc' pattern file, one CSCLinear per dense layer of
  the pattern's real net (`meta['csc_net']`), for a model to chain with ReLU between them.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from predsparse.errors import ConfigError
from predsparse.nn.sparse_linear import SparseLinear
from predsparse.patterns import Pattern, as_pattern
from predsparse.patterns.csc import CSCLayer, csc_layers_from_pattern

ACTIVATIONS = (None, "relu")
DEFAULT_ACTIVATION = None


class CSCLinear(nn.Module):
    """A CSC layer: L support layers of radices r_1..r_L replacing a dense in_features -> out_features layer."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        radices: Sequence[int],
        activation: str | None = DEFAULT_ACTIVATION,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"CSC activation {activation!r} is not one of {list(ACTIVATIONS)}")
        self.layer = CSCLayer(int(in_features), int(out_features), tuple(radices))
        self.in_features, self.out_features = self.layer.n_in, self.layer.n_out
        self.activation = activation
        widths, last = self.layer.widths, self.layer.num_support - 1
        self.support = nn.ModuleList(
            SparseLinear(
                widths[l], widths[l + 1], np.sort(self.layer.fan_in_index(l), axis=1),
                bias=bias if l == last else activation is not None, junction=l, device=device, dtype=dtype,
            )
            for l in range(self.layer.num_support)
        )
        self.reset_parameters()

    @property
    def radices(self) -> tuple[int, ...]:
        return self.layer.radices

    def reset_parameters(self) -> None:
        last = len(self.support) - 1
        inner_gain = 2.0 if self.activation == "relu" else 1.0
        with torch.no_grad():
            for l, stage in enumerate(self.support):
                gain = 1.0 / 3.0 if l == last else inner_gain
                bound = math.sqrt(3.0 * gain / stage.fan_in)
                stage.weight.uniform_(-bound, bound)
                if stage.bias is not None:
                    if l == last:
                        stage.bias.uniform_(-1 / math.sqrt(self.in_features), 1 / math.sqrt(self.in_features))
                    else:
                        stage.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.layer.widths[0] - self.in_features
        if pad:
            x = nn.functional.pad(x, (0, pad))
        last = len(self.support) - 1
        for l, stage in enumerate(self.support):
            x = stage(x)
            if l < last and self.activation == "relu":
                x = torch.relu(x)
        if self.layer.widths[-1] != self.out_features:
            x = x[..., : self.out_features]
        return x

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, radices={list(self.radices)}, "
            f"activation={self.activation}, weights={self.layer.weights} (dense {self.layer.dense_weights})"
        )


def csc_linear_layers(path_or_pattern: Pattern | str | os.PathLike, activation: str | None = DEFAULT_ACTIVATION,
                      bias: bool = True) -> list[CSCLinear]:
    """One CSCLinear per dense layer of a 'csc' pattern's real net (`meta['csc_net']`), in order.

    The counterpart of `layers_from_pattern` for CSC patterns: the caller puts ReLU between them and
    takes logits from the last. The support layers of layer i are `layers[i].support`, in the order of
    the pattern's junctions; a pattern whose junctions are not the cyclic ones of its meta is refused.
    """
    pattern = as_pattern(path_or_pattern)
    return [CSCLinear(layer.n_in, layer.n_out, layer.radices, activation, bias)
            for layer in csc_layers_from_pattern(pattern)]
