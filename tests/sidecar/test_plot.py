"""plot: a valid PNG per plot in the state dir, from the bounded series; the axis choice."""

from __future__ import annotations

from pathlib import Path

from protocol.steps import METRICS_STEPS, steps_body
from sidecar.plot import KEEP_PLOTS, PLOT_PREFIX, plot_png, use_log_scale, window_start
from sidecar.series import MetricSeries

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def one_step(step: int, loss: float) -> dict[str, object]:
    return steps_body(step, 0, [loss], {"loss": loss})


def filled_series() -> MetricSeries:
    series = MetricSeries()
    for step in range(1, 50):
        series.add(METRICS_STEPS, one_step(step, 2.0 / step))
        if step % 10 == 0:
            series.add("metrics.report", {"step": step, "loss": 2.0 / step, "accuracy": step / 60})
    series.add("metrics.val", {"step": 40, "loss": 0.1, "accuracy": 0.7})
    series.add("event.param_changed", {"step": 21, "name": "learning_rate", "old": 0.001, "new": 0.01})
    return series


def test_each_plot_is_a_new_png_in_the_state_dir_and_old_ones_go(tmp_path: Path) -> None:
    paths = [plot_png(filled_series().snapshot(), tmp_path / str(i % 2), title="test") for i in range(2)]
    for path in paths:
        assert path.name.startswith(f"{PLOT_PREFIX}49-") and path.suffix == ".png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    state = tmp_path / "many"
    for step in range(KEEP_PLOTS + 3):
        series = MetricSeries()
        series.add(METRICS_STEPS, one_step(step + 1, 1.0))
        plot_png(series.snapshot(), state)
    assert len(list(state.glob(f"{PLOT_PREFIX}*.png"))) == KEEP_PLOTS
    assert not list(state.glob("*.part"))


def test_a_loss_spanning_decades_gets_a_log_axis_and_a_narrow_one_does_not() -> None:
    assert use_log_scale([250.0, 2.3, 0.9, 0.05])  # one early spike
    assert not use_log_scale([2.3, 1.2, 0.9, 0.5])
    assert not use_log_scale([0.0, 0.0])


def test_series_keep_validation_test_and_parameter_changes_in_one_window() -> None:
    series = MetricSeries(max_points=10)
    for step in range(1, 101):
        series.add(METRICS_STEPS, one_step(step, 1.0))
        if step % 10 == 0:
            series.add("metrics.report", {"step": step, "loss": 1.0, "accuracy": 0.5})
    series.add("metrics.test", {"step": 100, "loss": 0.3, "accuracy": 0.9})
    series.add("event.param_changed", {"step": 50, "name": "batch_size", "old": 128, "new": 64})
    snapshot = series.snapshot()
    assert window_start(snapshot) == 91  # reports reach back to step 10, per-step loss to 91
    assert snapshot.test_loss == [(100, 0.3)] and snapshot.test_accuracy == [(100, 0.9)]
    assert snapshot.changes == [(50, "batch_size 128 → 64")]


def test_a_call_of_many_steps_gives_a_point_per_step_and_a_malformed_one_none() -> None:
    series = MetricSeries()
    series.add(METRICS_STEPS, steps_body(1, 0, [3.0, 2.0, 1.0], {"loss": 1.0}))
    series.add("metrics.report", {"step": 3, "loss": 1.0, "accuracy": 0.5})  # step 3 is not doubled
    series.add(METRICS_STEPS, {**steps_body(4, 0, [0.5, 0.4], {"loss": 0.4}), "first_step": 3})
    series.add(METRICS_STEPS, {**steps_body(4, 0, [0.5], {"loss": 0.5}), "losses": ["x"]})
    series.add(METRICS_STEPS, {**steps_body(4, 0, [0.5], {"loss": 0.5}), "losses": None})
    series.add(METRICS_STEPS, steps_body(4, 0, [0.5, 0.25], {"loss": 0.25}))
    assert series.snapshot().loss == [(1, 3.0), (2, 2.0), (3, 1.0), (4, 0.5), (5, 0.25)]


def test_series_is_bounded_and_ignores_other_topics() -> None:
    series = MetricSeries(max_points=10)
    for step in range(100):
        series.add(METRICS_STEPS, one_step(step, 1.0))
    series.add("event.started", {"step": 5})
    snapshot = series.snapshot()
    assert [s for s, _ in snapshot.loss] == list(range(90, 100))
    assert snapshot.accuracy == [] and snapshot.changes == []
