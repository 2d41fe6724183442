"""plot: a valid PNG in the state dir, from the bounded series."""

from __future__ import annotations

from pathlib import Path

from sidecar.plot import PLOT_FILENAME, plot_png
from sidecar.series import MetricSeries

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_a_png_into_the_state_dir(tmp_path: Path) -> None:
    series = MetricSeries()
    for step in range(1, 50):
        series.add("metrics.step", {"step": step, "loss": 2.0 / step})
        if step % 10 == 0:
            series.add("metrics.report", {"step": step, "loss": 2.0 / step, "accuracy": step / 60})
    series.add("metrics.val", {"step": 40, "loss": 0.1, "accuracy": 0.7})
    path = plot_png(series.snapshot(), tmp_path, title="test")
    assert path == tmp_path / PLOT_FILENAME
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list(tmp_path.glob("*.part"))


def test_series_is_bounded_and_ignores_other_topics() -> None:
    series = MetricSeries(max_points=10)
    for step in range(100):
        series.add("metrics.step", {"step": step, "loss": 1.0})
    series.add("event.started", {"step": 5})
    snapshot = series.snapshot()
    assert [s for s, _ in snapshot.loss] == list(range(90, 100))
    assert snapshot.accuracy == []
