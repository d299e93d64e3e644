"""The `method` of a run spec: how the sparse connections of a run come about (torch-free).

- `{}` (no method): the pattern file's connections are fixed before training (the paper's pre-defined
  sparsity; also dense and CSC runs).
- `prune`: train the dense net for `epochs - finetune_epochs` epochs, keep the largest-magnitude weights of
  each junction (as many as the pattern file has), fine-tune the sparse net for `finetune_epochs` epochs.
- `set` / `rigl`: dynamic sparse training from the pattern file's connections. Every `update_every`
  optimiser steps, until `stop` of the training steps, a fraction of each junction's connections (the
  `fraction` at step 0, decayed by `schedule`) with the smallest magnitudes is dropped and as many are
  grown: at random (SET, Mocanu et al. 2018) or where the dense gradient is largest (RigL, Evci et al.
  2020). The number of connections never changes.

The pattern file's kind sets the constraint: a `random` pattern (fixed fan-in fi) keeps every right
neuron's fan-in fi, so the net runs on `SparseLinear` throughout; an `unstructured` pattern keeps only each
junction's number of connections (masked dense layers).
"""

from __future__ import annotations

import json
import math
from typing import Any

from predsparse.errors import ConfigError

METHODS = ("prune", "set", "rigl")
SCHEDULES = ("cosine", "constant")
# Kinds of pattern file a method starts from, and the constraint each one implies.
CONSTRAINTS = {"random": "fan-in", "unstructured": "none"}
# RigL's published defaults (update every 100 steps, fraction 0.3 with cosine decay, frozen after 75 %).
DYNAMIC_DEFAULTS = {"update_every": 100, "fraction": 0.3, "schedule": "cosine", "stop": 0.75}


def _number(where: str, key: str, value: Any, low: float, high: float, *, integer: bool = False,
            low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        kind = "an integer" if integer else "a number"
        low_text = f"> {low:g}" if low_open else f">= {low:g}"
        high_text = "" if math.isinf(high) else (f" and < {high:g}" if high_open else f" and <= {high:g}")
        raise ConfigError(f"{where}: method option '{key}' must be {kind} {low_text}{high_text}, got {value!r}")


def parse_method(raw: Any, epochs: int, where: str = "run spec") -> dict[str, Any]:
    """The canonical method dict of `raw` (a name, a mapping with `name`, or None), defaults filled in.

    `{}` stands for fixed connections (raw None, {} or 'predefined'). `epochs` is the run's epochs (pruning
    needs at least one dense and one fine-tuning epoch).
    """
    if raw is None or raw == {} or raw == "predefined":
        return {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: method must be a name or a mapping with 'name', got {type(raw).__name__}")
    name = raw.get("name")
    if name not in METHODS:
        raise ConfigError(f"{where}: method '{name}' is not one of {['predefined', *METHODS]}")
    if name == "prune":
        valid = {"name", "finetune_epochs"}
        default_finetune = max(1, epochs // 2)
        method = {"name": name, "finetune_epochs": raw.get("finetune_epochs", default_finetune)}
    else:
        valid = {"name", *DYNAMIC_DEFAULTS}
        method = {"name": name, **{k: raw.get(k, v) for k, v in DYNAMIC_DEFAULTS.items()}}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"{where}: method {name} has unknown option(s) {unknown}; valid options: {sorted(valid - {'name'})}")
    if name == "prune":
        if epochs < 2:
            raise ConfigError(f"{where}: method prune needs epochs >= 2 (a dense phase and fine-tuning), got {epochs}")
        _number(where, "finetune_epochs", method["finetune_epochs"], 1, epochs, integer=True, high_open=True)
        method["finetune_epochs"] = int(method["finetune_epochs"])
    else:
        _number(where, "update_every", method["update_every"], 1, math.inf, integer=True)
        _number(where, "fraction", method["fraction"], 0, 1, low_open=True, high_open=True)
        _number(where, "stop", method["stop"], 0, 1, low_open=True)
        if method["schedule"] not in SCHEDULES:
            raise ConfigError(f"{where}: method option 'schedule' '{method['schedule']}' is not one of {list(SCHEDULES)}")
        method["update_every"] = int(method["update_every"])
        method["fraction"], method["stop"] = float(method["fraction"]), float(method["stop"])
    return method


def drop_fraction(method: dict[str, Any], step: int, total_steps: int) -> float:
    """The fraction of connections replaced at optimiser step `step` (0-based); 0 when no update is due.

    Updates happen after steps update_every, 2 update_every, ... while step < stop * total_steps; the
    cosine schedule decays fraction to 0 at the stop step: f(t) = fraction / 2 * (1 + cos(pi t / T_stop)).
    """
    done = step + 1
    end = method["stop"] * total_steps
    if done % method["update_every"] or done >= end:
        return 0.0
    if method["schedule"] == "constant":
        return method["fraction"]
    return method["fraction"] / 2 * (1 + math.cos(math.pi * done / end))


def options_json(method: dict[str, Any]) -> str:
    """A method's options without its name as compact JSON (the `method_options` column); "" when fixed."""
    if not method:
        return ""
    return json.dumps({k: v for k, v in method.items() if k != "name"}, sort_keys=True, separators=(",", ":"))
