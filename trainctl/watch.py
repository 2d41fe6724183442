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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live

from protocol import (
    FeedEvent,
    ProtocolError,
    Subscriber,
)
from trainctl import exit_codes, render
from trainctl.config import ClientConfig
from trainctl.watch_state import WatchState

WATCH_POLL_MS = 200
REFRESH_PER_S = 4


@dataclass(frozen=True)
class WatchOptions:
    json: bool = False
    for_s: float | None = None
    until_states: frozenset[str] = frozenset()


def run_watch(config: ClientConfig, options: WatchOptions, console: Console) -> int:
    """Follow the feed until Ctrl-C, `--for` or `--until-state`; returns the exit code."""
    client = config.client()
    subscriber = config.subscriber(client)
    state = WatchState(endpoint=config.metrics, line_of=render.event_line)
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
