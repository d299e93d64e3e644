"""The one table of default hyper-parameters, read by `predsparse train` and by the pipeline alike.

A run's settings are resolved in one order everywhere (`resolve_spec`): this table's row for the run's
(dataset, model), then the config's `training` section, then the study's `training`, then (CLI only)
the flags or the spec file. So `predsparse train` and a pipeline run of the same study get the same
hyper-parameters unless a config says otherwise, and the config says only what it changes.

Each value has its reason in `REASONS`: the paper's where it states the setting, the authors' code where
that is known (../shared/reference/authors_code.md), our documented choice where neither says.
Torch-free: the pipeline and the report import it.
"""

from __future__ import annotations

from typing import Any

from predsparse.errors import ConfigError
from predsparse.spec import RunSpec

# The settings a row may hold: RunSpec fields.
KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "init")

_ADAM = {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 256, "epochs": 30,
         "init": "uniform"}

HYPERPARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("morse", "mlp"): {**_ADAM, "optimizer": "sgd", "lr": 0.2, "init": "he_dense"},
    ("mnist", "mlp"): {**_ADAM, "weight_decay": 1e-4, "epochs": 100, "init": "he_dense"},
    ("mnist", "mnist_conv"): {**_ADAM, "weight_decay": 1e-4, "init": "he_dense"},
    ("cifar10", "cifar_conv"): _ADAM,
    ("cifar100", "cifar_conv"): _ADAM,
}

REASONS: dict[str, str] = {
    "optimizer": "Adam for every net (paper, Section 2.2.1: 'choices which we maintained for all networks unless "
                 "otherwise specified'); SGD for Morse (Section 2.2.3: 'trained using stochastic gradient descent').",
    "lr": "Adam: its usual 1e-3, also the authors' Keras code. Morse SGD: 0.2, the best of our 10-epoch sweep "
          "(lr 0.05-0.2, batch 64/256, dense and 12.5 % nets); the paper gives no learning rate. The ablation "
          "study compares 0.05 with batch 64.",
    "momentum": "0.9 for SGD: our choice, the paper is silent (Adam ignores it).",
    "weight_decay": "L2 for the MNIST nets only (paper footnote 1; 'negligible' for Morse). Strength 1e-4 "
                    "(= Keras l2(5e-5)): the authors' code uses l2(8e-5)..l2(1.1e-4) (weight decay 1.6e-4..2.2e-4).",
    "batch_size": "256: the authors' training code (sim_net); the paper is silent.",
    "epochs": "30 (paper, Figs. 1, 2a/b, 3); 100 for the MNIST CL-only nets (Fig. 2c).",
    "init": "he_dense, the authors' code (He normal over the dense fan-in N_i, then masked) for the nets whose "
            "settings their code shows (MNIST) and for Morse (same code base); CIFAR keeps ours (U(+-1/sqrt(fi))), "
            "since their CIFAR net is not the paper's. The ablation study compares both.",
}


def has_defaults(dataset: object, model: object) -> bool:
    return (dataset, model) in HYPERPARAMETERS


def defaults_for(dataset: str, model: str = "mlp") -> dict[str, Any]:
    """The default hyper-parameters of a dataset and model (a copy)."""
    if (dataset, model) not in HYPERPARAMETERS:
        raise ConfigError(f"no default hyper-parameters for dataset '{dataset}' with model '{model}'; known pairs: "
                          + ", ".join(f"{d}/{m}" for d, m in HYPERPARAMETERS))
    return dict(HYPERPARAMETERS[dataset, model])


def resolve_spec(raw: dict, where: str = "run spec") -> RunSpec:
    """A RunSpec from a mapping whose missing hyper-parameters come from `defaults_for`."""
    if isinstance(raw, dict) and has_defaults(raw.get("dataset"), raw.get("model", "mlp")):
        raw = {**defaults_for(raw["dataset"], raw.get("model", "mlp")), **raw}
    return RunSpec.from_dict(raw, where)
