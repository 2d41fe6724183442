"""Failures fail the run, not the process; a killed trainer resumes from its checkpoint."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest

from protocol import ErrorCode
from tests.trainer.support import TEST_MODULE, TrainerProcess, expect_remote_error

pytestmark = pytest.mark.slow

TINY = ["--module", TEST_MODULE, "--synthetic-data", "256"]


def test_an_exception_in_a_step_fails_the_run_and_the_process_keeps_answering(
    workdir: Path, tmp_path: Path
) -> None:
    process = TrainerProcess(
        workdir,
        tmp_path / "run",
        [*TINY, "--param", "bs=16", "--checkpoint-every-steps", "2", "--autostart"],
        env={"CT_FAIL_AT_CALL": "6"},
    )
    feed = process.subscribe()
    try:
        failed = feed.wait("event.failed")
        assert failed["error"]["type"] == "InvalidArgumentError"
        assert "user code failed on purpose" in failed["error"]["message"]
        assert failed["error"]["traceback_tail"]
        status = process.wait_status(lambda s: s["state"] == "failed")
        assert status["error"]["type"] == "InvalidArgumentError"
        assert status["step"] == 5 and status["last_checkpoint_step"] == 4
        assert process.client.describe()["version"] == 1  # still serving
        assert process.popen.poll() is None
        # A new start from failed restores the last good checkpoint and runs (and fails) again.
        seen = len(feed.messages)
        assert process.client.start()["state"] == "running"
        feed.wait("event.started", since=seen)
        again = feed.wait("event.failed", since=seen)
        assert again["step"] == 4  # restored to the checkpoint of step 4, then failed again
    finally:
        feed.close()
        process.close()


def test_a_run_killed_with_9_carries_on_from_its_checkpoint_after_a_restart_without_autostart(
    workdir: Path, tmp_path: Path, data_args: list[str]
) -> None:
    run_dir = tmp_path / "run"
    args = [*data_args, "--param", "bs=32", "--param", "ti=10000000", "--param", "ds=5"]
    first = TrainerProcess(workdir, run_dir, [*args, "--autostart"])
    feed = first.subscribe()
    try:
        feed.wait("metrics.steps", lambda b: b["step"] >= 2)
        first.client.set_params({"lr": 0.0007})
        first.client.checkpoint()
        saved = feed.wait("event.checkpoint_saved")
        feed.wait("metrics.steps", lambda b: b["step"] >= saved["step"] + 2)
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(timeout=30)
    finally:
        feed.close()
        first.close()

    second = TrainerProcess(workdir, run_dir, args)
    feed = second.subscribe()
    try:
        started = feed.wait("event.started")  # the run's intent was running: no start needed
        assert started["step"] == saved["step"]
        assert started["params"]["learning_rate"] == 0.0007
        status = second.wait_status(lambda s: s["state"] == "running")
        assert status["last_checkpoint_step"] >= saved["step"]
        first_step = feed.wait("metrics.steps")
        assert first_step["step"] >= saved["step"] + 1
        report = feed.wait("metrics.report")
        assert report["lr"] == pytest.approx(0.0007)
    finally:
        feed.close()
        second.close()


@pytest.mark.parametrize(
    ("policy", "outcome"), [("stop", "failed"), ("skip", "finished"), ("rollback", "finished")]
)
def test_each_non_finite_policy_from_the_command_line(
    workdir: Path, tmp_path: Path, policy: str, outcome: str
) -> None:
    args = [*TINY, "--param", "bs=16", "--param", "ti=160", "--on-nonfinite", policy, "--autostart"]
    process = TrainerProcess(workdir, tmp_path / "run", args, env={"CT_NAN_AT_CALLS": "3"})
    feed = process.subscribe()
    try:
        warning = feed.wait("log", lambda b: "non-finite" in b["message"])
        assert warning["level"] == "warning" and warning["step"] == 3
        final = feed.wait(f"event.{outcome}")
        if policy == "stop":
            assert final["error"]["type"] == "NonFiniteLoss" and final["step"] == 3
        else:
            assert final["step"] == 10 and 0.0 <= final["test_accuracy"] <= 1.0
        status = process.wait_status(lambda s: s["state"] == outcome)
        assert all(math.isfinite(v) for k, v in status["metrics"].items() if k != "loss")
    finally:
        feed.close()
        process.close()


def test_a_failed_run_is_rescued_from_chat_with_the_new_learning_rate(workdir: Path, tmp_path: Path) -> None:
    args = [*TINY, "--param", "bs=16", "--param", "ds=1", "--checkpoint-every-steps", "2", "--autostart"]
    process = TrainerProcess(workdir, tmp_path / "run", args, env={"CT_NAN_AT_CALLS": "3,8"})
    feed = process.subscribe()
    try:
        feed.wait("event.failed", lambda b: b["step"] == 3)
        process.wait_status(lambda s: s["state"] == "failed")
        refusal = expect_remote_error(ErrorCode.INVALID_STATE, process.client.checkpoint)
        assert "never saved" in refusal.message
        # `lr 0.0005` then `start`: the restore to the checkpoint of step 2 keeps the new value.
        process.client.set_params({"lr": 0.0005})
        seen = len(feed.messages)
        process.client.start()
        started = feed.wait("event.started", since=seen)
        assert started["step"] == 2 and started["params"]["learning_rate"] == 0.0005
        report = feed.wait("metrics.report", lambda b: b["step"] == 3, since=seen)
        assert report["lr"] == pytest.approx(0.0005)
        feed.wait("event.failed", since=seen)
        # `start lr=0.0007` works alike.
        seen = len(feed.messages)
        process.client.start(params={"lr": 0.0007})
        started = feed.wait("event.started", since=seen)
        report = feed.wait("metrics.report", lambda b: b["step"] > started["step"], since=seen)
        assert report["lr"] == pytest.approx(0.0007)
        assert process.client.status()["params"]["learning_rate"] == 0.0007
    finally:
        feed.close()
        process.close()
