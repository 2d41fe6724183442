"""The whole system as a user runs it: `honcho start` on the repository's Procfile, the sidecar
logged in (real itchat) to a fake web-WeChat server running as its own process.

Everything lives in one private temporary directory: the ipc sockets and connection file
(CHATTRAIN_RUNTIME_DIR, 0700, short enough for ipc paths), the run directory, the sidecar's state,
and the Procfile itself, copied line for line so that honcho finds no developer's `.env` beside
it. honcho runs in its own process group; `close()` stops it as Ctrl-C would, then makes sure no
process carrying this stack's runtime directory in its environment is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fakes.trainer import wait_until
from fakes.wechat import FakeWeChatProcess
from protocol import Connection, ConnectionInfo, ControlClient, resolve_connection
from tests.system import processes

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "kill"
MARKER = "CHATTRAIN_RUNTIME_DIR"  # its value, unique per stack, marks every process of the stack
DATA_LIMIT = 512
CHECKPOINT_EVERY_STEPS = 20
HEARTBEAT_INTERVAL_S = 0.2
PROGRESS_INTERVAL_S = 30.0
# Far more steps than a test lasts (a step is 128 samples); reports every 5 steps.
PARAMS = "training_iters=100000000,display_step=5"
START_TIMEOUT_S = 90.0  # TensorFlow import and model build on a loaded 2-core machine
REPLY_TIMEOUT_S = 20.0
HONCHO_STOP_TIMEOUT_S = 20.0  # honcho itself SIGKILLs its entries 5 s after its SIGTERM
STRAYS_TIMEOUT_S = 15.0
OWNER_CHAT = "filehelper"


class ProcfileStack:
    """Start with `start()`; always `close()` (a fixture finalizer does)."""

    def __init__(self, mnist_path: Path | None, procfile: str = "Procfile") -> None:
        self.procfile = procfile  # the repository's Procfile, or Procfile.multi
        self.root = Path(tempfile.mkdtemp(prefix="ctk-", dir="/tmp"))  # 0700, and short
        self.runtime_dir = self.root / "rt"
        self.runtime_dir.mkdir(mode=0o700)
        self.state_dir = self.root / "state"
        self.run_dir = self.root / "run"
        self.log_path = self.root / "honcho.log"
        self.connection_file = self.runtime_dir / f"{INSTANCE}.json"
        self.mnist_path = mnist_path
        self.wechat: FakeWeChatProcess | None = None
        self.honcho: subprocess.Popen[bytes] | None = None
        self.strays: list[tuple[int, list[str]]] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ProcfileStack:
        self.wechat = FakeWeChatProcess()
        procfile = self.root / "Procfile"
        shutil.copyfile(REPO_ROOT / self.procfile, procfile)
        with open(self.log_path, "wb") as log:
            self.honcho = subprocess.Popen(
                [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(self.root)],
                cwd=self.root,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def environment(self) -> dict[str, str]:
        """The test's environment without any CHATTRAIN_* of the developer's, plus the stack's."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CHATTRAIN_")}
        assert self.wechat is not None
        env.update(
            {
                "CHATTRAIN_PYTHON": sys.executable,
                "CHATTRAIN_RUNTIME_DIR": str(self.runtime_dir),
                "CHATTRAIN_INSTANCE": INSTANCE,
                "CHATTRAIN_RUN_DIR": str(self.run_dir),
                "CHATTRAIN_DATA_LIMIT": str(DATA_LIMIT),
                "CHATTRAIN_AUTOSTART": "1",
                "CHATTRAIN_PARAMS": PARAMS,
                "CHATTRAIN_CHECKPOINT_EVERY_STEPS": str(CHECKPOINT_EVERY_STEPS),
                "CHATTRAIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL_S),
                "CHATTRAIN_QUIET": "1",
                "CHATTRAIN_BACKEND": "wechat",
                "CHATTRAIN_WECHAT_BASE_URL": self.wechat.url,
                "CHATTRAIN_STATE_DIR": str(self.state_dir),
                "CHATTRAIN_PROGRESS_INTERVAL": str(PROGRESS_INTERVAL_S),
                "CHATTRAIN_RESPAWN_MAX_BACKOFF": "1",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.mnist_path is not None:
            env["CHATTRAIN_DATA"] = str(self.mnist_path)
        else:
            env["CHATTRAIN_SYNTHETIC_DATA"] = str(DATA_LIMIT)
        return env

    def close(self) -> None:
        """Ctrl-C to honcho's group, SIGKILL past a deadline; then no process of ours may remain."""
        try:
            if self.honcho is not None and self.honcho.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.honcho.pid, signal.SIGINT)
                try:
                    self.honcho.wait(HONCHO_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.honcho.pid, signal.SIGKILL)
                    self.honcho.wait()
            self._reap_strays()
        finally:
            if self.wechat is not None:
                self.wechat.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def _reap_strays(self) -> None:
        """Give children that outlived honcho a moment, then kill them and remember them."""
        pids = processes.wait_all_gone(MARKER, str(self.runtime_dir), STRAYS_TIMEOUT_S)
        self.strays = [(pid, processes.cmdline(pid)) for pid in pids]
        processes.kill_pids(pids)

    # -- the processes ----------------------------------------------------------------------------
    def trainer_pid(self) -> int | None:
        """The pid in the connection file, if that process is alive."""
        try:
            pid = ConnectionInfo.read(self.connection_file).pid
        except (OSError, ValueError, TypeError):
            return None
        return pid if pid is not None and processes.is_alive(pid) else None

    def sidecar_pids(self) -> list[int]:
        return processes.python_module_pids("sidecar", MARKER, str(self.runtime_dir))

    def sidecar_pid(self, timeout_s: float = START_TIMEOUT_S, other_than: int | None = None) -> int:
        """The one live sidecar's pid (a different one than `other_than`), waiting for it."""

        def probe() -> int | None:
            pids = [pid for pid in self.sidecar_pids() if pid != other_than]
            return pids[0] if len(pids) == 1 else None

        return wait_until(probe, timeout_s, f"one sidecar process (not {other_than})", processes.POLL_S)

    def endpoints(self) -> tuple[str, str]:
        info = ConnectionInfo.read(self.connection_file)
        return info.control, info.metrics

    def connection(self) -> Connection:
        """The trainer's endpoints and keys from its connection file, by protocol's factory."""
        return resolve_connection(connection_file=self.connection_file)

    def client(self) -> ControlClient:
        return self.connection().control_client(timeout_ms=1000, retries=2)

    def status(self) -> dict[str, Any]:
        client = self.client()
        try:
            return client.status()
        finally:
            client.close()

    def wait_running(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """The trainer's status once it is running (TensorFlow loaded, autostarted)."""
        wait_until(self.trainer_pid, timeout_s, f"a live trainer in {self.connection_file}", processes.POLL_S)

        def probe() -> dict[str, Any] | None:
            try:
                status = self.status()
            except ConnectionError:
                return None
            return status if status["state"] == "running" and status["step"] > 0 else None

        return wait_until(probe, timeout_s, "the trainer running", processes.POLL_S)

    def watch_command(self) -> list[str]:
        return [sys.executable, "-m", "trainctl", "watch", "--json"]

    # -- the owner's chat -------------------------------------------------------------------------
    def owner_texts(self, after: int = 0) -> list[str]:
        """The texts the sidecar sent to the owner's chat (filehelper), in order, from the
        sent-text index `after` on (an index as `sent_count()` gives)."""
        assert self.wechat is not None
        sent = self.wechat.state()["sent_texts"][after:]
        return [t["text"] for t in sent if t["to_user"] == OWNER_CHAT]

    def owner_texts_until(self, index: int) -> list[str]:
        """The owner-chat texts among the first `index` texts sent."""
        assert self.wechat is not None
        sent = self.wechat.state()["sent_texts"][:index]
        return [t["text"] for t in sent if t["to_user"] == OWNER_CHAT]

    def wechat_state(self) -> dict[str, Any]:
        """The fake server's counters (qr_count, login_count, ...) and everything sent."""
        assert self.wechat is not None
        return self.wechat.state()

    def wait_owner_text(self, fragment: str, after: int = 0, timeout_s: float = REPLY_TIMEOUT_S) -> str:
        """The first owner-chat text containing `fragment` from the sent-text index `after` on."""
        assert self.wechat is not None
        sent = self.wechat.wait_for_sent(
            lambda t: t["to_user"] == OWNER_CHAT and fragment in t["text"], timeout_s, after=after
        )
        return str(sent["text"])

    def sent_count(self) -> int:
        assert self.wechat is not None
        return len(self.wechat.state()["sent_texts"])

    def owner_says(self, text: str) -> None:
        assert self.wechat is not None
        self.wechat.push_text("owner", OWNER_CHAT, text)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no honcho log)"

    def describe(self) -> str:
        """For failure messages: the chat so far and the end of honcho's log."""
        try:
            chat = json.dumps(self.owner_texts(), ensure_ascii=False, indent=1)
        except OSError:
            chat = "(fake WeChat unreachable)"
        return f"owner chat: {chat}\nhoncho log tail:\n{self.log_tail()}"
