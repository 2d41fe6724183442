"""A chat backend on stdin/stdout: the same grammar without WeChat, for local use and tests.

Each input line is a message from the owner in the owner's chat; replies and notifications
are printed one block per message (images as their path). EOF ends `run()`. On a terminal a
prompt (`PROMPT`) shows where to type, and is drawn again after every message printed.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
from pathlib import Path
from typing import TextIO

from sidecar.backend import OWNER_CHAT, ChatBackend, IncomingText, MessageCallback, Priority

logger = logging.getLogger(__name__)

STOP_CHECK_S = 0.2
READ_CHUNK_BYTES = 4096
CONSOLE_USER = "console"
PROMPT = "chattrain> "


class ConsoleBackend(ChatBackend):
    """The owner types on stdin; everything sent goes to stdout."""

    def __init__(
        self, stdin: TextIO | None = None, stdout: TextIO | None = None, prompt: bool | None = None
    ) -> None:
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stdout
        interactive = _isatty(self._stdin) and _isatty(self._stdout) if prompt is None else prompt
        self._prompt = PROMPT if interactive else ""
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._buffer = b""

    @property
    def ready(self) -> threading.Event:
        return self._ready

    def run(self, on_message: MessageCallback) -> None:
        self._ready.set()
        self._write("")
        try:
            while not self._stopping.is_set():
                line = self._readline()
                if line is None:
                    continue
                if line == "":
                    return  # EOF
                self._deliver(on_message, line.rstrip("\n"))
        finally:
            self._ready.clear()

    def _readline(self) -> str | None:
        """A line, '' at EOF, or None when nothing arrived within STOP_CHECK_S.

        A real file descriptor is read raw (select + os.read, own line buffer): select on a
        buffered text stream misses lines already sitting in Python's buffer.
        """
        try:
            fileno = self._stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return self._stdin.readline()  # an in-memory stream never blocks
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fileno], [], [], STOP_CHECK_S)
            if not readable:
                return None
            chunk = os.read(fileno, READ_CHUNK_BYTES)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest.decode("utf-8", "replace") + "\n" if rest else ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace") + "\n"

    @staticmethod
    def _deliver(on_message: MessageCallback, text: str) -> None:
        if not text.strip():
            return
        message = IncomingText(
            text=text,
            sender_id=CONSOLE_USER,
            sender_name=CONSOLE_USER,
            sender_remark="",
            chat_id=OWNER_CHAT,
            from_owner=True,
        )
        try:
            on_message(message)
        except Exception:
            logger.exception("message handler failed on %r", text)

    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        prefix = "" if to in (None, OWNER_CHAT) else f"[to {to}] "
        self._write(prefix + text + "\n")

    def _write(self, text: str) -> None:
        """`text`, then the prompt again (over the old one: a notice can arrive while typing)."""
        with self._write_lock:
            self._stdout.write(("\r" if self._prompt and text else "") + text + self._prompt)
            self._stdout.flush()

    def send_image(self, path: Path, to: str | None = None) -> None:
        self.send_text(f"[image] {path}", to)

    def stop(self) -> None:
        self._stopping.set()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
