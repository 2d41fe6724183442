"""`trainctl watch`: follow one trainer's feed, as a live terminal view or as JSON lines.

A watcher is a plain client (a SUB socket and a REQ socket of its own), so any number can attach and
detach at any time without the trainer noticing. Ctrl-C detaches (exit 0). Like every other command
it gives up (TrainerUnavailable, exit 3) when no snapshot comes within the client's timeout x
retries; once attached it rides out a trainer restart, except that a script waiting with
`--until-state` gives up once the trainer has been down for `--down-timeout`. The Subscriber turns the
raw feed into ordered events (snapshot, data, gaps, restarts, down/back, stalls); `WatchState.apply`
folds them into what the view shows, and `render.watch_view` draws it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live

from protocol import (
    FeedEvent,
    ProtocolError,
    Subscriber,
    TrainerUnavailable,
)
from trainctl import exit_codes, render
from trainctl.config import ClientConfig
from trainctl.watch_state import WatchState

WATCH_POLL_MS = 200
REFRESH_PER_S = 4
# Under the Procfile a crashed trainer is back within supervise's backoff (30 s at most by default)
# plus its start; a script waiting for an outcome waits that out, with room, then hears "unavailable".
DOWN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WatchOptions:
    json: bool = False
    for_s: float | None = None
    until_states: frozenset[str] = frozenset()
    down_timeout_s: float = DOWN_TIMEOUT_S  # with until_states: a trainer down this long ends it


def run_watch(config: ClientConfig, options: WatchOptions, console: Console) -> int:
    """Follow the feed until Ctrl-C, `--for` or `--until-state`; returns the exit code, or raises
    TrainerUnavailable (never attached, or down for `--down-timeout` while waiting for a state)."""
    client = config.client()
    subscriber = config.subscriber(client)
    state = WatchState(endpoint=config.metrics, line_of=render.event_line)
    now, budget_s = time.monotonic(), config.timeout_ms * (config.retries + 1) / 1000  # the client's
    limits = _Limits(
        attach_by=now + budget_s,
        end_at=None if options.for_s is None else now + options.for_s,
        never_attached=f"trainer unavailable: cannot attach: no snapshot from {config.control} "
        f"within {budget_s:.1f} s ({config.retries + 1} attempts)",
    )
    try:
        if options.json:
            return _follow(subscriber, state, options, limits, _json_writer(sys.stdout))
        try:
            with Live(render.watch_view(state), console=console, refresh_per_second=REFRESH_PER_S) as live:
                return _follow(
                    subscriber, state, options, limits, lambda _: live.update(render.watch_view(state))
                )
        finally:
            if not console.is_terminal:
                console.line()  # a non-terminal gets the last view without its final newline
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


@dataclass(frozen=True)
class _Limits:
    attach_by: float  # monotonic: no snapshot by then is "unavailable"
    end_at: float | None  # monotonic: `--for`
    never_attached: str  # what TrainerUnavailable says then


def _follow(
    subscriber: Subscriber,
    state: WatchState,
    options: WatchOptions,
    limits: _Limits,
    show: Callable[[FeedEvent | None], None],
) -> int:
    down_since: float | None = None
    while limits.end_at is None or time.monotonic() < limits.end_at:
        left_ms = WATCH_POLL_MS if limits.end_at is None else int((limits.end_at - time.monotonic()) * 1000)
        for event in subscriber.poll(max(0, min(WATCH_POLL_MS, left_ms))):
            state.apply(event)
            show(event)
            if state.state in options.until_states and not state.down:
                return exit_codes.OK
        show(None)
        now = time.monotonic()
        if not state.attached and now >= limits.attach_by:
            raise TrainerUnavailable(limits.never_attached)
        down_since = (now if down_since is None else down_since) if state.down else None
        if options.until_states and down_since is not None and now - down_since >= options.down_timeout_s:
            raise TrainerUnavailable(
                f"trainer unavailable: down for {render.format_duration(now - down_since)} at step "
                f"{render.format_value(state.step)} (--down-timeout {options.down_timeout_s:g})"
            )
    if not state.attached:
        raise TrainerUnavailable(limits.never_attached)
    if options.until_states and state.down:  # not "not yet": it cannot get there while down
        raise TrainerUnavailable("trainer unavailable: down when --for ended")
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
