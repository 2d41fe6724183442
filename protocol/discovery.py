"""The runs on this machine: one connection file per trainer instance in the runtime directory.

A trainer started with `--instance NAME` writes `<runtime dir>/NAME.json` (0600) and removes it on
a clean exit; a killed one leaves it behind, naming a process that is gone. `find_runs` lists them
(the sidecar's `--discover`, `trainctl ls`, `trainctl watch --all`), each resolved by the one
connection factory (`resolve_connection`), so endpoints and keys follow the same rules as for a
single run.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from protocol.connect import Connection, ConnectionConfigError, resolve_connection
from protocol.endpoints import ConnectionInfo, default_runtime_dir

logger = logging.getLogger(__name__)

# A run's name is typed in chat (`@name`) and on command lines: short, no spaces.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


@dataclass(frozen=True)
class FoundRun:
    """One connection file: the instance's name, the file, and the connection it makes."""

    name: str
    path: Path
    connection: Connection
    pid: int | None = None

    def process_gone(self) -> bool:
        """True when the file names a process that no longer exists, or the file is gone."""
        return run_process_gone(self.path)


def check_run_name(name: str) -> str:
    """`name` if it may name a run; ValueError (one line) otherwise."""
    if not RUN_NAME.match(name):
        raise ValueError(f"run name {name[:40]!r}: use letters, digits, '_', '.', '-' (at most 40)")
    return name


def read_run(path: Path, *, name: str | None = None, insecure_no_curve: bool = False) -> FoundRun:
    """The run of one connection file; raises ConnectionConfigError (corrupt, absent)."""
    # environ={}: CHATTRAIN_CONTROL / _METRICS name one run, never every run found.
    connection = resolve_connection(connection_file=path, insecure_no_curve=insecure_no_curve, environ={})
    return FoundRun(name or path.name.removesuffix(".json"), path, connection, _pid(path))


@dataclass(frozen=True)
class UnreadableRun:
    """A connection file that cannot be read (corrupt, not ours): its run cannot be reached."""

    name: str
    path: Path
    error: str


def scan_runs(
    runtime_dir: Path | None = None, *, insecure_no_curve: bool = False
) -> tuple[list[FoundRun], list[UnreadableRun]]:
    """The connection files in the runtime directory, by name: the readable ones as runs, and
    those that cannot be read, which the caller says (a trainer writes its file atomically, so
    one that cannot be read stays so: skipping it in silence would hide its run for good)."""
    directory = runtime_dir or default_runtime_dir()
    found, unreadable = [], []
    for path in sorted(directory.glob("*.json")):
        name = path.name.removesuffix(".json")
        if not RUN_NAME.match(name):
            continue
        try:
            found.append(read_run(path, insecure_no_curve=insecure_no_curve))
        except (ConnectionConfigError, OSError) as exc:
            unreadable.append(UnreadableRun(name, path, " ".join(str(exc).split())[:200]))
    return found, unreadable


def find_runs(runtime_dir: Path | None = None, *, insecure_no_curve: bool = False) -> list[FoundRun]:
    """The runs of the readable connection files (``scan_runs``)."""
    return scan_runs(runtime_dir, insecure_no_curve=insecure_no_curve)[0]


def run_process_gone(path: Path) -> bool:
    """Whether the trainer of connection file `path` is gone: the file removed (a clean exit) or
    its pid no longer alive (kill -9 leaves the file behind)."""
    if not path.exists():
        return True
    pid = _pid(path)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's (a reused pid): not ours to judge
        return False
    return False


def _pid(path: Path) -> int | None:
    try:
        pid = ConnectionInfo.read(path).pid
    except (OSError, ValueError, TypeError):
        return None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
