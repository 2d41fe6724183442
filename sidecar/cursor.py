"""The last (session, seq) the sidecar told the owner about, kept in its state dir.

A restarted sidecar reads it to summarise what it missed instead of re-sending old events.
Written atomically (temporary file + rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CURSOR_FILENAME = "cursor.json"


@dataclass(frozen=True)
class Cursor:
    session: str
    seq: int


class CursorStore:
    """Load and save the cursor in `state_dir/cursor.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CURSOR_FILENAME
        self._saved: Cursor | None = None

    def load(self) -> Cursor | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cursor = Cursor(session=str(data["session"]), seq=int(data["seq"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("ignoring unreadable cursor %s: %s", self.path, error)
            return None
        self._saved = cursor
        return cursor

    def save(self, cursor: Cursor) -> None:
        if cursor == self._saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(prefix=".cursor-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump({"session": cursor.session, "seq": cursor.seq}, stream)
            os.replace(partial, self.path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        self._saved = cursor
