"""Paper-ready benefit figures: total accuracy against average MFLOPs (or another cost) per sample."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from common.files import atomic_output
from common.sweep import Curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_STYLE = {"font.size": 11, "axes.labelsize": 12, "axes.titlesize": 12, "legend.fontsize": 10}
_MARGIN = 0.05  # fraction of the data span added on each side when limits are chosen from the data


def _limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    """Data range widened by _MARGIN (in log space when log=True); a single value gets +-5 %."""
    if log:
        if np.any(values <= 0):
            raise ValueError("log_y needs positive MFLOPs values")
        lo, hi = _limits(np.log10(values), log=False)
        return 10.0**lo, 10.0**hi
    lo, hi = float(values.min()), float(values.max())
    pad = _MARGIN * (hi - lo) if hi > lo else 0.05 * max(abs(lo), 1.0)
    return lo - pad, hi + pad


def benefit_figure(
    curves: dict[str, Curve],
    base_point: tuple[float, float],
    title: str,
    out_stem: Path,
    log_y: bool = False,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> list[Path]:
    """Plot each curve's (accuracy %, MFLOPs) points and the baseline (red cross).

    base_point: (accuracy %, MFLOPs) of the base model. Writes out_stem.png (200 dpi) and
    out_stem.pdf atomically and returns [png_path, pdf_path].
    """
    panel = {"curves": curves, "base_point": base_point, "title": title, "log_y": log_y, "xlim": xlim, "ylim": ylim}
    return benefit_panels([panel], out_stem)


def benefit_panels(panels: list[dict], out_stem: Path) -> list[Path]:
    """Benefit figures side by side, one per dict of `panels`: curves, base_point and title as in
    `benefit_figure`, and optionally log_y, xlim, ylim, and the cost axis's unit ("MFLOPs" by
    default; a curve's `mflops` field then holds that unit per sample). Writes out_stem.png/.pdf."""
    # A bare Figure (no pyplot): it renders with Agg whatever backend the user's matplotlib is set to,
    # and keeps no global figure state.
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.0 * len(panels), 4.2))
        for ax, panel in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
            _draw_benefit(ax, **panel)
        fig.tight_layout()
        return save_figure(fig, out_stem)


def save_figure(fig: Figure, out_stem: Path) -> list[Path]:
    """`fig` as out_stem.png and out_stem.pdf, each written atomically; returns both paths."""
    out_stem = Path(out_stem)
    paths = [out_stem.parent / f"{out_stem.name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200)
    return paths


def _draw_benefit(
    ax: Axes,
    curves: dict[str, Curve],
    base_point: tuple[float, float],
    title: str,
    log_y: bool = False,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    unit: str = "MFLOPs",
) -> None:
    base_acc, base_cost = map(float, base_point)
    accs = np.concatenate([c.accuracy for c in curves.values()] + [[base_acc]])
    costs = np.concatenate([c.mflops for c in curves.values()] + [[base_cost]])
    xlim = _limits(accs, log=False) if xlim is None else xlim
    ylim = _limits(costs, log=log_y) if ylim is None else ylim
    for name, curve in curves.items():
        ax.plot(curve.accuracy, curve.mflops, "-o", ms=3.5, lw=1.2, label=name)
    ax.plot([xlim[0], base_acc], [base_cost, base_cost], "--", color="red", lw=0.9)
    ax.plot([base_acc, base_acc], [ylim[0], base_cost], "--", color="red", lw=0.9)
    ax.plot(base_acc, base_cost, "x", color="red", ms=11, mew=2.5, zorder=5, label="baseline")
    ax.annotate(  # lower right: the empty high-accuracy, low-cost corner
        f"baseline ({base_acc:.2f} %, {base_cost:.2f} {unit})",
        (base_acc, base_cost),
        xytext=(0.97, 0.06),
        textcoords="axes fraction",
        ha="right",
        va="bottom",
        color="red",
        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "red", "lw": 0.8},
        arrowprops={"arrowstyle": "->", "color": "red", "lw": 0.9, "shrinkB": 7},
    )
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter())  # plain numbers, not 6x10^0
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.set(xlim=xlim, ylim=ylim, title=title)
    ax.set_xlabel("Total accuracy (%)")
    ax.set_ylabel(f"Average {unit} per sample")
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(loc="upper left")  # the empty low-accuracy, high-cost corner
