"""`trainctl ls` and `trainctl watch --all`: every run on this machine, found from the connection
files in the runtime directory (protocol/discovery.py; one per `--instance`).

`ls` asks each live run for its status (one attempt each, the usual timeout) and shows the ones
whose process is gone as down. `watch --all` follows every run's feed in one view (one Subscriber
per run, polled in turn from this one thread), picks up runs started later, and with `--json`
writes one line per event with the run's name in `run`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from protocol import ControlClient, FeedEvent, ProtocolError, RemoteError, Subscriber, TrainerUnavailable
from protocol.discovery import FoundRun, find_runs, scan_runs
from trainctl import exit_codes, render
from trainctl.watch import REFRESH_PER_S, WATCH_POLL_MS, WatchOptions
from trainctl.watch_state import WatchState

RESCAN_INTERVAL_S = 2.0
EVENTS_PER_RUN = 4


def run_ls(json_output: bool, timeout_ms: int, out: Console) -> int:
    """List the runs; exit 0 (none found is an answer too)."""
    found, unreadable = scan_runs()
    rows = [_ls_row(run, timeout_ms) for run in found]
    rows += [{"name": u.name, "path": str(u.path), "pid": None, "state": "unreadable", "error": u.error}
             for u in unreadable]  # fmt: skip
    if json_output:
        print(json.dumps(render.to_jsonable(rows)), flush=True)
        return exit_codes.OK
    if not rows:
        out.print("no runs: no connection files in the runtime directory", highlight=False)
        return exit_codes.OK
    table = Table("run", "state", "step", "loss", "ETA", "pid", "connection file")
    for row in rows:
        total = f"/{row['total_steps']}" if row.get("total_steps") else ""
        table.add_row(
            row["name"], row["state"], f"{render.format_value(row.get('step'))}{total}",
            render.format_value(row.get("loss")), render.format_duration(row.get("eta_s")),
            str(row.get("pid") or "?"), row["path"] + (f" ({row['error']})" if row.get("error") else ""),
        )  # fmt: skip
    out.print(table)
    return exit_codes.OK


def _ls_row(run: FoundRun, timeout_ms: int) -> dict[str, Any]:
    row: dict[str, Any] = {"name": run.name, "path": str(run.path), "pid": run.pid}
    if run.process_gone():
        return {**row, "state": "down"}
    try:
        with run.connection.control_client(timeout_ms=timeout_ms, retries=0) as client:
            status = client.status()
    except (TrainerUnavailable, RemoteError, ProtocolError, OSError) as exc:
        return {**row, "state": "not answering", "error": str(exc)}
    metrics = status.get("metrics") or {}
    return {
        **row, "state": status.get("state"), "step": status.get("step"),
        "total_steps": status.get("total_steps"), "loss": metrics.get("loss"), "eta_s": status.get("eta_s"),
    }  # fmt: skip


class _Followed:
    """One run's feed clients and view state."""

    def __init__(self, run: FoundRun, timeout_ms: int, retries: int) -> None:
        self.name = run.name
        self.client: ControlClient = run.connection.control_client(timeout_ms=timeout_ms, retries=retries)
        self.subscriber: Subscriber = run.connection.subscriber(self.client)
        self.state = WatchState(endpoint=run.connection.metrics, line_of=render.event_line)

    def close(self) -> None:
        self.subscriber.close()
        self.client.close()


def run_watch_all(options: WatchOptions, console: Console, *, timeout_ms: int, retries: int) -> int:
    """Follow every run until Ctrl-C, `--for`, or every run reaching one of `--until-state`."""
    followed: dict[str, _Followed] = {}
    deadline = None if options.for_s is None else time.monotonic() + options.for_s

    def rescan() -> None:
        for run in find_runs():
            if run.name not in followed:
                followed[run.name] = _Followed(run, timeout_ms, retries)

    def view() -> Group:
        parts: list[Any] = []
        for item in followed.values():
            parts += [
                Text(item.name, style="bold reverse"),
                render.watch_view(item.state, events_shown=EVENTS_PER_RUN),
            ]
        return Group(*parts) if parts else Group(Text("no runs yet: waiting for connection files"))

    try:
        if options.json:
            return _follow_all(followed, rescan, options, deadline, _json_line)
        with Live(view(), console=console, refresh_per_second=REFRESH_PER_S) as live:
            code = _follow_all(followed, rescan, options, deadline, lambda _n, _e: live.update(view()))
        if not console.is_terminal:
            console.line()
        return code
    except KeyboardInterrupt:
        return exit_codes.OK
    except ProtocolError as exc:
        print(f"trainctl: protocol error: {exc}", file=sys.stderr)
        return exit_codes.PROTOCOL
    finally:
        for item in followed.values():
            item.close()


def _follow_all(
    followed: dict[str, _Followed],
    rescan: Callable[[], None],
    options: WatchOptions,
    deadline: float | None,
    show: Callable[[str, FeedEvent | None], None],
) -> int:
    next_scan = 0.0
    while deadline is None or time.monotonic() < deadline:
        if time.monotonic() >= next_scan:
            rescan()
            next_scan = time.monotonic() + RESCAN_INTERVAL_S
        # Each feed gets a share of the poll interval, so the view refreshes as with one run.
        share_ms = max(1, WATCH_POLL_MS // max(1, len(followed)))
        for item in list(followed.values()):
            for event in item.subscriber.poll(share_ms):
                item.state.apply(event)
                show(item.name, event)
        if not followed:
            time.sleep(WATCH_POLL_MS / 1000)  # nothing to poll yet: wait for a connection file
        show("", None)
        states = [item.state for item in followed.values()]
        if (
            options.until_states
            and states
            and all(s.state in options.until_states and not s.down for s in states)
        ):
            return exit_codes.OK
    if not any(item.state.attached for item in followed.values()):
        return exit_codes.UNAVAILABLE
    return exit_codes.CONDITION_NOT_MET if options.until_states else exit_codes.OK


def _json_line(name: str, event: FeedEvent | None) -> None:
    if event is not None:
        sys.stdout.write(json.dumps({"run": name, **render.event_json(event)}, separators=(",", ":")) + "\n")
        sys.stdout.flush()
