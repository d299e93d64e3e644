"""Ways to arrive at a sparse net other than fixing its connections before training.

- `options`: the `method` of a run spec (prune, set, rigl) and its options, checked without torch;
- `allocation`: how an overall density is split across junctions (the paper's rule, uniform, ERK);
- `masks`: the tensor operations every method shares (keep the largest, regrow, budget checks);
- `controllers`: magnitude pruning and dynamic sparse training (SET, RigL) inside `predsparse.train`.

A pre-defined sparse run (the paper's method) has no `method`: its connections never change.
"""
