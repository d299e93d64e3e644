"""The one vocabulary: every dataset, model, method and run-setting choice, defined once.

Read by `predsparse.spec` (what a valid run is), `predsparse.data` (the loaders' classes and layouts),
`predsparse.pipeline.plan` (which data layout feeds a net, what a training job reserves),
`predsparse.nn` (input and feature shapes, inits), `predsparse train`, `predsparse aggregate` and the
report (method labels, order and markers; dataset names). Default hyper-parameters have their own table,
per dataset and model, with a reason for each value: `predsparse.defaults`.

Standard library only (no torch, no numpy), so every part of the package may import it, cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Dataset:
    """What the models need to know about a dataset: its classes and the sample shape of each layout."""

    name: str
    num_classes: int  # real classes; the output layer may be wider (the paper pads to a power of two)
    layouts: Mapping[str, tuple[int, ...]]  # layout (`predsparse data DATASET --layout`) -> shape of one sample
    default_layout: str
    description: str
    label: str = ""  # the report's name of the dataset
    # Padded layout -> where its real values lie, in `predsparse scatter --real-in` spelling (image in the middle
    # of a zero border): the scatter of padded layers over their real neurons only. A layout not listed has none.
    real_inputs: Mapping[str, str] = field(default_factory=dict)


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("morse", 64, {"flat": (64,)}, "flat",
            "Morse codewords, one 64-value frame per sample (framelen * dilation values in general)", label="Morse"),
    Dataset("mnist", 10, {"conv": (1, 28, 28), "flat": (784,), "pad32": (1024,)}, "conv",
            "MNIST digits: 1x28x28 for the conv net, 784 flat, or 32x32 zero-padded and flattened (1024) "
            "for the (1024, 64, 16) and (1024, 16) CL-only nets", label="MNIST",
            real_inputs={"pad32": "28x28/32x32"}),
    Dataset("cifar10", 10, {"conv": (3, 32, 32)}, "conv", "CIFAR-10 images, 3x32x32 (RGB planes)", label="CIFAR-10"),
    Dataset("cifar100", 100, {"conv": (3, 32, 32)}, "conv", "CIFAR-100 images, 3x32x32, fine labels (100 classes)",
            label="CIFAR-100"),
)}


@dataclass(frozen=True)
class Model:
    """A model of `predsparse.nn.models`: connected layers (CLs), alone or after a conv stack."""

    name: str
    description: str
    # Shape of one sample the conv stack takes; None: CLs only, fed flat samples of the net's N_1 values.
    input_shape: tuple[int, ...] | None
    # (C, H, W) of the conv stack's output, flattened channel-major into the CLs' N_1; None without one.
    feature_shape: tuple[int, ...] | None
    # What the scheduler reserves for one training run (threads, mem_mb, runtime in minutes; a job of
    # grouped runs adds up their runtimes); a config's `resources:` changes what it names.
    job_resources: Mapping[str, int]

    def first_layer(self, sample_shape: tuple[int, ...]) -> int | None:
        """N_1 of the CLs when fed samples of `sample_shape`; None when the model does not take them."""
        if self.feature_shape is None:
            return sample_shape[0] if len(sample_shape) == 1 else None
        return math.prod(self.feature_shape) if tuple(sample_shape) == self.input_shape else None


DEFAULT_MODEL = "mlp"
# Job resources: the paper preset's reservation (config.yaml's until it moved here), sized for the full
# protocol on a CPU: the MNIST CL-only nets train 100 epochs, and one CIFAR conv run of 30 epochs is about
# 1.4e15 FLOP, hours on 4 cores. The CPU presets of config/ reserve less where they measured less.
MODELS: dict[str, Model] = {m.name: m for m in (
    Model("mlp", "CLs only, inputs flattened", None, None, {"threads": 1, "mem_mb": 3000, "runtime": 120}),
    Model("mnist_conv", "two 5x5 conv layers (32, 64) with pooling, then CLs (Section 2.2.2)", (1, 28, 28),
          (64, 7, 7), {"threads": 2, "mem_mb": 6000, "runtime": 240}),
    Model("cifar_conv", "six 3x3 conv layers with batch norm and pooling, then CLs (Section 2.2.1)", (3, 32, 32),
          (256, 4, 4), {"threads": 4, "mem_mb": 12000, "runtime": 480}),
)}


def input_layouts(dataset: str, model: str) -> dict[int, str]:
    """The data layout feeding each first-layer size N_1 of `model` on `dataset`: {} when it takes none.

    A CL-only model takes every flat layout (N_1 = its length); a conv model the layout of its input shape
    (N_1 = its conv features).
    """
    layouts: dict[int, str] = {}
    for layout, shape in DATASETS[dataset].layouts.items():
        n_1 = MODELS[model].first_layer(shape)
        if n_1 is not None:
            if n_1 in layouts:
                raise ValueError(f"{dataset} layouts {layouts[n_1]} and {layout} both give {model} {n_1} inputs")
            layouts[n_1] = layout
    return layouts


def pairs() -> list[tuple[str, str]]:
    """Every (dataset, model) that goes together: the model takes one of the dataset's layouts."""
    return [(d, m) for d in DATASETS for m in MODELS if input_layouts(d, m)]


@dataclass(frozen=True)
class Method:
    """How a run's connections come about, and how the report names and draws it."""

    name: str
    label: str  # the report's name
    marker: str | None  # matplotlib marker of its points in the report's figures; None: none of its own
    fixed: bool  # True: the pattern file's connections, fixed before training; else chosen while training


# In the report's order (tables, legends).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("dense", "dense", None, True),
    Method("predefined", "pre-defined", "o", True),
    Method("csc", "CSC", "^", True),
    Method("prune", "pruning", "v", False),  # predsparse.methods.options.METHODS: the ones not fixed
    Method("set", "SET", "s", False),
    Method("rigl", "RigL", "D", False),
)}
# The method of a run whose connections are fixed before training, by its pattern's kind
# (predsparse.patterns.generate.KINDS): every sparse kind but CSC is pre-defined sparse.
KIND_METHODS = {"dense": "dense", "random": "predefined", "planned": "predefined", "unstructured": "predefined",
                "csc": "csc"}


def fixed_method(kind: str) -> str:
    """The `method` of a run whose pattern (of `kind`) is trained as it is: dense, csc or predefined."""
    return KIND_METHODS.get(kind, "predefined")


OPTIMIZERS = ("adam", "sgd")
INITS = ("uniform", "he_dense")  # CL weight initialisation: predsparse.nn.init
DEVICES = ("cpu", "cuda", "auto")
