"""The runs one sidecar follows: where they are found, and what the sidecar keeps for each.

A `RunSource` names one trainer and says how to reach it (a `protocol.Connection`). They come from
the configured connection (the sidecar's `--control/--metrics/--connection/--instance`, as with one
run), from `--run` (a connection file or a pair of endpoints), and with `--discover` from every
connection file in the runtime directory (`<instance>.json`, one per `--instance`), rescanned
every `RESCAN_INTERVAL_S` so a trainer started later is picked up. A run found once stays: when
its process is gone its feed reports it down (and its file may vanish), it is never dropped.

A `Run` is everything per trainer: the message path's link and catalog, the metric series, the
chat's own changes, a command dispatcher, and its feed thread with its own cursor. The primary run
(the configured one) keeps the state directory itself, so one run is exactly as before; every
other run gets `state_dir/runs/<name>` (its cursor and plots).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import Connection
from protocol.discovery import UnreadableRun, read_run, run_process_gone, scan_runs
from protocol.serving import ThreadDeath
from sidecar.commands import COMMANDS, CommandContext
from sidecar.dispatch import Dispatcher
from sidecar.feed import FeedHandler, FeedThread
from sidecar.i18n import LanguagePreference
from sidecar.link import Catalog, OwnChanges, Request, TrainerLink
from sidecar.series import MetricSeries

logger = logging.getLogger(__name__)

RESCAN_INTERVAL_S = 2.0
DEFAULT_RUN_NAME = "default"


@dataclass(frozen=True)
class RunSource:
    """One trainer to follow: its short name, how to reach it, and whether it is the primary."""

    name: str
    connection: Connection
    primary: bool = False
    path: Path | None = None  # its connection file, if it came from one

    def process_gone(self) -> bool:
        return self.path is not None and run_process_gone(self.path)


def source_from_file(path: Path, *, name: str | None = None, insecure_no_curve: bool = False) -> RunSource:
    """A run from a connection file (protocol's one factory); ConnectionConfigError."""
    found = read_run(path, name=name, insecure_no_curve=insecure_no_curve)
    return RunSource(found.name, found.connection, path=path)


def discover(
    runtime_dir: Path, *, insecure_no_curve: bool = False
) -> tuple[list[RunSource], list[UnreadableRun]]:
    """The runs of the readable connection files in `runtime_dir`, by name, and the unreadable files."""
    found, unreadable = scan_runs(runtime_dir, insecure_no_curve=insecure_no_curve)
    return [RunSource(run.name, run.connection, path=run.path) for run in found], unreadable


class Run:
    """One followed trainer: link, catalog, series, dispatcher and feed thread (started by `start`)."""

    def __init__(
        self,
        source: RunSource,
        state_dir: Path,
        *,
        language: LanguagePreference,
        client_options: dict[str, Any],
        feed_options: dict[str, Any],
        make_handler: Callable[[Run, Request], FeedHandler],
        on_death: ThreadDeath | None = None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.state_dir = state_dir if source.primary else state_dir / "runs" / source.name
        self.catalog = Catalog()
        self.series = MetricSeries()
        self.link = TrainerLink(source.connection.control_client(**client_options), self.catalog)
        self.context = CommandContext(self.link, self.series, self.state_dir)
        self.dispatcher = Dispatcher(COMMANDS, self.context, language)
        self.handler: FeedHandler | None = None  # made in the feed thread, once it starts

        def handler_for(request: Request) -> FeedHandler:
            self.handler = make_handler(self, request)
            return self.handler

        self.feed = FeedThread(handler_for, source.connection, client_options=feed_options, on_death=on_death)

    @property
    def own_changes(self) -> OwnChanges:
        return self.context.own_changes

    @property
    def down(self) -> bool:
        return self.handler is not None and self.handler.down

    def start(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.feed.start()

    def close(self) -> None:
        self.feed.stop()
        self.link.close()


class RunSet:
    """The runs by name, and the one each sender chose with `use` (a contact who may only read
    must not redirect the owner's next `stop`, so each sender has their own)."""

    def __init__(self, make_run: Callable[[RunSource], Run]) -> None:
        self._make_run = make_run
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._chosen: dict[str, str] = {}  # sender id -> run name

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def get(self, name: str) -> Run | None:
        with self._lock:
            return self._runs.get(name) or next(
                (run for key, run in self._runs.items() if key.lower() == name.lower()), None
            )

    def several(self) -> bool:
        with self._lock:
            return len(self._runs) > 1

    def chosen(self, sender: str = "") -> Run | None:
        with self._lock:
            name = self._chosen.get(sender)
            return self._runs.get(name) if name else None

    def choose(self, run: Run, sender: str = "") -> None:
        with self._lock:
            self._chosen[sender] = run.name

    def add(self, sources: Iterable[RunSource], *, start: bool) -> list[Run]:
        """Add the sources not known yet (by name, or by control endpoint); returns the new runs."""
        added = []
        for source in sources:
            with self._lock:
                known = source.name in self._runs or any(
                    run.source.connection.control == source.connection.control for run in self._runs.values()
                )
            if known:
                continue
            run = self._make_run(source)
            with self._lock:
                self._runs[run.name] = run
            logger.info("following run %s (%s)", run.name, source.connection.control)
            if start:
                run.start()
            added.append(run)
        return added

    def close(self) -> None:
        for run in self.all():
            run.close()
