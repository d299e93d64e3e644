"""Splitting an overall CL density across junctions: the paper's rule, uniform, and ERK.

`target_densities(net, overall, rule)` gives the junction densities d_i a rule asks for, with
sum_i d_i N_i N_{i+1} = overall * sum_i N_i N_{i+1}:

- `paper`: the paper's qualitative finding (later junctions should be denser, Sec. 2.4 and App. 5.1) made
  concrete: every junction PAPER_RATIO = 3 times as dense as the one before (Fig. 3c's best split of a
  two-junction net is 25 % / 75 %);
- `uniform`: every junction at `overall`;
- `erk`: Erdos-Renyi as RigL (Evci et al. 2020) applies it to dense layers: d_i proportional to
  (N_i + N_{i+1}) / (N_i N_{i+1}). On a net symmetric in its layer sizes (Morse 64-1024-64) it equals
  uniform.

A density above 100 % is capped at 100 % and its excess spread over the other junctions, which keep the
rule's ratios among themselves.

`allocate(net, overall, rule)` rounds the targets to valid fan-outs (whole fan-ins). Each junction in
turn is the absorber: every other junction takes one of the two valid fan-outs around its target fan-out
d_i N_{i+1} (nearest below, nearest above), and the absorber one of the two around the fan-out that meets
`overall` exactly. A candidate is absorbed when that exact fan-out lies in the absorber's valid range
and the candidate's weight count is within half an absorber step of overall * dense weights. Absorbed
candidates win, by junction densities closest to the targets in log (sum of squared log ratios), then by
overall density closest to `overall`, then by smaller fan-outs; only if none is absorbed (the overall
density is out of the net's reach around the targets) does the overall density closest to `overall` win.

So the overall density is met to within half a step of some junction, and exactly where a junction can
take up the others' rounding exactly (every Morse 64-1024-64 target: both junctions step by 1024 weights).

Why not the valid split closest in overall density among all splits: on nets with a coarse junction the
weight counts of different splits never tie (MNIST 784-224-10: W = 1568 k + 1120 m with fo = 2 k, 5 m),
so the overall density alone would pick the split and every rule would get the same fan-outs. Within a
junction's step the rule decides (MNIST 784-224-10 at 12.5 %: uniform and paper 26,5 at 12.09 %, erk
26,10 at 12.72 %, since fo_2 can only be 5 or 10).
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Sequence

from predsparse.errors import PatternError
from predsparse.patterns.format import check_net, valid_fanouts

RULES = ("paper", "uniform", "erk")
PAPER_RATIO = 3  # each junction this many times as dense as the one before (paper rule)


def _check(net: Sequence[int], overall: float, rule: str) -> tuple[int, ...]:
    net, _ = check_net(net)
    if rule not in RULES:
        raise PatternError(f"allocation rule {rule!r} is not one of {list(RULES)}")
    ok = isinstance(overall, (int, float)) and not isinstance(overall, bool) and 0.0 < overall <= 1.0
    if not ok:
        raise PatternError(f"overall density {overall!r} must be a number in (0, 1] (a fraction, e.g. 0.125 for 12.5%)")
    return net


def target_densities(net: Sequence[int], overall: float, rule: str) -> tuple[float, ...]:
    """The junction densities (fractions) `rule` gives `net` at overall CL density `overall`."""
    net = _check(net, overall, rule)
    dense = [a * b for a, b in zip(net[:-1], net[1:])]
    if rule == "uniform":
        relative = [1.0] * len(dense)
    elif rule == "paper":
        relative = [float(PAPER_RATIO) ** i for i in range(len(dense))]
    else:
        relative = [(a + b) / (a * b) for a, b in zip(net[:-1], net[1:])]
    budget = overall * sum(dense)
    capped: set[int] = set()
    # Capping one junction frees budget for the rest, raising their scale: cap until nothing exceeds 1.
    while True:
        free = [i for i in range(len(dense)) if i not in capped]
        if not free:
            break
        scale = (budget - sum(dense[i] for i in capped)) / sum(relative[i] * dense[i] for i in free)
        over = {i for i in free if scale * relative[i] > 1.0}
        if not over:
            break
        capped |= over
    return tuple(1.0 if i in capped else min(1.0, scale * relative[i]) for i in range(len(dense)))


def _around(valid: list[int], fanout: float) -> list[int]:
    """The valid fan-outs nearest to `fanout` from below and from above (one at either end of the range)."""
    at = bisect.bisect_left(valid, fanout)
    return sorted({valid[max(at - 1, 0)], valid[min(at, len(valid) - 1)]})


def allocate(net: Sequence[int], overall: float, rule: str) -> tuple[int, ...]:
    """Valid fan-outs of `net` near the densities `rule` asks for at overall density `overall` (module doc)."""
    net = _check(net, overall, rule)
    lefts, rights = net[:-1], net[1:]
    valid = [valid_fanouts(a, b) for a, b in zip(lefts, rights)]
    wanted = [t * b for t, b in zip(target_densities(net, overall, rule), rights)]  # target fan-outs
    budget = overall * sum(a * b for a, b in zip(lefts, rights))
    around = [_around(v, w) for v, w in zip(valid, wanted)]
    best: dict[tuple[int, ...], tuple] = {}
    for absorber, (left, grid) in enumerate(zip(lefts, valid)):
        half_step = left * grid[0] / 2  # grid[0] is the junction's step: every valid fan-out is a multiple of it
        for fixed in itertools.product(*around[:absorber], *around[absorber + 1:]):
            split = [*fixed[:absorber], 0, *fixed[absorber:]]
            exact = (budget - sum(a * fo for a, fo in zip(lefts, split))) / left  # meets `overall` exactly
            for fo in _around(grid, exact):
                split[absorber] = fo
                fanouts = tuple(split)
                miss = round(abs(sum(a * f for a, f in zip(lefts, fanouts)) - budget), 6)
                spread = round(sum(math.log(f / w) ** 2 for f, w in zip(fanouts, wanted)), 12)
                absorbed = grid[0] <= exact <= grid[-1] and miss <= half_step * (1 + 1e-12)
                key = (0, spread, miss, fanouts) if absorbed else (1, miss, spread, fanouts)
                best[fanouts] = min(key, best.get(fanouts, key))
    return min(best.values())[-1]
