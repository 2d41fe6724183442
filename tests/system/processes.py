"""Finding our own processes in /proc: by a marker in their environment, by their command line.

Every process the Procfile launcher starts inherits the stack's environment, so a variable whose
value is unique to one test stack (its private runtime directory) names all of them, however deep
in the tree they are and whichever parent they were reparented to. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

POLL_S = 0.05  # between looks in /proc (a scan of every process's environment)


def cmdline(pid: int) -> list[str]:
    """The process's argv ([] when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environ_has(pid: int, name: str, value: str) -> bool:
    """Whether the process's initial environment holds `name=value`."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{name}={value}".encode() in raw.split(b"\0")


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def marked_pids(name: str, value: str) -> list[int]:
    """Live processes (not this one) whose environment holds `name=value`."""
    me = os.getpid()
    return [pid for pid in all_pids() if pid != me and environ_has(pid, name, value) and cmdline(pid)]


def python_module_pids(module: str, name: str, value: str) -> list[int]:
    """Processes running `python -m <module>` whose environment holds `name=value`.

    Matching argv[1:3] exactly leaves out the respawn supervisor and the shell, whose command lines
    also contain `-m <module>` further on."""
    return [pid for pid in marked_pids(name, value) if cmdline(pid)[1:3] == ["-m", module]]


def parent_pid(pid: int) -> int:
    """The parent's pid, from /proc/PID/stat (the field after the parenthesised name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, has no command line)."""
    return bool(cmdline(pid))


def kill_pids(pids: list[int]) -> None:
    """SIGKILL each listed pid (ours: found by their environment marker)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_all_gone(name: str, value: str, timeout_s: float) -> list[int]:
    """Wait up to `timeout_s` for the processes marked `name=value` to end; those still alive."""
    deadline = time.monotonic() + timeout_s
    while (left := marked_pids(name, value)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return left


def ctrl_c_as_in_a_terminal() -> None:
    """A ``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default disposition.

    A shell starts a background job (``.ci/run &``, ``nohup``) with SIGINT ignored, every process
    below inherits that, and Python then installs no KeyboardInterrupt handler: a SIGINT to such a
    child does nothing (seen: every `trainctl watch` of the kill test "hung" on Ctrl-C when the
    suite ran in the background, and never when it ran in a terminal). The child of a terminal
    has the default disposition, which is what the test is about.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
