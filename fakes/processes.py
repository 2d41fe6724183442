"""The real programs as tests and bench/ start them: ``python -m trainer`` on private sockets, and the
environment, spawn and stop that every child process gets, and free ports to give them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from protocol import Connection, resolve_connection

REPO = Path(__file__).resolve().parents[1]
BIND_TIMEOUT_S = 120.0  # TensorFlow's import comes after the bind, but a loaded machine is slow to start
STOP_GRACE_S = 30.0


def python_env(**extra: str) -> dict[str, str]:
    """The environment for children: quiet TensorFlow, the repo importable, no proxy for loopback."""
    env = {**os.environ, **extra}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = ",".join(filter(None, ["127.0.0.1,localhost", env.get("NO_PROXY")]))
    return env


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private (0700) directory under /tmp, removed afterwards (short: ipc paths have a ~100 byte limit)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_ports(count: int = 1) -> list[int]:
    """``count`` loopback TCP ports that were free a moment ago (held together while picked, so distinct)."""
    with contextlib.ExitStack() as holding:
        holders = [holding.enter_context(socket.socket()) for _ in range(count)]
        for holder in holders:
            holder.bind(("127.0.0.1", 0))
        return [int(holder.getsockname()[1]) for holder in holders]


def spawn(program: str, args: Sequence[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``python -m PROGRAM ARGS`` from the repository, no stdin, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", program, *args], cwd=REPO, env=python_env(**env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def stop(process: subprocess.Popen[Any] | None, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL past ``grace_s`` (at once for 0); reaped."""
    if process is not None and process.poll() is None:
        if grace_s:
            process.terminate()
        else:
            process.kill()
        try:
            process.wait(grace_s or None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TrainerProcess:
    """``python -m trainer ARGS`` with its control and metrics sockets, connection file and (unless
    given) run directory in ``workdir``; ``start()`` spawns it and waits for its bind."""

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str] = (),
        run_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir, self.run_dir, self.env = workdir, run_dir or workdir / "run", python_env(**(env or {}))
        self.control, self.metrics = f"ipc://{workdir}/control", f"ipc://{workdir}/metrics"
        self.connection_file = workdir / "connection.json"
        self.argv = [
            sys.executable, "-m", "trainer", "--control", self.control, "--metrics", self.metrics,
            "--connection-file", str(self.connection_file), "--run-dir", str(self.run_dir), "--quiet", *args,
        ]  # fmt: skip
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def connection(self) -> Connection:
        """Endpoints and CurveZMQ keys as every client gets them (``protocol.connect``)."""
        return resolve_connection(
            control=self.control, metrics=self.metrics, connection_file=self.connection_file
        )

    def start(self, log: IO[Any] | int = subprocess.DEVNULL, bound: bool = True) -> TrainerProcess:
        """Spawn it, its output to ``log``; with ``bound``, return once its connection file exists."""
        self.popen = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + BIND_TIMEOUT_S
        while bound and not self.connection_file.exists():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trainer did not bind (exit {self.popen.poll()})")
            time.sleep(0.02)  # a file appearing has no event to wait on
        return self

    def wait(self, timeout_s: float | None = None) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout_s)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        stop(self.popen, grace_s)

    def __enter__(self) -> TrainerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
