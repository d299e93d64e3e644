"""The one look of every figure, and byte-reproducible PDF/PNG output.

Figures are drawn on the Agg backend inside `themed()` (a seaborn "whitegrid"/"paper" style applied
through an rc context, so importing this module changes no global style). `save_figure` writes a PDF and
a PNG whose bytes depend only on the figure: the bundled DejaVu fonts (no system font lookup), fixed
Creator/Producer/Software metadata, a fixed SVG hash salt, and a PDF CreationDate taken from
SOURCE_DATE_EPOCH when it is set and left out otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

from predsparse.errors import ReportError  # noqa: E402
from predsparse.io import atomic_write_bytes  # noqa: E402

SOFTWARE = "predsparse report"
PNG_DPI = 150
# Colour-blind safe, in a fixed order, so a series keeps its colour from run to run.
PALETTE = sns.color_palette("colorblind", 10).as_hex()
PAPER_COLOR = "black"  # the paper's reported points
FORMATS = ("pdf", "png")


def rc() -> dict:
    """rcParams of the theme: seaborn whitegrid at 'paper' scale, fixed fonts and output settings."""
    params = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.0)}
    params.update({
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "axes.titlesize": 9,
        "axes.labelsize": 8.5,
        "xtick.labelsize": 7.5,
        "ytick.labelsize": 7.5,
        "legend.fontsize": 7,
        "legend.title_fontsize": 7,
        "legend.frameon": True,
        "legend.framealpha": 0.85,
        "grid.linewidth": 0.5,
        "lines.linewidth": 1.4,
        "lines.markersize": 4.5,
        "errorbar.capsize": 2.0,
        "figure.dpi": 100,
        "savefig.dpi": PNG_DPI,
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.05,
        "pdf.fonttype": 42,  # embedded TrueType: text stays selectable
        "svg.hashsalt": SOFTWARE,
    })
    return params


@contextlib.contextmanager
def themed():
    """Context in which figures are created and saved with the theme."""
    with matplotlib.rc_context(rc()):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global figure registry, nothing to close)."""
    return Figure(figsize=(width, height), layout="constrained")


def _metadata(fmt: str) -> dict:
    if fmt == "png":
        return {"Software": SOFTWARE}
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch and not epoch.isdigit():
        raise ReportError(f"SOURCE_DATE_EPOCH is '{epoch}', expected seconds since 1970 (e.g. 1700000000)")
    created = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else None
    return {"Creator": SOFTWARE, "Producer": SOFTWARE, "CreationDate": created}


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure rendered as `fmt` ('pdf' or 'png'), reproducibly.

    The constrained layout is solved once and then frozen: it is iterative, and re-solving it on every
    save would nudge the axes between the PDF and the PNG, or between two saves of one figure.
    """
    if fig.get_layout_engine() is not None:
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata=_metadata(fmt))
    return buffer.getvalue()


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write <out_dir>/<stem>.pdf and .png atomically; return their paths."""
    paths = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"{stem}.{fmt}"
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        paths.append(path)
    return paths
