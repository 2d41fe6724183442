"""Pure formatting: replies and feed events into text, rich tables and JSON-ready values.

No sockets and no printing here, so every function can be tested by calling it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from protocol import (
    Data,
    FeedEvent,
    Gap,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    TrainerDown,
    Unstalled,
    durations,
)
from trainctl.watch_state import WatchState

MISSING = "—"
EVENT_KINDS: dict[type, str] = {
    Snapshot: "snapshot",
    Data: "data",
    Gap: "gap",
    SessionChanged: "session_changed",
    TrainerDown: "down",
    TrainerBack: "back",
    NotResponding: "not_responding",
    Responding: "responding",
    Stalled: "stalled",
    Unstalled: "unstalled",
}


def format_duration(seconds: float | None) -> str:
    """'42s', '3m05s', '2h04m'; a dash when unknown."""
    return durations.format_duration(seconds, missing=MISSING)


def format_value(value: Any) -> str:
    """Numbers to four significant digits, None as a dash, the rest as str."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_jsonable(value: Any) -> Any:
    """A value json.dumps writes as strict JSON: non-finite floats become 'nan' / 'inf' / '-inf'."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def event_json(event: FeedEvent) -> dict[str, Any]:
    """One `watch --json` line: {kind, ...}; data events carry the message map."""
    kind = EVENT_KINDS[type(event)]
    if isinstance(event, Data):
        fields = {**event.message.to_map(), "catching_up": event.catching_up}
    else:
        fields = dataclasses.asdict(event)
    line: dict[str, Any] = to_jsonable({"kind": kind, **fields})
    return line


def event_line(event: FeedEvent) -> str | None:
    """The events-list line for a feed event; None for what the progress view already shows."""
    if isinstance(event, Data):
        return data_line(event.message.topic or "", event.message.body)
    if isinstance(event, Snapshot):
        status = event.status
        return f"attached: {status.get('state', '?')} at step {format_value(status.get('step'))}"
    if isinstance(event, SessionChanged):
        return f"trainer restarted (new session {event.new}): {event.status.get('state', '?')}"
    if isinstance(event, TrainerDown):
        if event.reason == "unreachable":
            return f"no trainer reachable for {format_duration(event.silent_s)}"
        return "trainer down: its connection closed"
    if isinstance(event, NotResponding):
        return f"trainer not responding for {format_duration(event.silent_s)} (connection open: busy?)"
    if isinstance(event, Responding):
        return f"trainer responding again after {format_duration(event.silent_s)}"
    if isinstance(event, TrainerBack):
        return "trainer back (restarted)" if event.restarted else "trainer back"
    if isinstance(event, Gap):
        return f"lost messages {event.first_seq}..{event.last_seq} (no longer in history)"
    if isinstance(event, Stalled):
        return f"training loop stalled: no progress for {format_duration(event.loop_age_s)}"
    if isinstance(event, Unstalled):
        return "training loop moving again"
    return None


def data_line(topic: str, body: Mapping[str, Any]) -> str | None:
    """Text for one data message; per-step metrics give None (they only move the progress bar)."""
    if topic.startswith("event."):
        return _trainer_event_line(topic[len("event.") :], body)
    if topic in ("metrics.val", "metrics.test"):
        which = topic.split(".", 1)[1]
        return (
            f"{which} @ step {format_value(body.get('step'))}: loss {format_value(body.get('loss'))}, "
            f"accuracy {format_value(body.get('accuracy'))}"
        )
    if topic == "log":
        return f"[{body.get('level', 'info')}] {body.get('message', '')}"
    return None


def _error_text(error: Any) -> str:
    """A protocol error map as 'Type: message'; anything else as its text (a line must still print)."""
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('message', '')}"
    return str(error) if error else "error"


def _trainer_event_line(name: str, body: Mapping[str, Any]) -> str:
    step = f" at step {format_value(body.get('step'))}" if body.get("step") is not None else ""
    if name == "param_changed":
        return (
            f"{body.get('name')}: {format_value(body.get('old'))} -> {format_value(body.get('new'))}"
            f" (from step {format_value(body.get('applies_at_step'))})"
        )
    if name == "checkpoint_saved":
        return f"checkpoint saved{step}: {body.get('path', '')}"
    if name == "checkpoint_failed":
        last = format_value(body.get("last_checkpoint_step"))
        return f"CHECKPOINT FAILED{step}: {_error_text(body.get('error'))} (last good: step {last})"
    if name == "finished":
        return f"finished{step}: test accuracy {format_value(body.get('test_accuracy'))}"
    if name == "failed":
        return f"FAILED{step}: {_error_text(body.get('error'))}"
    if name == "state":
        return f"state {body.get('state', '?')}{step}"
    return f"{name}{step}"


def status_table(status: Mapping[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    total = status.get("total_steps")
    progress = format_value(status.get("step")) + (f" / {total}" if total else "")
    rows = [
        ("state", str(status.get("state", "?"))),
        ("step", progress),
        ("epoch", format_value(status.get("epoch"))),
        ("speed", f"{format_value(status.get('steps_per_s'))} steps/s"),
        ("eta", format_duration(status.get("eta_s"))),
        ("metrics", _pairs(status.get("metrics") or {})),
        ("params", _pairs(status.get("params") or {})),
        ("checkpoint", format_value(status.get("last_checkpoint_step"))),
        ("run", format_value(status.get("run_id"))),
        (
            "session",
            f"{format_value(status.get('session'))} (last seq {format_value(status.get('last_seq'))})",
        ),
        ("started", format_timestamp(status.get("started_at"))),
    ]
    error = status.get("error")
    if error:
        rows.append(("error", f"{error.get('type', 'error')}: {error.get('message', '')}"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def format_timestamp(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in values.items()) or MISSING


def describe_table(description: Mapping[str, Any]) -> Table:
    table = Table(title="parameters")
    for column in ("name", "aliases", "type", "value", "default", "range", "applies"):
        table.add_column(column, no_wrap=column in ("name", "value"))
    table.add_column("help", ratio=1)
    for param in description.get("params", []):
        low, high = param.get("minimum"), param.get("maximum")
        span = MISSING if low is None and high is None else f"{format_value(low)} .. {format_value(high)}"
        table.add_row(
            str(param.get("name")),
            ", ".join(param.get("aliases") or ()),
            str(param.get("type")),
            format_value(param.get("value")),
            format_value(param.get("default")),
            span,
            str(param.get("applies", "")),
            str(param.get("help", "")),
        )
    return table


def describe_lines(description: Mapping[str, Any]) -> list[str]:
    return [
        f"protocol version {description.get('version', '?')}",
        "ops: " + ", ".join(description.get("ops", [])),
        "states: " + ", ".join(description.get("states", [])),
        "topics: " + ", ".join(description.get("topics", [])),
    ]


def params_table(params: Mapping[str, Any], *, applies: Mapping[str, Any] | None = None) -> Table:
    table = Table()
    table.add_column("name")
    table.add_column("value")
    if applies is not None:
        table.add_column("applies")
    for name, value in params.items():
        extra = [str(applies.get(name, ""))] if applies is not None else []
        table.add_row(name, format_value(value), *extra)
    return table


def history_table(messages: list[Mapping[str, Any]]) -> Table:
    table = Table()
    for column in ("seq", "time", "topic", "body"):
        table.add_column(column)
    for item in messages:
        body = item.get("body") or {}
        table.add_row(
            format_value(item.get("seq")),
            time.strftime("%H:%M:%S", time.localtime(item.get("ts", 0))),
            str(item.get("topic", "")),
            _pairs(body),
        )
    return table


def action_line(op: str, result: Mapping[str, Any]) -> str:
    """One line for start / stop / pause / resume / checkpoint / evaluate."""
    if "scheduled_at_step" in result:
        return f"{op} scheduled at step {format_value(result['scheduled_at_step'])}"
    step = result.get("step", result.get("at_step"))
    already = " (already)" if result.get("already") else ""
    return f"{op}: state {result.get('state', '?')} at step {format_value(step)}{already}"


def watch_view(state: WatchState, *, events_shown: int = 12) -> RenderableType:
    """The live view: a header, the progress bar with its numbers, last metrics, recent events."""
    label = "trainer down" if state.down else (state.state or "waiting for the trainer")
    header = Text.assemble(
        (label + (" (stalled) " if state.stalled else " "), _state_style(state)),
        (f"run {state.run_id or MISSING}  session {state.session or MISSING}  ", "dim"),
        (state.endpoint, "dim"),
    )
    total = state.total_steps or None
    bar = ProgressBar(total=float(total) if total else None, completed=float(state.step or 0), width=30)
    share = f" ({100 * (state.step or 0) / total:.0f}%)" if total else ""
    where = f" step {format_value(state.step)}" + (f"/{total}{share}" if total else "")
    progress = Table.grid(padding=0)
    progress.add_row(bar, Text(f"{where}  ETA {format_duration(state.eta_s)}"))
    numbers = Text(
        f"loss {format_value(state.loss)}  accuracy {format_value(state.accuracy)}  "
        f"{format_value(state.steps_per_s)} steps/s"
    )
    metrics = Table(box=None, show_header=False, pad_edge=False)
    for topic, body in sorted(state.metrics.items()):
        shown: dict[str, Any] = {k: body[k] for k in ("step", "loss", "accuracy") if k in body}
        metrics.add_row(
            Text({"val": "validation", "test": "test"}.get(topic, topic), style="bold"), _pairs(shown)
        )
    events = Text("\n".join(list(state.events)[-events_shown:]) or "no events yet", style="dim")
    return Group(header, progress, numbers, metrics, Text("events", style="bold underline"), events)


def _state_style(state: WatchState) -> str:
    if state.down or state.state == "failed":
        return "bold red"
    if state.stalled or state.state in ("paused", "stopping"):
        return "bold yellow"
    return "bold green"
