"""Layers of a pre-defined sparse junction: `SparseLinear` stores only the existing connections.

A junction joins N_i left neurons (in_features) to N_{i+1} right neurons (out_features); every right
neuron has fan-in fi and every left neuron fan-out fo, so it has N_{i+1} * fi = N_i * fo weights and
density fi / N_i = fo / N_{i+1}.

- `SparseLinear`: weight (N_{i+1}, fi), the fan-in index of the pattern file (`j1`, `j2`, ...) as a buffer.
- `MaskedLinear`: a dense weight times a fixed 0/1 mask. It saves nothing; it is the reference of the
  tests, the "masked dense" baseline of the benchmark (what peers do), and the layer of junctions
  without fixed fan-in (pattern kind `unstructured`).
- `layers_from_pattern`: the connected layers of an MLP from a pattern file.
"""

from __future__ import annotations

import math
import operator
import os

import numpy as np
import torch
from torch import nn

from predsparse.errors import PatternError
from predsparse.nn.functional import sparse_linear
from predsparse.patterns.format import Pattern, as_pattern, fan_out_index, validate_fan_in, validate_junction

__all__ = ["SparseLinear", "MaskedLinear", "layers_from_pattern"]


def _pattern_with_junction(path_or_pattern: Pattern | str | os.PathLike, junction: int) -> Pattern:
    pattern = as_pattern(path_or_pattern)
    if not 0 <= junction < pattern.num_junctions:
        raise PatternError(
            f"junction {junction} does not exist: net {list(pattern.net)} has junctions 0..{pattern.num_junctions - 1}"
            " (0-based)"
        )
    return pattern


def _add_parameters(module: nn.Module, weight_shape: tuple[int, int], bias: bool, device, dtype) -> None:
    """weight (weight_shape) and, if asked, one bias per right neuron, initialised by reset_parameters."""
    factory = {"device": device, "dtype": dtype}
    module.weight = nn.Parameter(torch.empty(weight_shape, **factory))
    module.register_parameter("bias", nn.Parameter(torch.empty(weight_shape[0], **factory)) if bias else None)
    module.reset_parameters()


def _check_sizes(in_features, out_features) -> tuple[int, int]:
    sizes = []
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        try:
            sizes.append(operator.index(value))
        except TypeError:
            sizes.append(0)
        if sizes[-1] < 1:
            raise PatternError(f"{name} = {value!r}: a layer needs a whole number of at least 1 neuron")
    return sizes[0], sizes[1]


def _checked_fan_in_index(fan_in_index, in_features: int, out_features: int, junction: int,
                          fixed_fan_out: bool = True) -> np.ndarray:
    """The fan-in index as int32 (N_{i+1}, fi), after checking everything a wrong result could come from."""
    where = f"junction {junction + 1} ({in_features}->{out_features})"
    try:
        index = np.asarray(fan_in_index.detach().cpu() if torch.is_tensor(fan_in_index) else fan_in_index)
    except ValueError as exc:  # ragged nested lists
        raise PatternError(f"{where}: fan-in index is not a rectangular array: {exc}") from None
    if index.ndim != 2 or index.shape[0] != out_features or index.shape[1] < 1:
        raise PatternError(
            f"{where}: fan-in index has shape {tuple(index.shape)}, expected (out_features={out_features}, fi) with fi >= 1"
        )
    # Rows may come in any order; sorting a copy turns a repeated entry into a non-increasing step.
    if not fixed_fan_out:
        validate_fan_in(np.sort(index, axis=1), in_features, out_features, junction + 1, where)
        return index.astype(np.int32)
    if index.size % in_features:
        raise PatternError(
            f"{where}: {index.size} connections cannot give every one of the {in_features} left neurons the same"
            f" fan-out (fi = {index.shape[1]} must make N_{{i+1}} * fi a multiple of N_i)"
        )
    validate_junction(np.sort(index, axis=1), in_features, out_features, index.size // in_features, junction + 1)
    return index.astype(np.int32)


class SparseLinear(nn.Module):
    """y = x W^T + b over the fixed connections of one junction; stores N_{i+1} * fi weights only.

    Args:
        in_features: N_i.
        out_features: N_{i+1}.
        fan_in_index: int array or tensor (N_{i+1}, fi); row j lists the left neurons feeding right neuron j
            (the pattern file's `j1`, `j2`, ...; rows need not be sorted). weight[j, k] belongs to the
            connection fan_in_index[j, k]. Every left neuron must appear in exactly fo = N_{i+1} fi / N_i rows.
        bias: whether to learn a bias per right neuron.
        junction: 0-based junction number, only used to name the junction in error messages.
        fixed_fan_out: require every left neuron to have the same fan-out fo (a pre-defined pattern). False
            accepts any fan-outs (a fixed fan-in left by pruning or rewiring, see `rewire`); the fan-out index
            is then padded to the largest fan-out (`predsparse.patterns.fan_out_index`).

    Initialisation: weight and bias ~ U(-1/sqrt(fi), 1/sqrt(fi)). This is nn.Linear's default law with the
    real fan-in fi in place of in_features, so a right neuron's pre-activation has the same variance at any
    density (and a fully dense junction is initialised exactly like nn.Linear).

    Forward accepts float32/float64 on the CPU, float32/bfloat16 on CUDA (Triton). Buffers: `fan_in_index`
    (int32, saved in the state dict) and the transposed fixed fan-out index `fan_out_right`,
    `fan_out_position` (int32, derived, rebuilt when a state dict is loaded). Bad indices raise PatternError
    here, at construction or loading, never a wrong result later.

    Shape:
        - Input: (*, H_in), where * is any number of dimensions (none included) and H_in = in_features.
        - Output: (*, H_out), where H_out = out_features.

        The output is a transposed view, not a contiguous tensor: every backend computes the feature-major
        (H_out, B) product, B the number of samples in *, and returns its transpose (`SparseLinearFunction`
        in `predsparse.nn.functional`; its strides are (1, B) for a 2-D input). The next sparse layer reads
        such a view without a copy; `.reshape()` works on it, `.view()` needs `.contiguous()` first.

    Examples::

        >>> import torch
        >>> from predsparse.nn import SparseLinear
        >>> # right neuron 0 reads inputs 0 and 1, right neuron 1 reads inputs 2 and 3
        >>> layer = SparseLinear(4, 2, [[0, 1], [2, 3]])
        >>> layer
        SparseLinear(in_features=4, out_features=2, fi=2, fo=1, density=0.5, bias=True)
        >>> layer.weight.shape  # only the existing connections: (out_features, fi)
        torch.Size([2, 2])
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        ...     _ = layer.bias.zero_()
        >>> layer.dense_weight()
        tensor([[1., 2., 0., 0.],
                [0., 0., 3., 4.]])
        >>> x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
        >>> y = layer(x)
        >>> y.detach()
        tensor([[3., 7.],
                [1., 4.],
                [2., 3.]])
        >>> torch.equal(y, x @ layer.dense_weight().t() + layer.bias)
        True
        >>> y.shape, y.stride(), y.is_contiguous()  # a transposed view
        (torch.Size([3, 2]), (1, 3), False)
        >>> y.contiguous().view(-1).shape
        torch.Size([6])
        >>> layer(torch.rand(5, 7, 4)).shape
        torch.Size([5, 7, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        fan_in_index,
        bias: bool = True,
        *,
        junction: int = 0,
        fixed_fan_out: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_features, self.out_features = _check_sizes(in_features, out_features)
        self.junction = junction
        self.fixed_fan_out = fixed_fan_out
        index = _checked_fan_in_index(fan_in_index, self.in_features, self.out_features, junction, fixed_fan_out)
        self.register_buffer("fan_in_index", torch.from_numpy(index).to(device))
        self.register_buffer("fan_out_right", torch.empty(0, dtype=torch.int32, device=device), persistent=False)
        self.register_buffer("fan_out_position", torch.empty(0, dtype=torch.int32, device=device), persistent=False)
        self._build_fan_out_index()
        _add_parameters(self, (self.out_features, self.fan_in), bias, device, dtype)

    @classmethod
    def from_pattern(cls, path_or_pattern: Pattern | str | os.PathLike, junction: int, bias: bool = True, **kwargs):
        """The layer of junction `junction` (0-based) of a pattern (a `Pattern` or a pattern file path)."""
        pattern = _pattern_with_junction(path_or_pattern, junction)
        index = pattern.fan_in_index(junction)
        return cls(pattern.net[junction], pattern.net[junction + 1], index, bias, junction=junction, **kwargs)

    @property
    def fan_in(self) -> int:
        """fi: connections into every right neuron."""
        return self.fan_in_index.shape[1]

    @property
    def fan_out(self) -> float:
        """fo: connections out of every left neuron (their mean where fan-outs differ)."""
        fo = self.out_features * self.fan_in / self.in_features
        return int(fo) if fo.is_integer() else fo

    @property
    def density(self) -> float:
        """fi / N_i = fo / N_{i+1}: the fraction of the N_i x N_{i+1} possible connections that exist."""
        return self.fan_in / self.in_features

    def _build_fan_out_index(self) -> None:
        right, position = fan_out_index(self.fan_in_index.cpu().numpy(), self.in_features, pad=not self.fixed_fan_out)
        device = self.fan_in_index.device
        self.fan_out_right = torch.from_numpy(right.astype(np.int32)).to(device)
        self.fan_out_position = torch.from_numpy(position.astype(np.int32)).to(device)

    @torch.no_grad()
    def rewire(self, fan_in_index) -> None:
        """Replace the connections with `fan_in_index` (N_{i+1}, fi), same fi, any fan-outs; the weights stay
        as they are (weight[j, k] now belongs to connection fan_in_index[j, k]). For pruning and dynamic
        sparse training (`predsparse.methods`)."""
        index = _checked_fan_in_index(fan_in_index, self.in_features, self.out_features, self.junction, False)
        if index.shape != tuple(self.fan_in_index.shape):
            raise PatternError(f"rewire: fan-in index has shape {index.shape}, this layer's is "
                               f"{tuple(self.fan_in_index.shape)} (the fan-in fi cannot change)")
        self.fixed_fan_out = False
        self.fan_in_index.copy_(torch.from_numpy(index))
        self._build_fan_out_index()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, input_relu: bool = False) -> torch.Tensor:
        """y = x W^T + b; with `input_relu`, y = relu(x) W^T + b, the ReLU fused into the products where the
        kernels can (a hidden layer's activation then costs no pass of its own, forward or backward)."""
        return sparse_linear(x, self.weight, self.bias, self.fan_in_index, self.fan_out_right, self.fan_out_position,
                             input_relu)

    def adjacency(self) -> torch.Tensor:
        """Boolean (N_{i+1}, N_i) connection matrix A_i (dense: for tests and small layers)."""
        a = torch.zeros(self.out_features, self.in_features, dtype=torch.bool, device=self.weight.device)
        return a.scatter_(1, self.fan_in_index.long(), True)

    def dense_weight(self) -> torch.Tensor:
        """The (N_{i+1}, N_i) weight matrix with zeros at missing connections (dense: for tests and export)."""
        w = torch.zeros(self.out_features, self.in_features, dtype=self.weight.dtype, device=self.weight.device)
        return w.scatter_(1, self.fan_in_index.long(), self.weight.detach())

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fi={self.fan_in}, "
            f"fo={self.fan_out if self.fixed_fan_out else f'{self.fan_out:.4g} (mean)'},"
            f" density={self.density:.4g}, bias={self.bias is not None}"
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "fan_in_index"
        if key in state_dict:
            index = _checked_fan_in_index(state_dict[key], self.in_features, self.out_features, self.junction,
                                          self.fixed_fan_out)
            if index.shape != tuple(self.fan_in_index.shape):
                raise PatternError(
                    f"state dict {key} has fan-in {index.shape[1]}, but this layer has fi = {self.fan_in};"
                    " build the layer from the same pattern"
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        if key in state_dict:
            self._build_fan_out_index()


class MaskedLinear(nn.Module):
    """y = x (W * M)^T + b with a dense weight W and a fixed 0/1 mask M (N_{i+1}, N_i).

    Stores and computes the full dense matrix, like the authors' Keras code and torch.nn.utils.prune: no
    saving at all. Gradients of masked-out weights are zero. Initialisation: row j ~ U(-1/sqrt(fi_j),
    1/sqrt(fi_j)) with fi_j the real fan-in of right neuron j (the same law as SparseLinear, also valid
    when fan-ins differ, as in unstructured junctions).
    """

    def __init__(self, in_features: int, out_features: int, mask, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = _check_sizes(in_features, out_features)
        mask = torch.as_tensor(np.asarray(mask.detach().cpu() if torch.is_tensor(mask) else mask))
        if tuple(mask.shape) != (self.out_features, self.in_features):
            raise PatternError(
                f"mask has shape {tuple(mask.shape)}, expected (out_features, in_features) = "
                f"({self.out_features}, {self.in_features})"
            )
        if mask.is_floating_point() or mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
            raise PatternError("mask must hold only 0/1 (or False/True) integers")
        self.register_buffer("mask", mask.to(device=device, dtype=torch.bool))
        _add_parameters(self, (self.out_features, self.in_features), bias, device, dtype)

    @classmethod
    def from_pattern(cls, path_or_pattern: Pattern | str | os.PathLike, junction: int, bias: bool = True, **kwargs):
        """The masked layer of junction `junction` (0-based), fixed or unstructured (CSR) alike."""
        pattern = _pattern_with_junction(path_or_pattern, junction)
        right, left = pattern.edges(junction)
        mask = torch.zeros(pattern.net[junction + 1], pattern.net[junction], dtype=torch.bool)
        mask[torch.from_numpy(right), torch.from_numpy(left)] = True
        return cls(pattern.net[junction], pattern.net[junction + 1], mask, bias, **kwargs)

    @property
    def density(self) -> float:
        return self.mask.sum().item() / self.mask.numel()

    def reset_parameters(self) -> None:
        fan_in = self.mask.sum(1, keepdim=True).clamp(min=1).to(self.weight)
        bound = fan_in.rsqrt()
        with torch.no_grad():
            self.weight.uniform_(-1, 1).mul_(bound)
            if self.bias is not None:
                self.bias.uniform_(-1, 1).mul_(bound[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, density={self.density:.4g},"
            f" bias={self.bias is not None}"
        )


def layers_from_pattern(path_or_pattern: Pattern | str | os.PathLike, bias: bool = True,
                        masked: bool = False) -> list[nn.Module]:
    """One layer per junction of a pattern, in order, for an MLP (the caller adds the activations).

    - fixed fan-in and fan-out, fo < N_{i+1}: `SparseLinear`;
    - fully dense (fo = N_{i+1}): `nn.Linear`. Its weight equals a SparseLinear's with fi = N_i (the rows
      of a dense fan-in index are 0..N_i-1) and it has the same initialisation law; dense BLAS is faster
      than any gather at density 1 (see `predsparse.nn.functional` for the measured crossover);
    - stored without fixed fan-out (CSR) but with the same fan-in on every row (a pruned or rewired
      junction): `SparseLinear` with free fan-outs;
    - any other junction (fan-ins differ: kind `unstructured`): `MaskedLinear`.
    `masked=True` makes every sparse junction a `MaskedLinear` (connections that may change freely).
    """
    pattern = as_pattern(path_or_pattern)
    layers: list[nn.Module] = []
    for i in range(pattern.num_junctions):
        n_left, n_right = pattern.net[i], pattern.net[i + 1]
        rows = None if pattern.is_fixed(i) else np.diff(pattern.indptr[i])
        if pattern.fanouts[i] == n_right:
            layers.append(nn.Linear(n_left, n_right, bias))
        elif masked or (rows is not None and (rows.min() != rows.max() or rows.min() == 0)):
            layers.append(MaskedLinear.from_pattern(pattern, i, bias))
        elif rows is None:
            layers.append(SparseLinear.from_pattern(pattern, i, bias))
        else:
            index = pattern.junctions[i].reshape(n_right, int(rows[0]))
            layers.append(SparseLinear(n_left, n_right, index, bias, junction=i, fixed_fan_out=False))
    return layers
