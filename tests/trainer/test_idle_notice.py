"""A trainer that waits for a start says once what to do, and leaves nothing behind on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IDLE_LINE = "idle at step 0: send 开始 / start in chat, or run: trainctl start"


def test_an_idle_trainer_says_once_how_to_start_it_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    argv = [sys.executable, "-m", "trainer", "--synthetic-data", "64", "--max-steps", "2", "--quiet",
            "--run-dir", str(tmp_path / "run"), "--instance", "idle"]  # fmt: skip
    env = {**os.environ, "CHATTRAIN_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while not any(IDLE_LINE in line for line in seen):
            line = lines.get(timeout=240)  # TensorFlow's import on a loaded machine
            assert line is not None, seen
            seen.append(line)
        assert list(runtime.iterdir()), "the connection file and sockets exist while it runs"
        child.send_signal(signal.SIGTERM)
        assert child.wait(120) == 0, seen
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    while (line := lines.get(timeout=30)) is not None:
        seen.append(line)
    assert sum(IDLE_LINE in line for line in seen) == 1, seen
    # The instance's keys stay (PROTOCOL.md §8: a restart keeps its server key, so clients
    # reconnect); the connection file, the sockets and the lock go.
    assert [p.name for p in runtime.iterdir()] == ["idle.keys"]
