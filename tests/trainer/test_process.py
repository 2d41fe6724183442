"""The trainer as users run it: a real process, real sockets, the seed CNN on a few hundred samples.

One process serves most tests in order (a TensorFlow import costs seconds); each test first puts
it in the state it needs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.processes import scratch_dir
from protocol import ErrorCode
from tests.trainer.support import TrainerProcess, expect_remote_error

pytestmark = pytest.mark.slow

LONG_RUN = ["--param", "bs=32", "--param", "ti=10000000", "--param", "ds=5"]


@pytest.fixture(scope="module")
def shared(data_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainerProcess]:
    with scratch_dir("ct-") as workdir:
        process = TrainerProcess(workdir, tmp_path_factory.mktemp("run"), [*data_args, *LONG_RUN])
        yield process
        process.close()


def ensure_running(process: TrainerProcess) -> None:
    state = process.client.status()["state"]
    if state == "paused":
        process.client.resume()
    elif state != "running":
        process.client.start()
    process.wait_status(lambda s: s["state"] == "running")


def test_sockets_answer_loading_before_tensorflow_is_imported(shared: TrainerProcess) -> None:
    assert shared.first_state == "loading"
    assert shared.wait_status(lambda s: s["state"] != "loading")["state"] == "idle"


def test_describe_lists_the_declared_params_with_aliases(shared: TrainerProcess) -> None:
    described = shared.client.describe()
    params = {p["name"]: p for p in described["params"]}
    assert params["learning_rate"]["aliases"] == ["lr"]
    assert params["batch_size"]["applies"] == "next_epoch"
    assert params["batch_size"]["value"] == 32
    assert "set_params" in described["ops"] and "loading" in described["states"]


def test_invalid_params_are_refused_and_nothing_changes(shared: TrainerProcess) -> None:
    before = shared.client.get_params()["params"]
    expect_remote_error(
        ErrorCode.INVALID_PARAMS, lambda: shared.client.set_params({"lr": "0.5", "bs": "lots"})
    )
    expect_remote_error(ErrorCode.INVALID_PARAMS, lambda: shared.client.set_params({"lr": -3}))
    expect_remote_error(ErrorCode.INVALID_PARAMS, lambda: shared.client.set_params({"xyz": 1}))
    assert shared.client.get_params()["params"] == before


def test_a_live_learning_rate_change_reaches_the_optimizer(shared: TrainerProcess) -> None:
    feed = shared.subscribe()
    try:
        ensure_running(shared)
        feed.wait("metrics.steps")
        reply = shared.client.set_params({"lr": "0.0005"})
        at_step = reply["applies_at_step"]["learning_rate"]
        assert reply["params"] == {"learning_rate": 0.0005}
        event = feed.wait("event.param_changed", lambda b: b["name"] == "learning_rate")
        assert event["new"] == 0.0005 and event["applies_at_step"] == at_step
        report = feed.wait("metrics.report", lambda b: b["step"] >= at_step)
        assert report["lr"] == pytest.approx(0.0005)  # read from the optimizer's variable
        assert shared.client.status()["params"]["learning_rate"] == 0.0005
    finally:
        feed.close()


def test_pause_holds_at_a_step_boundary_and_resume_continues(shared: TrainerProcess) -> None:
    feed = shared.subscribe()
    try:
        ensure_running(shared)
        reply = shared.client.pause()
        paused = feed.wait("event.paused")
        assert paused["step"] <= reply["at_step"] + 1
        assert shared.client.pause()["already"] is True
        held = shared.wait_status(lambda s: s["step"] == paused["step"] and s["state"] == "paused")
        assert held["step"] == paused["step"]
        shared.client.resume()
        feed.wait("event.resumed")
        feed.wait("metrics.steps", lambda b: b["step"] > paused["step"])
    finally:
        feed.close()


def test_checkpoint_and_evaluate_now_publish_their_results(shared: TrainerProcess) -> None:
    feed = shared.subscribe()
    try:
        ensure_running(shared)
        scheduled = shared.client.checkpoint()["scheduled_at_step"]
        saved = feed.wait("event.checkpoint_saved")
        assert saved["step"] >= scheduled and Path(saved["path"] + ".index").exists()
        shared.client.evaluate()
        evaluated = feed.wait("event.evaluated")
        assert 0.0 <= evaluated["accuracy"] <= 1.0
    finally:
        feed.close()


def test_stop_takes_effect_within_one_step_and_tests(shared: TrainerProcess) -> None:
    feed = shared.subscribe()
    try:
        ensure_running(shared)
        feed.wait("metrics.steps")
        reply = shared.client.stop()
        stopped = feed.wait("event.stopped")
        assert stopped["step"] <= reply["at_step"] + 1
        assert feed.bodies("metrics.test")[-1]["step"] == stopped["step"]
        assert 0.0 <= stopped["test_accuracy"] <= 1.0
        assert stopped["state"] == "stopped"  # the final event of a stop, in the state it leaves
        status = shared.wait_status(lambda s: s["state"] == "stopped")
        assert status["last_checkpoint_step"] == stopped["step"]
        assert shared.client.stop()["already"] is True
    finally:
        feed.close()


def test_sigterm_stops_gracefully_with_a_checkpoint_and_exits(shared: TrainerProcess) -> None:
    feed = shared.subscribe()
    try:
        ensure_running(shared)
        feed.wait("metrics.steps")
        shared.popen.send_signal(signal.SIGTERM)
        stopped = feed.wait("event.stopped")
        assert shared.popen.wait(timeout=60) == 0
        checkpoints = shared.run_dir / "checkpoints"
        assert (checkpoints / f"ckpt-{stopped['step']}.index").exists()
        # A clean exit leaves no socket or lock file behind.
        sockets = [Path(endpoint[len("ipc://") :]) for endpoint in (shared.control, shared.metrics)]
        left = [p for s in sockets for p in (s, s.with_name(s.name + ".lock")) if p.exists()]
        assert left == []
    finally:
        feed.close()
