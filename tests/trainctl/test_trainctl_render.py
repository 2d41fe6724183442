"""trainctl.render: pure formatting of replies and feed events, and the live view's state."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from protocol import (
    Data,
    Gap,
    Message,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    TrainerDown,
    Unstalled,
)
from trainctl import render
from trainctl.watch_state import WatchState


def data(topic: str, body: dict[str, object], seq: int = 1) -> Data:
    return Data(Message(type="data", topic=topic, body=body, session="s1", seq=seq, ts=1.0))


def text_of(renderable: object) -> str:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (-1, "—"), (math.inf, "—"), (0.4, "0s"), (42, "42s"), (185, "3m05s"), (7440, "2h04m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert render.format_duration(seconds) == text


def test_format_value_rounds_floats_and_marks_missing() -> None:
    assert [render.format_value(v) for v in (None, True, 0.123456, 3, "x")] == [
        "—",
        "true",
        "0.1235",
        "3",
        "x",
    ]


def test_to_jsonable_makes_strict_json_of_non_finite_floats_and_bytes() -> None:
    value = render.to_jsonable({"loss": math.nan, "up": [math.inf], "raw": b"\x01"})
    assert value == {"loss": "nan", "up": ["inf"], "raw": "01"}
    json.dumps(value, allow_nan=False)


def test_event_json_names_the_kind_and_carries_the_message_map() -> None:
    line = render.event_json(data("metrics.steps", {"step": 3, "loss": 0.5}, seq=7))
    assert line["kind"] == "data" and line["seq"] == 7 and line["session"] == "s1"
    assert line["body"] == {"step": 3, "loss": 0.5} and line["catching_up"] is False
    assert render.event_json(Gap(3, 5)) == {"kind": "gap", "first_seq": 3, "last_seq": 5}
    assert render.event_json(SessionChanged("a", "b", {}))["kind"] == "session_changed"
    assert render.event_json(TrainerDown(3.0)) == {"kind": "down", "silent_s": 3.0, "reason": "disconnected"}
    assert render.event_json(NotResponding(31.0)) == {"kind": "not_responding", "silent_s": 31.0}
    assert render.event_json(Responding(40.0)) == {"kind": "responding", "silent_s": 40.0}
    assert render.event_json(TrainerBack({}, restarted=True))["kind"] == "back"
    assert render.event_json(Stalled(70.0))["kind"] == "stalled"
    assert render.event_json(Unstalled()) == {"kind": "unstalled"}


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (TrainerDown(4.2), "trainer down: its connection closed"),
        (TrainerDown(31.0, reason="unreachable"), "no trainer reachable for 31s"),
        (NotResponding(31.0), "trainer not responding for 31s (connection open: busy?)"),
        (Responding(40.0), "trainer responding again after 40s"),
        (TrainerBack({}, restarted=False), "trainer back"),
        (SessionChanged("a", "b", {"state": "loading"}), "trainer restarted (new session b): loading"),
        (Gap(3, 9), "lost messages 3..9 (no longer in history)"),
        (Snapshot({"state": "running", "step": 5}), "attached: running at step 5"),
        (
            data("event.checkpoint_saved", {"step": 9, "path": "/r/ckpt-9"}),
            "checkpoint saved at step 9: /r/ckpt-9",
        ),
        (
            data("event.param_changed", {"name": "lr", "old": 0.1, "new": 0.01, "applies_at_step": 12}),
            "lr: 0.1 -> 0.01 (from step 12)",
        ),
        (
            data("event.failed", {"step": 4, "error": {"type": "OOM", "message": "boom"}}),
            "FAILED at step 4: OOM: boom",
        ),
        (
            data("event.failed", {"step": 4, "error": "CUDA out of memory"}),
            "FAILED at step 4: CUDA out of memory",
        ),
        (
            data(
                "event.checkpoint_failed",
                {"step": 30, "error": "OSError: disk full", "last_checkpoint_step": 20},
            ),
            "CHECKPOINT FAILED at step 30: OSError: disk full (last good: step 20)",
        ),
        (
            data("metrics.val", {"step": 10, "loss": 0.25, "accuracy": 0.9}),
            "val @ step 10: loss 0.25, accuracy 0.9",
        ),
        (data("log", {"level": "warning", "message": "slow"}), "[warning] slow"),
        (data("metrics.steps", {"step": 1}), None),
    ],
)
def test_event_line(event: object, text: str | None) -> None:
    assert render.event_line(event) == text  # type: ignore[arg-type]


def test_status_table_shows_progress_metrics_and_errors() -> None:
    status = {
        "state": "failed", "step": 10, "total_steps": 100, "eta_s": 65, "metrics": {"loss": 0.5},
        "params": {"lr": 0.01}, "error": {"type": "ValueError", "message": "nan loss"},
    }  # fmt: skip
    text = text_of(render.status_table(status))
    for expected in ("failed", "10 / 100", "1m05s", "loss=0.5", "lr=0.01", "ValueError: nan loss"):
        assert expected in text


def test_action_line() -> None:
    assert render.action_line("stop", {"state": "idle", "at_step": 7, "already": True}) == (
        "stop: state idle at step 7 (already)"
    )
    assert render.action_line("checkpoint", {"scheduled_at_step": 8}) == "checkpoint scheduled at step 8"


def test_watch_state_folds_events_into_progress_state_and_events() -> None:
    state = WatchState(endpoint="ipc://x", line_of=render.event_line)
    state.apply(Snapshot({"state": "idle", "step": 0, "total_steps": 100, "session": "s1", "run_id": "r"}))
    state.apply(data("event.started", {"event": "started", "step": 0, "state": "running"}, seq=1))
    state.apply(data("metrics.steps", {"step": 40, "loss": 0.25, "steps_per_s": 10.0, "eta_s": 6.0}, seq=2))
    state.apply(data("metrics.report", {"step": 40, "loss": 0.25, "accuracy": 0.8}, seq=3))
    assert (state.state, state.step, state.loss, state.accuracy, state.eta_s) == (
        "running",
        40,
        0.25,
        0.8,
        6.0,
    )
    state.apply(TrainerDown(3.0))
    assert state.down
    text = text_of(render.watch_view(state))
    assert "trainer down" in text and "step 40/100 (40%)" in text and "accuracy 0.8" in text
    state.apply(TrainerBack({"state": "running", "session": "s1"}, restarted=False))
    assert not state.down
    assert [line.split(" ", 1)[1] for line in state.events] == [
        "attached: idle at step 0",
        "started at step 0",
        "trainer down: its connection closed",
        "trainer back",
    ]


def _view_text(state: WatchState) -> str:
    console = Console(file=io.StringIO(), width=120)
    console.print(render.watch_view(state))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_watch_shows_one_loss_no_report_dump_and_forgets_the_old_process() -> None:
    state = WatchState(endpoint="ipc://x", line_of=render.event_line)
    state.apply(Snapshot({"state": "running", "step": 10, "session": "s1", "metrics": {"loss": 0.5}}))
    report = {"step": 20, "loss": 0.25, "accuracy": 0.9, "steps_per_s": 5.0, "eta_s": 30.0, "lr": 0.001}
    state.apply(Data(Message("data", report, session="s1", seq=1, topic="metrics.report")))
    state.apply(Data(Message("data", {"step": 20, "loss": 0.3, "accuracy": 0.8}, session="s1", seq=2,
                             topic="metrics.val")))  # fmt: skip
    text = _view_text(state)
    assert text.count("0.25") == 1  # the training loss once, on the numbers line
    assert "report" not in text and "lr=" not in text and "validation" in text
    state.apply(SessionChanged("s1", "s2", {"state": "loading", "step": 0, "session": "s2"}))
    text = _view_text(state)
    assert "validation" not in text and "0.25" not in text  # nothing stale from the old process
