"""Draw the loss and accuracy curves to a PNG in the sidecar's own state directory.

Uses matplotlib's object API with the Agg canvas directly (no pyplot): no global figure
state, safe off the main thread, and no GUI backend can be picked up. matplotlib is imported
here only, when a plot is asked for, so the sidecar starts fast and small.
The output path is made here from the state dir and the step (one file per plot, the last few
kept); chat text never names a path.

What is drawn: training loss (per step) with validation and test loss as points, on a log axis
when it spans two decades or more (one early spike no longer flattens the curve); training
accuracy with validation and test points; a dotted line at every parameter change, labelled;
every series cut to the same window of steps (the per-step loss holds fewer steps than the
reports do).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from sidecar.series import Point, SeriesSnapshot

PLOT_PREFIX = "plot-"
KEEP_PLOTS = 5
FIGURE_SIZE_IN = (8.0, 6.0)
DPI = 100
LOG_SCALE_RATIO = 100.0  # max/min of the loss at which the axis turns logarithmic
MAX_MARKER_LABELS = 8


def use_log_scale(values: Sequence[float]) -> bool:
    """True when positive values span at least two decades."""
    positive = [v for v in values if v > 0]
    return len(positive) > 1 and max(positive) / min(positive) >= LOG_SCALE_RATIO


def window_start(series: SeriesSnapshot) -> int | None:
    """The first step every training curve covers (the later of their first steps)."""
    starts = [points[0][0] for points in (series.loss, series.accuracy) if points]
    return max(starts) if starts else None


def plot_png(series: SeriesSnapshot, state_dir: Path, title: str = "") -> Path:
    """Write the curves to a new `state_dir/plot-<step>-<time>.png` (atomically); return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    start = window_start(series) or 0

    def cut(points: list[Point]) -> list[Point]:
        return [p for p in points if p[0] >= start]

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(2, 1, sharex=True)
    loss = cut(series.loss)
    _draw(loss_axes, [("train", loss), ("validation", cut(series.val_loss)), ("test", cut(series.test_loss))])
    loss_axes.set_ylabel("loss")
    if use_log_scale([v for _, v in loss]):
        loss_axes.set_yscale("log")
    _draw(
        accuracy_axes,
        [
            ("train", cut(series.accuracy)),
            ("validation", cut(series.val_accuracy)),
            ("test", cut(series.test_accuracy)),
        ],
    )
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_xlabel("step")
    _mark_changes(loss_axes, accuracy_axes, [m for m in series.changes if m[0] >= start])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, state_dir, loss[-1][0] if loss else 0)


def _draw(axes, curves) -> None:  # type: ignore[no-untyped-def]
    for name, points in curves:
        if points:
            steps, values = zip(*points, strict=True)
            style = "-" if name == "train" and len(points) > 1 else "o"
            axes.plot(steps, values, style, label=name)
    axes.grid(True, alpha=0.3)
    if any(points for _, points in curves):
        axes.legend(loc="best")


def _mark_changes(loss_axes, accuracy_axes, changes) -> None:  # type: ignore[no-untyped-def]
    for index, (step, text) in enumerate(changes):
        for axes in (loss_axes, accuracy_axes):
            axes.axvline(step, color="grey", linestyle=":", linewidth=1)
        if index >= len(changes) - MAX_MARKER_LABELS:  # the latest ones labelled, not a smear
            loss_axes.annotate(
                text, (step, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                fontsize=7, va="top", ha="right", color="dimgrey",
            )  # fmt: skip


def _save(figure, state_dir: Path, step: int) -> Path:  # type: ignore[no-untyped-def]
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{PLOT_PREFIX}{step}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    partial = state_dir / (path.name + ".part")
    figure.savefig(partial, format="png")
    os.replace(partial, path)
    for old in sorted(state_dir.glob(f"{PLOT_PREFIX}*.png"), key=lambda p: p.stat().st_mtime)[:-KEEP_PLOTS]:
        old.unlink(missing_ok=True)
    return path
