"""The run's intent, kept in the run directory so that a restarted process does what the owner wanted.

``intent.json`` (0600, written atomically) holds what the owner last asked of the run:

- ``running``: started or resumed; a process that dies (kill -9, crash, reboot) carries on when
  the supervisor starts it again, with or without ``--autostart``.
- ``paused``: paused by the owner; after a restart the run is loaded and paused again.
- ``stopped``: stopped by the owner; after a restart it waits for ``start``, even with
  ``--autostart``.
- ``finished`` / ``failed``: the run ended by itself; a restart waits for ``start`` too. A
  process that could not even be set up (a data file missing for a moment, a torn checkpoint)
  ran nothing of the run and records nothing: once fixed, a restart does what the owner wanted.

A stop asked for by a signal (SIGTERM from the supervisor or honcho, Ctrl-C) is not the owner's:
it leaves the intent as it was, so a run stopped that way carries on at the next start. Without
an intent file (a new run directory) ``--autostart`` decides. No TensorFlow here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.control import Controller
from trainer.lifecycle import FAILED, FINISHED, PAUSED, RUNNING, STOPPED, STOPPING

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

INTENT_FILE = "intent.json"
FILE_MODE = 0o600
INTENTS = ("running", "paused", "stopped", "finished", "failed")
PAUSED_INTENT = "paused"
CARRY_ON = ("running", PAUSED_INTENT)  # intents that a restart loads and goes on with
# The controller's state -> the intent it shows; other states (loading, idle) change nothing.
INTENT_OF_STATE = {
    RUNNING: "running",
    PAUSED: "paused",
    STOPPING: "stopped",
    STOPPED: "stopped",
    FINISHED: "finished",
    FAILED: "failed",
}


def write_json_atomic(path: Path, value: Mapping[str, Any]) -> None:
    """Write ``value`` as JSON to ``path``, mode 0600: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            json.dump(dict(value), handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_intent(run_dir: Path) -> str | None:
    """The recorded intent, or None (no file, or one that cannot be read: logged)."""
    path = Path(run_dir) / INTENT_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    intent = record.get("intent") if isinstance(record, dict) else None
    if intent not in INTENTS:
        logger.warning("ignoring %s: unknown intent %r", path, intent)
        return None
    return str(intent)


def write_intent(run_dir: Path, intent: str) -> None:
    if intent not in INTENTS:
        raise ValueError(f"intent must be one of {', '.join(INTENTS)}, got {intent!r}")
    write_json_atomic(Path(run_dir) / INTENT_FILE, {"intent": intent})


def start_on_load(intent: str | None, *, autostart: bool) -> bool:
    """Whether a freshly loaded run starts: its recorded intent decides, else ``--autostart``."""
    return autostart if intent is None else intent in CARRY_ON


class IntentRecorder:
    """Writes the intent whenever the controller's state shows a new one (on change only)."""

    def __init__(self, controller: Controller, run_dir: Path) -> None:
        self._controller = controller
        self._run_dir = Path(run_dir)
        self._written = read_intent(self._run_dir)

    @property
    def intent(self) -> str | None:
        return self._written

    def observe(self, *_: object) -> None:
        """Record the intent the controller's state shows. The session makes it the controller's
        ``on_state_change``, so it runs under the controller's lock at every change (in order,
        whichever thread made it); the hooks below only repeat it."""
        if self._controller.signal_stop:  # the supervisor's stop, not the owner's
            return
        if self._controller.setup_error is not None:
            return  # a build that failed (data missing, a torn checkpoint) ran nothing: keep the owner's
        intent = INTENT_OF_STATE.get(self._controller.state)
        if intent is None or intent == self._written:
            return
        try:
            write_intent(self._run_dir, intent)
        except OSError as exc:  # a side channel: warn, never stop training
            logger.warning("cannot record the run's intent %r: %s", intent, exc)
            return
        logger.info("run intent: %s", intent)
        self._written = intent
