"""The state machine's table, the budget, and what the controller does under a flood or a failure
(no TensorFlow, no sockets)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocol import STATES, ErrorCode
from tests.trainer.test_control import make_controller, refused
from trainer.config import parse_config
from trainer.control import Progress
from trainer.lifecycle import TRANSITIONS, InvalidTransition, budget_refusal, next_state
from trainer.pacing import Pacer, paced
from trainer.params import PARAM_SPECS, defaults


def test_the_table_names_only_protocol_states_and_every_state_can_fail() -> None:
    assert "stopped" in STATES
    assert {state for state, _ in TRANSITIONS} | set(TRANSITIONS.values()) <= set(STATES)
    assert all(next_state(state, "fail") == "failed" for state in STATES)
    assert next_state("stopping", "end_early") == "stopped"
    with pytest.raises(InvalidTransition, match="cannot pause while idle"):
        next_state("idle", "pause")


def test_every_writer_goes_through_fire_and_a_bad_event_changes_nothing() -> None:
    controller, published = make_controller("running")
    with pytest.raises(InvalidTransition):
        controller.fire("loaded")
    assert controller.state == "running"
    controller.fire("fail", error={"type": "X", "message": "m", "traceback_tail": ""})
    assert controller.status({})["error"]["type"] == "X"
    assert [b["state"] for t, b in published if t == "event.state"] == ["idle", "running", "failed"]


def test_the_budget_refusal_names_what_to_do() -> None:
    assert budget_refusal(training_iters=320, samples_seen=288, batch_size=32, step=9, max_steps=None) is None
    used = budget_refusal(training_iters=320, samples_seen=320, batch_size=32, step=10, max_steps=None)
    assert used is not None and used.endswith("raise ti or start a new run dir")
    capped = budget_refusal(training_iters=10**6, samples_seen=320, batch_size=32, step=10, max_steps=10)
    assert capped is not None and "max_steps 10" in capped


def test_an_autostart_with_its_budget_used_up_stays_idle_and_says_why() -> None:
    controller, published = make_controller("loading")
    params = {**defaults(PARAM_SPECS), "training_iters": 320, "batch_size": 32}
    controller.loaded(PARAM_SPECS, params, Progress(step=10, samples_seen=320), autostart=True)
    assert controller.state == "idle"
    assert any("budget used up" in b["message"] for t, b in published if t == "log")


def test_a_run_paused_before_its_restart_loads_straight_into_paused_never_running() -> None:
    controller, published = make_controller("loading")
    params = {**defaults(PARAM_SPECS), "training_iters": 3200, "batch_size": 32}
    seen: list[str] = []
    controller.on_state_change = seen.append
    controller.loaded(PARAM_SPECS, params, Progress(step=10, samples_seen=320), autostart=True, paused=True)
    assert controller.state == "paused" and seen == ["paused"]
    states = [(b["previous"], b["state"]) for t, b in published if t == "event.state"]
    assert states == [("loading", "paused")]  # no start announced for a run that does not run
    assert controller.status({})["started_at"] is not None
    controller.resume({})
    assert controller.state == "running"


def test_queued_param_changes_coalesce_to_the_latest_value_per_parameter() -> None:
    controller, _ = make_controller("running")
    for index in range(5000):
        controller.set_params({"params": {"lr": 0.001 + index * 1e-7}})
        controller.set_params({"params": {"ds": 10 + index % 2}})
        controller.checkpoint({})
    commands = controller.take_commands(next_step=9)
    assert [c.kind for c in commands] == ["set_params", "checkpoint"]
    assert commands[0].params == {"learning_rate": pytest.approx(0.001 + 4999e-7), "display_step": 11}
    assert controller.take_commands(next_step=10) == []
    assert controller.get_params({})["params"]["display_step"] == 11


def test_a_failed_state_is_never_checkpointed() -> None:
    controller, _ = make_controller("running")
    controller.checkpoint({})
    controller.fire("fail", error=None)
    assert controller.take_commands(9) == []  # the pending checkpoint was dropped
    error = refused(ErrorCode.INVALID_STATE, controller.checkpoint, {})
    assert "failed" in error.message and "never saved" in error.message
    assert controller.evaluate({})["scheduled_at_step"] == 8  # evaluating is harmless


def test_set_params_while_loading_says_it_applies_when_loaded() -> None:
    controller, _ = make_controller("loading")
    reply = controller.set_params({"params": {"lr": 0.002}})
    assert reply["applies_at_step"] == {"learning_rate": None}
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(step=150), autostart=False)
    assert controller.set_params({"params": {"lr": 0.003}})["applies_at_step"] == {"learning_rate": 151}


def test_the_heartbeat_names_the_activity_and_its_age() -> None:
    controller, _ = make_controller("loading")
    assert controller.heartbeat_body()["activity"] == "loading"
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=True)
    controller.set_activity("evaluating")
    body = controller.heartbeat_body()
    assert body["activity"] == "evaluating" and 0 <= body["loop_age_s"] < 5
    controller.fire("fail", error=None)
    assert controller.heartbeat_body()["activity"] == "idle"  # a failed build or run has ended


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_serves_a_burst_at_once_then_at_its_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, 10, clock=clock, sleep=clock.sleep)
    handlers = paced({"status": lambda args: {"n": len(clock.slept)}}, pacer)
    for _ in range(10):
        handlers["status"]({})
    assert clock.slept == []
    for _ in range(50):
        handlers["status"]({})
    assert clock.slept and sum(clock.slept) == pytest.approx(0.5)  # 50 more at 100/s
    clock.now += 60.0  # idle for a minute: the bucket refills to its burst, not beyond
    clock.slept.clear()
    for _ in range(10):
        handlers["status"]({})
    assert clock.slept == []


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_heartbeat_interval_that_is_not_positive_is_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(["--heartbeat-interval", value], {})
    assert info.value.code == 2


def test_the_process_refuses_a_zero_heartbeat_interval_with_exit_2_naming_the_flag() -> None:
    command = [sys.executable, "-m", "trainer", "--heartbeat-interval", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--heartbeat-interval" in done.stderr.strip().splitlines()[-1]


def test_a_trainer_that_could_not_be_set_up_refuses_start_with_the_reason() -> None:
    controller, _ = make_controller("loading")
    controller.setup_failed({"type": "FileNotFoundError", "message": "no such file: mnist.npz"})
    error = refused(ErrorCode.INVALID_STATE, controller.start, {})
    assert "could not be set up" in error.message and "mnist.npz" in error.message
    refused(ErrorCode.INVALID_STATE, controller.start, {"params": {"lr": 0.01}})
    assert controller.state == "failed"  # nothing changed: no 'running' that fails again
    assert controller.status({})["error"]["type"] == "FileNotFoundError"
