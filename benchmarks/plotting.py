"""The benchmarks' one way to get a plotting module: matplotlib's pyplot on the Agg backend, or None
(with a note) where matplotlib is not installed, as on the GPU image, whose CSVs are the results."""

from __future__ import annotations

from pathlib import Path


def pyplot_or_none(path: Path):
    """matplotlib.pyplot (Agg), or None after printing that `path` is not drawn."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
