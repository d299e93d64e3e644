"""The studies the report knows: which paper figure panel each one feeds, its title and its x quantity.

This is the one list of study names shared by the pipeline (config.yaml uses these names) and the report.
`STUDIES` are the paper's; a study whose name starts with `beyond` (`BEYOND` lists the issue's, and a
user's `beyond_cifar10` is treated the same) compares methods and density allocations and is drawn in
the report's "Beyond the paper" section. A study whose name starts with `ablation_` is a protocol ablation,
reported as a table (report.ablation). Any other study is still reported: it gets a figure of its own,
accuracy vs overall CL density (see `study_info`).

Views (what a panel draws):
- ``curves``: validation accuracy vs epoch, one line per overall CL density (Fig. 1 a/b/d/e, 2 a);
- ``milestones``: best validation accuracy after 1, 5 and E epochs per density, the final value on top
  (Fig. 1 c/f, 2 b); studies sharing the panel letter are drawn side by side, in table order;
- ``density``: accuracy vs overall CL density, one line per net, equal-weight-budget points ringed
  (Fig. 2 c, 3 a);
- ``split``: accuracy vs junction-1 density at a fixed overall density, with the equal-density line
  (Fig. 3 b/c);
- ``scatter``: accuracy vs scatter S, each point labelled with its scatter vector (Fig. 7);
- ``compression``: accuracy vs compression for CSC, random pre-defined sparse and dense (CSC study);
- ``methods``: test accuracy vs overall CL density, one line per method (pre-defined sparse with each
  density allocation, pruning, SET, RigL), the dense net as a horizontal line (``beyond*`` studies).
"""

from __future__ import annotations

from dataclasses import dataclass

VIEWS = ("curves", "milestones", "density", "split", "scatter", "compression", "methods")
BEYOND_PREFIX = "beyond"
ABLATION_PREFIX = "ablation_"


@dataclass(frozen=True)
class Study:
    """One study of config.yaml as the report draws it."""

    name: str
    figure: str  # output figure stem (figures/<figure>.pdf|png)
    panels: tuple[tuple[str, str], ...]  # (paper panel letter, view), in drawing order
    title: str  # panel title, e.g. "CIFAR-10 conv+2CLs"
    x: str  # x quantity of the study's main panel
    paper_study: str | None = None  # the `study` of its rows in paper_numbers.csv
    paper_epochs: int | None = None  # epochs of the paper's protocol, where it states them


def _epochs_study(name, figure, curves, milestones, title, paper_study):
    return Study(name, figure, ((curves, "curves"), (milestones, "milestones")), title, "epoch", paper_study, 30)


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        # Fig. 1: panel (c)/(f) shows conv+3CLs on the left and conv+2CLs on the right.
        _epochs_study("fig1_cifar10_conv3cl", "fig1", "b", "c", "CIFAR-10 conv+3CLs", "cifar10_conv3cl"),
        _epochs_study("fig1_cifar10_conv2cl", "fig1", "a", "c", "CIFAR-10 conv+2CLs", "cifar10_conv2cl"),
        _epochs_study("fig1_cifar100_conv3cl", "fig1", "e", "f", "CIFAR-100 conv+3CLs", "cifar100_conv3cl"),
        _epochs_study("fig1_cifar100_conv2cl", "fig1", "d", "f", "CIFAR-100 conv+2CLs", "cifar100_conv2cl"),
        _epochs_study("fig2_mnist_conv2cl", "fig2", "a", "b", "MNIST conv+2CLs", "mnist_conv2cl"),
        Study("fig2_mnist_cl", "fig2", (("c", "density"),), "MNIST CL only", "overall_density", "mnist_cl", 100),
        Study("fig3a_morse", "fig3", (("a", "density"),), "Morse CL only", "overall_density", "morse_cl", 30),
        Study("fig3b_morse_split25", "fig3", (("b", "split"),), "Morse, overall density 25%",
              "junction1_density", "morse_split_25", 30),
        Study("fig3c_morse_split50", "fig3", (("c", "split"),), "Morse, overall density 50%",
              "junction1_density", "morse_split_50", 30),
        Study("fig7a_morse_scatter", "fig7", (("a", "scatter"),), "Morse CL only", "scatter", "morse_scatter"),
        Study("fig7b_mnist_scatter", "fig7", (("b", "scatter"),), "MNIST CL only", "scatter", "mnist_scatter"),
        Study("fig7c_cifar10_scatter", "fig7", (("c", "scatter"),), "CIFAR-10 conv+2CLs", "scatter",
              "cifar10_scatter"),
        Study("csc_morse", "csc", (("a", "compression"),), "Morse (64, 1024, 64)", "compression"),
        Study("csc_mnist_lenet", "csc", (("b", "compression"),), "MNIST LeNet-300-100", "compression"),
    )
}

# Figure stem -> caption; the order is the report's order.
FIGURES: dict[str, str] = {
    "fig1": "Figure 1 - CIFAR-10 (a-c) and CIFAR-100 (d-f) with pre-defined sparse CLs. (a, b, d, e) "
            "Validation accuracy across epochs, one line per overall CL density. (c, f) Best validation "
            "accuracy after 1, 5 and E epochs per density, conv+3CLs left and conv+2CLs right; the final "
            "value is printed on top of each group.",
    "fig2": "Figure 2 - MNIST. (a) Validation accuracy across epochs for conv+2CLs, one line per overall CL "
            "density; (b) best validation accuracy after 1, 5 and E epochs; (c) best validation accuracy vs "
            "overall CL density for the CL-only families, networks of equal weight budget ringed.",
    "fig3": "Figure 3 - Morse CL-only (64, 1024, 64). (a) Best validation accuracy vs overall CL density. "
            "(b, c) Best validation accuracy vs junction-1 density at a fixed overall density of 25 % and "
            "50 %; the vertical line marks equal junction densities.",
    "fig7": "Figure 7 - Best validation accuracy vs scatter S for (a) Morse CL-only, fo = (128, 8), "
            "(b) MNIST CL-only (1024, 64, 16), fo = (1, 4), (c) CIFAR-10 conv+2CLs, fo = (1, 2). Each point is "
            "labelled with its scatter vector [S1f, S1b, S2f, S2b, Sf, Sb]; circles are random patterns, "
            "squares planned ones.",
    "csc": "CSC layers (reconstruction from the abstract) - test accuracy vs compression of the CL weights "
           "for cyclic sparsely connected (CSC) layers and random pre-defined sparse layers of the same weight "
           "count.",
}
# Appended to a caption when its figure draws a dense net (a study may run without one).
DENSE_SENTENCES: dict[str, str] = {
    "csc": " The dense net is the horizontal line, the shaded band is within 2 percentage points of it.",
    "beyond": " The dense net is the horizontal line.",
}

GENERIC_CAPTION = "Study {name} - best validation accuracy vs overall CL density, one line per net and method."


def _beyond_study(name: str, title: str) -> Study:
    return Study(name, "beyond", (("", "methods"),), title, "overall_density")


# The studies beyond the paper (config.yaml); they are not paper studies, so no panel letters.
BEYOND: dict[str, Study] = {
    s.name: s
    for s in (
        _beyond_study("beyond_morse", "Morse CL only (64-1024-64)"),
        _beyond_study("beyond_mnist_cl", "MNIST CL only"),
        _beyond_study("beyond_mnist_conv2cl", "MNIST conv+2CLs (3136-784-10)"),
    )
}

# Figure stem -> caption of the "Beyond the paper" figures, in the report's order.
BEYOND_FIGURES: dict[str, str] = {
    "beyond": "Beyond the paper - test accuracy (of the best-validation checkpoint) vs overall CL density, one "
              "line per method: pre-defined sparse with each density allocation across junctions, magnitude "
              "pruning, SET and RigL at the same weight budgets; fixed fan-in keeps every right neuron's fan-in, "
              "unconstrained only each junction's weight count. Points of one density are spread slightly "
              "sideways, so that equal ones stay visible.",
    "scatter_correlation": "Accuracy vs scatter - best validation accuracy vs scatter S of every sparse "
                           "configuration trained (every study and method with a scatter value; each point a "
                           "configuration's mean over seeds), coloured by overall CL density, with Spearman's "
                           "rank correlation and its 95 % confidence interval per dataset. Dense nets are left "
                           "out: their S = 1 and density 100 % say nothing about sparse patterns.",
}


def is_beyond(name: str) -> bool:
    """A study of the "Beyond the paper" section: its name starts with `beyond`."""
    return name.startswith(BEYOND_PREFIX)


def is_ablation(name: str) -> bool:
    """A study of the protocol ablation (report.ablation: a table, no figure): its name starts with `ablation_`."""
    return name.startswith(ABLATION_PREFIX)


def study_info(name: str) -> Study:
    """The study's entry in STUDIES or BEYOND; a generic one for another `beyond*` study (drawn in the
    beyond figure) or for a study not listed (accuracy vs overall density in a figure of its own)."""
    if name in STUDIES:
        return STUDIES[name]
    if name in BEYOND:
        return BEYOND[name]
    if is_beyond(name):
        return _beyond_study(name, name)
    return Study(name, name, (("", "density"),), name, "overall_density")
