"""Ways to arrive at a sparse net other than fixing its connections before training.

- `options`: the `method` of a run spec (prune, set, rigl) and its options, checked without torch;
- `allocation`: how an overall density is split across junctions (the paper's rule, uniform, ERK);
- `masks`: the tensor operations every method shares (keep the largest, regrow, budget checks);
- `controllers`: magnitude pruning and dynamic sparse training (SET, RigL) inside `predsparse.train`; they
  change a model's connections through its junction API (`PatternNet.junctions`, `replace_junction`);
- `csc_growth`: bottom-up training of CSC nets along the growth ladder of `predsparse.patterns.csc`.

A pre-defined sparse run (the paper's method) has no `method`: its connections never change.
"""
