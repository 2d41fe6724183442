"""End to end: a real `python -m trainer`, a real `python -m sidecar` (itchat) and the fake
web-WeChat server; commands typed in the fake chat steer the real training run."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakes.processes import scratch_dir, spawn, stop
from fakes.wechat import FakeWeChatServer

pytestmark = pytest.mark.slow

PROGRESS_INTERVAL_S = 3.0
START_TIMEOUT_S = 90.0  # TensorFlow import and model build on a slow CI machine
REPLY_TIMEOUT_S = 20.0


class Stack:
    """The trainer and sidecar processes around one fake WeChat server."""

    def __init__(self, wechat: FakeWeChatServer, workdir: Path, data_args: list[str]) -> None:
        self.wechat = wechat
        self.workdir = workdir
        self.data_args = data_args
        self.control = f"ipc://{workdir}/c"
        self.metrics = f"ipc://{workdir}/m"
        self.trainer: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None

    def start_trainer(self, *extra: str) -> None:
        self.trainer = self._spawn(
            "trainer",
            [
                "--run-dir",
                str(self.workdir / "run"),
                *self.data_args,
                "--param",
                "display_step=2",
                "--param",
                "training_iters=100000",
                "--quiet",
                *extra,
            ],
        )

    def start_sidecar(self) -> None:
        self.sidecar = self._spawn(
            "sidecar",
            [
                "--backend",
                "wechat",
                "--wechat-base-url",
                self.wechat.url,
                "--state-dir",
                str(self.workdir / "state"),
                "--allow",
                "Ally",
                "--progress-interval",
                str(PROGRESS_INTERVAL_S),
            ],
        )

    def _spawn(self, program: str, args: list[str]) -> subprocess.Popen[bytes]:
        """`python -m program` on our endpoints, output appended to workdir/<program>.log."""
        endpoints = ["--control", self.control, "--metrics", self.metrics]
        log = self.workdir / f"{program}.log"
        return spawn(program, [*endpoints, *args], log, CHATTRAIN_RUNTIME_DIR=str(self.workdir))

    def kill_trainer(self) -> None:
        assert self.trainer is not None
        self.trainer.send_signal(signal.SIGKILL)
        self.trainer.wait(REPLY_TIMEOUT_S)

    def close(self) -> None:
        for process in (self.sidecar, self.trainer):
            stop(process, REPLY_TIMEOUT_S)

    # -- chat -------------------------------------------------------------------------------
    def owner_says(self, text: str) -> None:
        self.wechat.push_text("owner", "filehelper", text)

    def wait_sent(self, fragment: str, timeout_s: float = REPLY_TIMEOUT_S, after: int = 0) -> str:
        """The first text containing `fragment` among those sent from index `after` on."""
        self.wechat.wait_until(lambda s: any(fragment in t.text for t in s.sent_texts[after:]), timeout_s)
        return next(t for t in self.texts()[after:] if fragment in t)

    def wait_state(self, state: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.say_and_wait("status", "State:").startswith(f"State: {state}"):
            assert time.monotonic() < deadline, f"trainer never {state}: {self.texts()[-3:]}"

    def texts(self, predicate: Callable[[str], bool] = lambda _: True) -> list[str]:
        with self.wechat.changed:
            return [t.text for t in self.wechat.sent_texts if predicate(t.text)]

    def count(self, fragment: str) -> int:
        return len(self.texts(lambda text: fragment in text))

    def say_and_wait(self, text: str, fragment: str) -> str:
        before = len(self.texts())
        self.owner_says(text)
        return self.wait_sent(fragment, after=before)


@pytest.fixture
def stack(fake_wechat: FakeWeChatServer, data_args: list[str]) -> Iterator[Stack]:
    with scratch_dir("ct-e2e-") as workdir:
        running = Stack(fake_wechat, workdir, data_args)
        try:
            yield running
        finally:
            running.close()


def test_seed_commands_in_the_chat_start_reparameterise_and_stop_training(stack: Stack) -> None:
    stack.start_trainer()
    stack.start_sidecar()
    stack.wait_sent("Sidecar connected", START_TIMEOUT_S)
    stack.wait_state("idle")
    # Chinese commands get Chinese replies and notices; the seed's 'lr 0.01' keeps the language.
    assert stack.say_and_wait("开始", "开始训练（第").startswith("开始训练（第 0 步")
    stack.wait_sent("▶️ 开始训练（第 0 步）")
    changed = stack.say_and_wait("lr 0.01", "已修改：")
    assert changed.startswith("已修改：学习率 learning_rate = 0.01（原为 0.001），从第 "), changed
    assert "取值无效" in stack.say_and_wait("bs 0", "取值无效")

    stack.wechat.push_text("bob", "owner", "停止")  # not on the allow-list: ignored
    assert "学习率 learning_rate (lr) = 0.01" in stack.say_and_wait("参数", "参数（")
    assert stack.say_and_wait("status", "State:").startswith("State: running")

    first_progress = time.monotonic()
    stack.wait_sent("Iter ")
    stack.wechat.wait_until(lambda s: sum("Iter " in t.text for t in s.sent_texts) >= 3, START_TIMEOUT_S)
    elapsed_s = time.monotonic() - first_progress
    # display_step=2 gives several reports a second; chat sees one per interval at most.
    assert stack.count("Iter ") <= 2 + elapsed_s / PROGRESS_INTERVAL_S

    assert stack.say_and_wait("停止", "正在停止（第").startswith("正在停止")
    stack.wait_sent("⏹ 已停止（第")
    # One message per change: the reply; the feed does not announce the chat's own change again.
    assert not stack.count("learning_rate: 0.001 → 0.01") and not stack.count("学习率 learning_rate：0.001")


def test_an_allowed_contact_steers_and_a_stranger_cannot_stop(stack: Stack) -> None:
    stack.start_trainer("--autostart")
    stack.start_sidecar()
    stack.wait_sent("Sidecar connected", START_TIMEOUT_S)
    stack.wait_state("running")
    stack.wechat.push_text("bob", "owner", "stop")
    stack.wechat.push_text("alice", "owner", "status")
    alice = stack.wechat.user_name("alice")
    reply = stack.wechat.wait_for_sent(lambda t: t.to_user == alice, timeout_s=REPLY_TIMEOUT_S)
    assert reply.text.startswith("State: running")
    assert stack.say_and_wait("status", "State:").startswith("State: running")
    assert not any(t.to_user == stack.wechat.user_name("bob") for t in stack.wechat.sent_texts)


def test_trainer_killed_and_restarted_gives_one_down_and_one_back(stack: Stack) -> None:
    stack.start_trainer("--autostart", "--checkpoint-every-steps", "20")
    stack.start_sidecar()
    stack.wait_sent("Sidecar connected", START_TIMEOUT_S)
    stack.wait_sent("Checkpoint saved", START_TIMEOUT_S)
    stack.kill_trainer()
    stack.wait_sent("Trainer down")
    assert stack.say_and_wait("status", "Trainer unavailable")
    stack.start_trainer("--autostart")
    back = stack.wait_sent("Trainer back", START_TIMEOUT_S)
    assert back.startswith("✅ Trainer back (new process), resumed at step ")  # it was running: autostart
    after_back = len(stack.texts())
    assert stack.say_and_wait("status", "State:")  # the feed and the commands carry on
    stack.wait_sent("Iter ", START_TIMEOUT_S, after=after_back)
    assert stack.count("Trainer down") == 1
    assert stack.count("Trainer back") == 1
