"""What the owner asks while the trainer is still loading is what happens once it has loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.support import TEST_MODULE, TrainerProcess
from trainer.intent import read_intent

pytestmark = pytest.mark.slow

TINY = ["--module", TEST_MODULE, "--synthetic-data", "256", "--param", "bs=16"]


def held(workdir: Path, run_dir: Path, gate: Path, *args: str) -> TrainerProcess:
    """A trainer that stays ``loading`` until ``gate`` exists (``ct_test_modules``)."""
    process = TrainerProcess(workdir, run_dir, [*TINY, *args], env={"CT_SETUP_WAITS_FOR": str(gate)})
    assert process.first_state == "loading"
    return process


def test_a_stop_while_loading_keeps_an_autostart_run_from_starting_and_is_recorded(
    workdir: Path, tmp_path: Path
) -> None:
    gate, run_dir = tmp_path / "gate", tmp_path / "run"
    process = held(workdir, run_dir, gate, "--param", "ti=100000000", "--autostart")
    try:
        reply = process.client.stop()
        assert reply["state"] == "loading" and reply["already"] is False
        gate.touch()
        status = process.wait_status(lambda s: s["state"] != "loading")
        assert status["state"] == "stopped" and status["step"] == 0
        assert read_intent(run_dir) == "stopped"  # a restart waits for a start too
        assert process.client.status()["step"] == 0  # no step ran
    finally:
        process.close()


def test_a_larger_budget_sent_with_a_start_while_loading_is_the_one_judged(
    workdir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = TrainerProcess(workdir, run_dir, [*TINY, "--param", "ti=160", "--autostart", "--exit-when-done"])
    assert first.popen.wait(timeout=120) == 0  # finished at step 10: its budget is used up
    first.close()
    gate = tmp_path / "gate"
    second = held(workdir, run_dir, gate)
    try:
        assert second.client.start({"ti": 320})["state"] == "loading"  # what the refusal asks for
        gate.touch()
        finished = second.wait_status(lambda s: s["state"] == "finished" and s["step"] > 10)
        assert finished["step"] == 20 and finished["params"]["training_iters"] == 320
    finally:
        second.close()
