"""`trainctl watch`: follow one trainer's feed, as a live terminal view or as JSON lines.

A watcher is a plain client (a SUB socket and a REQ socket of its own), so any number can attach and
detach at any time without the trainer noticing. Ctrl-C detaches (exit 0). The Subscriber turns the
raw feed into ordered events (snapshot, data, gaps, restarts, down/back, stalls); `WatchState.apply`
folds them into what the view shows, and `render.watch_view` draws it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live

from protocol import (
    Data,
    FeedEvent,
    Message,
    ProtocolError,
    SessionChanged,
    Snapshot,
    Stalled,
    Subscriber,
    TrainerBack,
    TrainerDown,
    Unstalled,
)
from trainctl import exit_codes, render
from trainctl.config import ClientConfig

WATCH_POLL_MS = 200
EVENTS_KEPT = 200
REFRESH_PER_S = 4
_PROGRESS_FIELDS = ("step", "epoch", "total_steps", "loss", "accuracy", "steps_per_s", "eta_s")


@dataclass
class WatchState:
    """What the live view shows, folded from feed events."""

    endpoint: str
    state: str | None = None
    step: int | None = None
    epoch: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    run_id: str | None = None
    session: str | None = None
    attached: bool = False
    down: bool = False
    stalled: bool = False
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))

    def apply(self, event: FeedEvent) -> None:
        if isinstance(event, SessionChanged):  # a new process: what the old one said is stale
            self.metrics.clear()
            self.loss = self.accuracy = self.steps_per_s = self.eta_s = None
        if isinstance(event, (Snapshot, SessionChanged, TrainerBack)):
            self._apply_status(event.status)
            self.attached = True
        if isinstance(event, TrainerBack):
            self.down = False
        elif isinstance(event, TrainerDown):
            self.down = True
        elif isinstance(event, (Stalled, Unstalled)):
            self.stalled = isinstance(event, Stalled)
        elif isinstance(event, Data):
            self._apply_data(event.message)
        line = render.event_line(event)
        if line is not None:
            self.events.append(f"{time.strftime('%H:%M:%S')} {line}")

    def _apply_status(self, status: Mapping[str, Any]) -> None:
        self._take(status)
        self.state = status.get("state", self.state)
        self.run_id = status.get("run_id", self.run_id)
        self.session = status.get("session", self.session)
        metrics = status.get("metrics")
        if isinstance(metrics, dict) and metrics:  # shown once, on the numbers line
            self.loss = metrics.get("loss", self.loss)
            self.accuracy = metrics.get("accuracy", self.accuracy)

    def _apply_data(self, message: Message) -> None:
        topic, body = message.topic or "", message.body
        if topic in ("metrics.step", "metrics.report") or topic.startswith("event."):
            self._take(body)
        if topic.startswith("event.") and isinstance(body.get("state"), str):
            self.state = body["state"]
        if topic == "event.param_changed":
            self.eta_s = None  # the budget or speed may change: wait for the next report's ETA
        elif topic in ("metrics.val", "metrics.test"):  # reports are the numbers line, not a dump
            self.metrics[topic.split(".", 1)[1]] = dict(body)

    def _take(self, values: Mapping[str, Any]) -> None:
        for name in _PROGRESS_FIELDS:
            if values.get(name) is not None:
                setattr(self, name, values[name])


@dataclass(frozen=True)
class WatchOptions:
    json: bool = False
    for_s: float | None = None
    until_states: frozenset[str] = frozenset()


def run_watch(config: ClientConfig, options: WatchOptions, console: Console) -> int:
    """Follow the feed until Ctrl-C, `--for` or `--until-state`; returns the exit code."""
    client = config.client()
    subscriber = config.subscriber(client)
    state = WatchState(endpoint=config.metrics)
    deadline = None if options.for_s is None else time.monotonic() + options.for_s
    try:
        if options.json:
            return _follow(subscriber, state, options, deadline, _json_writer(sys.stdout))
        with Live(render.watch_view(state), console=console, refresh_per_second=REFRESH_PER_S) as live:
            code = _follow(
                subscriber, state, options, deadline, lambda _: live.update(render.watch_view(state))
            )
        if not console.is_terminal:
            console.line()  # a non-terminal gets the last view without its final newline
        return code
    except KeyboardInterrupt:
        return exit_codes.OK
    except BrokenPipeError:
        _silence_stdout()
        return exit_codes.OK
    except ProtocolError as exc:
        print(f"trainctl: protocol error: {exc}", file=sys.stderr)
        return exit_codes.PROTOCOL
    finally:
        subscriber.close()
        client.close()


def _follow(
    subscriber: Subscriber,
    state: WatchState,
    options: WatchOptions,
    deadline: float | None,
    show: Callable[[FeedEvent | None], None],
) -> int:
    while deadline is None or time.monotonic() < deadline:
        left_ms = WATCH_POLL_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
        for event in subscriber.poll(max(0, min(WATCH_POLL_MS, left_ms))):
            state.apply(event)
            show(event)
            if state.state in options.until_states and not state.down:
                return exit_codes.OK
        show(None)
    if not state.attached:
        return exit_codes.UNAVAILABLE
    return exit_codes.CONDITION_NOT_MET if options.until_states else exit_codes.OK


def _json_writer(stream: TextIO) -> Callable[[FeedEvent | None], None]:
    def write(event: FeedEvent | None) -> None:
        if event is not None:
            stream.write(json.dumps(render.event_json(event), separators=(",", ":")) + "\n")
            stream.flush()

    return write


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
