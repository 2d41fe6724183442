"""Two real trainers and one sidecar, as `honcho -f Procfile.multi start` runs them, the sidecar
logged in (real itchat) to the fake web-WeChat server: the one test of several runs with TensorFlow.

`runs` lists both; `@exp1 lr 0.01` changes exp1 only; kill -9 of exp1 gives one 'down' and one
'back' naming exp1 while exp2's progress goes on; an unaddressed `停止` is refused with the list;
`stop all` stops both, each with its final test accuracy.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.trainer import wait_until
from protocol import ConnectionInfo, resolve_connection
from tests.system import processes
from tests.system.stack import ProcfileStack

pytestmark = pytest.mark.slow

RUNS = ("exp1", "exp2")
BOTH_START_TIMEOUT_S = 240.0  # two TensorFlow imports and model builds at once on 2 loaded cores
TIMEOUT_S = 120.0


class MultiStack(ProcfileStack):
    """Procfile.multi in the stack's private directory; progress every few seconds."""

    def __init__(self, mnist_path: Path | None) -> None:
        super().__init__(mnist_path, procfile="Procfile.multi")

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "CHATTRAIN_PROGRESS_INTERVAL": "3"}

    def run_status(self, name: str) -> dict[str, Any] | None:
        try:
            connection = resolve_connection(connection_file=self.runtime_dir / f"{name}.json", environ={})
            with connection.control_client(timeout_ms=1000, retries=1) as client:
                return client.status()
        except (ConnectionError, OSError, ValueError):
            return None

    def run_pid(self, name: str) -> int | None:
        try:
            pid = ConnectionInfo.read(self.runtime_dir / f"{name}.json").pid
        except (OSError, ValueError, TypeError):
            return None
        return pid if pid is not None and processes.is_alive(pid) else None

    def wait_running(self, timeout_s: float = BOTH_START_TIMEOUT_S) -> dict[str, Any]:  # type: ignore[override]
        def probe() -> dict[str, Any] | None:
            statuses = {name: self.run_status(name) for name in RUNS}
            running = all(s and s["state"] == "running" and s["step"] > 0 for s in statuses.values())
            return statuses if running else None

        return wait_until(probe, timeout_s, "both trainers running", processes.POLL_S)


@pytest.fixture(scope="module")
def multi(mnist_path: Path | None) -> Iterator[MultiStack]:
    if not sys.platform.startswith("linux"):
        pytest.skip("finds its processes in /proc")
    pytest.importorskip("honcho", reason="needs honcho (the Procfile launcher)")
    running = MultiStack(mnist_path)
    running.start()
    try:
        yield running
    finally:
        running.close()
    assert not running.strays, f"processes outlived the Procfile launcher (killed now): {running.strays}"


def ask(stack: MultiStack, text: str, fragment: str, timeout_s: float = TIMEOUT_S) -> str:
    after = stack.sent_count()
    stack.owner_says(text)
    return stack.wait_owner_text(fragment, after=after, timeout_s=timeout_s)


def test_two_trainers_one_chat(multi: MultiStack) -> None:
    try:
        _two_trainers_one_chat(multi)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{multi.describe()}") from None


def _two_trainers_one_chat(stack: MultiStack) -> None:
    stack.wait_running()
    listing = ask(stack, "runs", "Runs (2):")
    assert "exp1: running, step" in listing and "exp2: running, step" in listing, listing

    ask(stack, "@exp1 lr 0.01", "[exp1] OK: learning_rate = 0.01")
    lr = {name: (stack.run_status(name) or {}).get("params", {}).get("learning_rate") for name in RUNS}
    assert lr["exp1"] == 0.01 and lr["exp2"] != 0.01, lr

    old_pid = stack.run_pid("exp1")
    assert old_pid is not None
    before_kill = stack.sent_count()
    os.kill(old_pid, signal.SIGKILL)
    down = stack.wait_owner_text("Trainer down", after=before_kill, timeout_s=TIMEOUT_S)
    assert down.startswith("[exp1] "), down
    after_down = stack.sent_count()
    stack.wait_owner_text("[exp2] Iter", after=after_down, timeout_s=TIMEOUT_S)  # exp2 goes on
    back = stack.wait_owner_text("Trainer back", after=before_kill, timeout_s=BOTH_START_TIMEOUT_S)
    assert back.startswith("[exp1] "), back
    stack.wait_running()  # the respawned exp1 trains again (autostart)
    texts = stack.owner_texts(before_kill)
    assert sum("Trainer down" in t for t in texts) == 1, texts
    # One 'back' (plus, if loading takes over a minute, one 'still loading' note), all about exp1.
    assert all(t.startswith("[exp1] ") for t in texts if "Trainer back" in t), texts

    refused = ask(stack, "停止", "请指定")
    assert "exp1" in refused and "exp2" in refused
    assert all((stack.run_status(name) or {}).get("state") == "running" for name in RUNS)

    after_stop = stack.sent_count()
    stack.owner_says("stop all")
    for name in RUNS:
        final = stack.wait_owner_text(f"[{name}] ⏹ Stopped", after=after_stop, timeout_s=TIMEOUT_S)
        assert "test accuracy" in final, final
