"""Layers shared by the tests of SparseLinear and its kernels (tests/ is on sys.path under pytest)."""

import torch

from predsparse.nn import SparseLinear
from predsparse.patterns import generate_pattern


def random_layer(n_in, n_out, fo, seed=0, bias=True, dtype=torch.float32):
    """A SparseLinear on a random pattern of fan-out fo, its pattern and parameters drawn from `seed`."""
    torch.manual_seed(seed)
    pattern = generate_pattern([n_in, n_out], [fo], "random", seed)
    return SparseLinear.from_pattern(pattern, 0, bias=bias, dtype=dtype)
