"""TensorFlow's start-up notices, kept off the terminal while it loads.

TensorFlow 2.21 prints a oneDNN notice (and absl's "before InitializeLog" preamble) from its shared
libraries' static initialisers, straight to file descriptor 2: TF_CPP_MIN_LOG_LEVEL does not reach
them, and the only switch (TF_ENABLE_ONEDNN_OPTS=0) changes the numerics. So while TensorFlow is
imported, descriptor 2 goes through a pipe and every line but those notices is passed on: the
control thread's log lines, a real import error, anything else still reaches the terminal.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

NOTICES = (
    b"oneDNN custom operations are on",
    b"All log messages before absl::InitializeLog() is called",
)
PUMP_JOIN_S = 5.0


@contextlib.contextmanager
def filtered_stderr(notices: tuple[bytes, ...] = NOTICES) -> Iterator[None]:
    """Within the block, lines written to fd 2 that contain one of `notices` are dropped."""
    try:
        original = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not any(notice in line for notice in notices):
                        os.write(original, line + b"\n")
            if pending:
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        os.dup2(original, 2)  # the pipe's last writer goes: the pump reads to its end and stops
        thread.join(PUMP_JOIN_S)
        os.close(original)
