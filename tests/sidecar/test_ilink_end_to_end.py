"""End to end over iLink: a real `python -m trainer`, a real `python -m sidecar --backend ilink`,
the fake iLink server and a fake push webhook in this process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.ilink import OWNER, FakeIlinkServer, FakeWebhook
from fakes.processes import python_env, scratch_dir, spawn, stop

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # TensorFlow import and model build on a slow CI machine
REPLY_TIMEOUT_S = 20.0
STRANGER = "x1_stranger@im.wechat"
HOUR_S = 3600.0


class IlinkStack:
    """The trainer and sidecar processes around the fake iLink server and webhook."""

    def __init__(self, ilink: FakeIlinkServer, webhook: FakeWebhook, workdir: Path, data_args: list[str]):
        self.ilink, self.webhook, self.workdir, self.data_args = ilink, webhook, workdir, data_args
        self.control, self.metrics = f"ipc://{workdir}/c", f"ipc://{workdir}/m"
        self.env = python_env(CHATTRAIN_RUNTIME_DIR=str(workdir))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start_trainer(self) -> None:
        params = ["--param", "display_step=2", "--param", "training_iters=10000000", "--quiet"]
        self._spawn("trainer", ["--run-dir", str(self.workdir / "run"), *self.data_args, *params])

    def start_sidecar(self) -> None:
        self._spawn(
            "sidecar",
            [
                "--backend", "ilink",
                "--ilink-base-url", self.ilink.url,
                "--ilink-cdn-url", self.ilink.cdn_url,
                "--push-url", self.webhook.url,
                "--push-format", "wecom",
                "--state-dir", str(self.workdir / "state"),
                "--progress-interval", "1",
            ],
        )  # fmt: skip

    def _spawn(self, program: str, args: list[str]) -> None:
        endpoints = ["--control", self.control, "--metrics", self.metrics]
        log = self.workdir / f"{program}.log"
        self.processes[program] = spawn(
            program, [*endpoints, *args], log, CHATTRAIN_RUNTIME_DIR=str(self.workdir)
        )

    def kill_sidecar(self) -> None:
        process = self.processes.pop("sidecar")
        process.send_signal(signal.SIGKILL)
        process.wait(REPLY_TIMEOUT_S)

    def trainctl(self, *args: str) -> None:
        command = [sys.executable, "-m", "trainctl", "--control", self.control, "--metrics", self.metrics]
        subprocess.run([*command, *args], check=True, env=self.env, cwd=REPO_ROOT, timeout=REPLY_TIMEOUT_S)

    def close(self) -> None:
        for process in self.processes.values():
            stop(process, REPLY_TIMEOUT_S)

    def log(self, program: str) -> str:
        return (self.workdir / f"{program}.log").read_text(errors="replace")

    def say_and_wait(self, text: str, fragment: str, timeout_s: float = REPLY_TIMEOUT_S) -> str:
        before = len(self.ilink.texts())
        self.ilink.push(OWNER, text)
        return self.ilink.wait_text(fragment, timeout_s, after=before)

    def count(self, fragment: str) -> int:
        return sum(fragment in text for text in self.ilink.texts())


@pytest.fixture
def stack(data_args: list[str]) -> Iterator[IlinkStack]:
    with scratch_dir("ct-il-") as workdir, FakeIlinkServer() as ilink, FakeWebhook() as webhook:
        running = IlinkStack(ilink, webhook, workdir, data_args)
        try:
            yield running
        finally:
            running.close()


def test_seed_commands_a_plot_and_a_sidecar_killed_mid_run_over_ilink(stack: IlinkStack) -> None:
    stack.start_trainer()
    stack.start_sidecar()
    stack.ilink.wait_until(lambda s: s.valid_tokens != set(), START_TIMEOUT_S)  # QR login confirmed
    assert stack.say_and_wait("status", "State:", START_TIMEOUT_S)
    # Chinese commands get Chinese replies (and notices); 'lr 0.01' keeps the language.
    assert stack.say_and_wait("开始", "开始训练（第").startswith("开始训练（第 ")
    assert stack.say_and_wait("lr 0.01", "已修改：").startswith("已修改：学习率 learning_rate = 0.01")
    stack.ilink.push(STRANGER, "停止")  # not allowed: ignored, never answered
    assert "学习率 learning_rate (lr) = 0.01" in stack.say_and_wait("参数", "参数（")
    stack.ilink.wait_text("Iter ", START_TIMEOUT_S)  # metrics to plot
    images = len([s for s in stack.ilink.sent if s.image is not None])
    stack.say_and_wait("plot", "Loss and accuracy")
    stack.ilink.wait_until(lambda s: len([m for m in s.sent if m.image]) > images, REPLY_TIMEOUT_S)
    assert next(s.image for s in stack.ilink.sent if s.image).startswith(b"\x89PNG")

    stack.kill_sidecar()
    stack.ilink.push(OWNER, "停止")  # while the sidecar is down
    stack.start_sidecar()
    stack.ilink.wait_text("正在停止（第", START_TIMEOUT_S)
    stack.ilink.wait_text("⏹ ", REPLY_TIMEOUT_S)  # stopped: in the language of the last command
    assert not stack.say_and_wait("status", "State:").startswith("State: running")
    replies = stack.ilink.texts()
    assert sum(t.startswith("开始训练（第") for t in replies) == 1  # the reply ('▶️ 开始训练' is the event)
    assert sum(t.startswith("正在停止（第") for t in replies) == 1
    assert stack.ilink.texts(to=STRANGER) == []
    assert stack.ilink.qrcodes == ["qr-1"]  # the restart reused the saved token
    assert stack.ilink.bad_requests == []


def test_with_the_window_closed_the_alert_is_pushed_and_summarised_with_the_next_message(
    stack: IlinkStack,
) -> None:
    stack.start_trainer()
    stack.start_sidecar()
    stack.ilink.wait_until(lambda s: s.valid_tokens != set(), START_TIMEOUT_S)
    assert stack.say_and_wait("status", "State:", START_TIMEOUT_S)
    inbound = len(stack.ilink.texts())
    stack.say_and_wait("开始", "开始训练（第")
    # Progress every second: the sidecar stops sending it while 3 of the 10 are left (it logs
    # what it holds; each long poll wakes this wait).
    held = "outside the reply window): Iter"
    stack.ilink.wait_until(lambda s: held in stack.log("sidecar"), START_TIMEOUT_S)
    after_start = stack.ilink.texts()[inbound:]
    assert len(after_start) <= 7 and stack.ilink.refused == []

    stack.ilink.advance(25 * HOUR_S)  # the server's window closes; the sidecar learns it from ret -2
    stack.trainctl("stop")
    stack.webhook.wait_until(lambda w: any("⏹ " in t for t in w.texts()), REPLY_TIMEOUT_S)
    before = len(stack.ilink.texts())
    stack.ilink.push(OWNER, "status")
    # The owner's language, the summary's own words too: the last command was 开始.
    summary = stack.ilink.wait_text("条更新微信未能送达", REPLY_TIMEOUT_S, after=before)
    assert "⏹ 已停止（第" in summary
    reply = stack.ilink.wait_text("State:", REPLY_TIMEOUT_S, after=before)
    assert not reply.startswith("State: running")
    assert stack.ilink.texts()[before:].index(summary) < stack.ilink.texts()[before:].index(reply)
    assert len(stack.ilink.refused) == 1
    assert stack.webhook.url.split("key=")[1] not in stack.log("sidecar")
