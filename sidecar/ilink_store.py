"""The iLink backend's files in the state dir: private JSON written atomically, and the
long-poll cursor with the ids of the messages already handled.

`UpdatesCursor` is what makes a restart exact: the `get_updates_buf` is saved only after a
batch was handled, and each handled message's id is saved as it is handled, so a sidecar
killed mid-batch polls the batch again and skips what it already ran (no command lost,
none run twice).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

UPDATES_FILE = "ilink_updates.json"
HANDLED_IDS_KEPT = 200


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when missing or unreadable (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically, readable by this user only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class UpdatesCursor:
    """`<state_dir>/ilink_updates.json`: {"buf": get_updates_buf, "handled": [message ids]}."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / UPDATES_FILE
        data = read_json(self.path)
        self.buf = str(data.get("buf") or "")
        self._handled = [str(i) for i in data.get("handled", [])][-HANDLED_IDS_KEPT:]

    def seen(self, message_id: str) -> bool:
        return message_id in self._handled

    def handled(self, message_id: str) -> None:
        self._handled = [*self._handled, message_id][-HANDLED_IDS_KEPT:]
        self._save()

    def advance(self, buf: str) -> None:
        if buf and buf != self.buf:
            self.buf = buf
            self._save()

    def reset(self) -> None:
        """A new login: the old cursor means nothing to the new session."""
        self.buf = ""
        self._save()

    def _save(self) -> None:
        write_private_json(self.path, {"buf": self.buf, "handled": self._handled})
