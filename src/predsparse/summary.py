"""Columns of `results/summary.csv` and `results/history.csv`: the only inputs of figures and tables.

Fractions, not percent: accuracies and densities are in [0, 1]. Lists (net, fan-outs, junction
densities, scatter vector) are ';'-separated so a CSV cell holds one value.
"""

from __future__ import annotations

# One row per training run.
SUMMARY_COLUMNS = (
    "study",            # study name from config.yaml
    "run_id",           # RunSpec.run_id(): stable hash of the run's definition
    "run_name",         # readable name
    "method",           # dense | predefined (the paper) | csc | prune | set | rigl
    "method_options",   # JSON of the spec's method options (predsparse.methods.options); empty when fixed
    "allocation",       # paper | uniform | erk: the rule that split the overall density; empty when given
    "dataset",
    "variant",          # Morse variant; empty for other datasets
    "model",            # mlp | mnist_conv | cifar_conv
    "net",              # CL layer sizes, e.g. "64;1024;64"
    "fanouts",          # e.g. "128;8"
    "kind",             # pattern kind: dense | random | planned | unstructured | csc
    "pattern_options",  # JSON of the pattern options (e.g. clustering)
    "junction_densities",  # e.g. "0.125;0.125"
    "overall_density",
    "weights",          # CL weights present
    "dense_weights",    # CL weights of the fully connected net
    "conv_params",      # conv kernel weights and biases (0 for CL-only nets), counted on the model
    "conv_ops",         # conv multiply-accumulates per sample, counted on the model
    "scatter_vector",   # ';'-separated S = [S1f, S1b, ..., Sf, Sb] of the trained pattern (the final one)
    "scatter",          # min of the vector
    "scatter_neurons",  # all | real: which neurons the scatter averages over (real: padded layers' real ones)
    "seed",
    "epochs",
    "best_val_acc",
    "best_val_epoch",   # 1-based
    "val_acc_epoch1",
    "val_acc_epoch5",   # empty when the run has fewer than 5 epochs
    "test_acc",         # of the best-validation checkpoint
    "wall_time_s",
    "device",
    # The run's training settings (its spec), for protocol ablations; empty in summaries written before.
    "optimizer",        # adam | sgd
    "lr",
    "momentum",         # SGD only
    "weight_decay",
    "batch_size",
    "init",             # CL weight initialisation (predsparse.nn.init)
)

# One row per run per epoch.
HISTORY_COLUMNS = (
    "study",
    "run_id",
    "epoch",            # 1-based
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "wall_time_s",      # cumulative
)


def join_list(values) -> str:
    """[0.5, 0.25] -> '0.5;0.25' (the CSV cell form of a list)."""
    return ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values)


def split_list(cell, cast=float) -> list:
    """'0.5;0.25' -> [0.5, 0.25]; an empty or missing cell -> []."""
    if cell is None or (isinstance(cell, float) and cell != cell) or str(cell) == "":
        return []
    return [cast(v) for v in str(cell).split(";")]
