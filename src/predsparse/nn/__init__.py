"""Neural-network layers of pre-defined sparse junctions (fixed fan-in fi, fixed fan-out fo)."""

from predsparse.nn.csc import CSCLinear, csc_linear_layers
from predsparse.nn.sparse_linear import MaskedLinear, SparseLinear, layers_from_pattern

__all__ = ["CSCLinear", "MaskedLinear", "SparseLinear", "csc_linear_layers", "layers_from_pattern"]
