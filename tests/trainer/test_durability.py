"""What survives a kill -9 or a restart: the latest checkpoint, the run's intent, acknowledged params."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.support import REPO_ROOT, TEST_MODULE, WAIT_S, TrainerProcess

pytestmark = pytest.mark.slow

TINY = ["--module", TEST_MODULE, "--synthetic-data", "256", "--param", "bs=16", "--param", "ti=100000000"]


def test_a_kill_9_in_the_middle_of_a_save_leaves_the_previous_checkpoint_usable(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    from tests.trainer.ckpt_writer import VALUES
    from trainer.checkpointing import CheckpointStore

    directory = tmp_path / "checkpoints"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.trainer.ckpt_writer", str(directory)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        for line in writer.stdout:  # save 3 waits for save 2, so 2 is complete, 3 in flight
            if line.strip() == "queued 3":
                break
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    big = tf.Variable(tf.zeros([VALUES]))
    store = CheckpointStore(directory, {"big": big})
    restored = store.restore()
    assert restored is not None and restored.step >= 2
    assert restored.params == {"n": restored.step}
    assert np.all(big.numpy() == restored.step)  # one save's values, whole
    assert not [p for p in directory.iterdir() if p.name.endswith("_temp")]


def test_a_paused_run_stays_paused_and_a_stopped_one_stays_stopped_across_restarts(
    workdir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = TrainerProcess(workdir, run_dir, [*TINY, "--autostart"])
    try:
        first.wait_status(lambda s: s["state"] == "running" and s["step"] >= 3)
        first.client.pause()
        first.client.checkpoint()
        paused = first.wait_status(
            lambda s: s["state"] == "paused" and s["last_checkpoint_step"] == s["step"]
        )
        first.popen.send_signal(signal.SIGKILL)
    finally:
        first.close()

    second = TrainerProcess(workdir, run_dir, TINY)
    try:
        status = second.wait_status(lambda s: s["state"] != "loading")
        assert status["state"] == "paused" and status["step"] == paused["step"]
        second.client.resume()
        second.wait_status(lambda s: s["state"] == "running" and s["step"] > paused["step"])
        second.client.stop()
        second.wait_status(lambda s: s["state"] == "stopped")
        second.popen.send_signal(signal.SIGKILL)
    finally:
        second.close()

    third = TrainerProcess(workdir, run_dir, [*TINY, "--autostart"])
    try:
        status = third.wait_status(lambda s: s["state"] != "loading")
        assert status["state"] == "idle"  # the owner's stop beats --autostart
    finally:
        third.close()


def test_a_learning_rate_set_while_idle_survives_sigterm_and_a_restart(workdir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = TrainerProcess(workdir, run_dir, TINY)
    try:
        first.wait_status(lambda s: s["state"] == "idle")
        first.client.checkpoint()
        first.wait_status(lambda s: s["last_checkpoint_step"] == 0)
        assert first.client.set_params({"lr": 0.0077})["params"] == {"learning_rate": 0.0077}
        first.popen.send_signal(signal.SIGTERM)
        assert first.popen.wait(timeout=WAIT_S) == 0
    finally:
        first.close()

    second = TrainerProcess(workdir, run_dir, TINY)
    try:
        status = second.wait_status(lambda s: s["state"] != "loading")
        assert status["state"] == "idle" and status["params"]["learning_rate"] == 0.0077
    finally:
        second.close()
