"""Pre-defined sparse connectivity patterns (fixed fan-in fi and fan-out fo per junction)."""

from predsparse.patterns.format import (
    Pattern,
    as_pattern,
    check_net,
    fan_out_index,
    fanins,
    load_pattern,
    nearest_valid_fanouts,
    pattern_from_arrays,
    valid_fanouts,
    validate_fan_in,
    validate_junction,
)
from predsparse.patterns.generate import KINDS, generate_pattern

__all__ = [
    "KINDS",
    "Pattern",
    "as_pattern",
    "check_net",
    "fan_out_index",
    "fanins",
    "generate_pattern",
    "load_pattern",
    "nearest_valid_fanouts",
    "pattern_from_arrays",
    "valid_fanouts",
    "validate_fan_in",
    "validate_junction",
]
