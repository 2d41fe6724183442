"""The controller's state machine, params and command queue, without TensorFlow or sockets."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from protocol import ErrorCode, RequestError
from trainer.config import parse_config
from trainer.control import Controller, Progress
from trainer.params import PARAM_SPECS, defaults


def make_controller(state: str = "idle") -> tuple[Controller, list[tuple[str, dict[str, Any]]]]:
    published: list[tuple[str, dict[str, Any]]] = []
    controller = Controller(
        PARAM_SPECS,
        defaults(PARAM_SPECS),
        run_id="r",
        session="s",
        publish=lambda topic, body: published.append((topic, body)),
    )
    if state != "loading":
        controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(step=7), autostart=False)
    if state == "running":
        controller.start({})
    return controller, published


def refused(code: str, call: Any, *args: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(*args)
    assert info.value.code == code
    return info.value


def test_importing_the_package_and_its_control_plane_does_not_import_tensorflow() -> None:
    code = (
        "import sys, trainer, trainer.__main__, trainer.control, trainer.config; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_stop_pause_resume_are_idempotent_and_never_toggle() -> None:
    controller, _ = make_controller("running")
    assert controller.pause({})["already"] is False
    assert controller.pause({}) == {"state": "paused", "at_step": 7, "already": True}
    assert controller.resume({})["already"] is False
    assert controller.resume({})["already"] is True
    assert controller.stop({})["state"] == "stopping"
    assert controller.stop({})["already"] is True
    assert controller.state == "stopping"


def test_pause_or_resume_when_idle_is_an_invalid_state() -> None:
    controller, _ = make_controller("idle")
    refused(ErrorCode.INVALID_STATE, controller.pause, {})
    refused(ErrorCode.INVALID_STATE, controller.resume, {})
    assert controller.stop({})["already"] is True


def test_invalid_params_are_refused_all_or_nothing() -> None:
    controller, published = make_controller("running")
    before = controller.get_params({})
    error = refused(
        ErrorCode.INVALID_PARAMS, controller.set_params, {"params": {"lr": "0.01", "bs": "many", "nope": 1}}
    )
    assert set(error.details["errors"]) == {"bs", "nope"}
    refused(ErrorCode.INVALID_PARAMS, controller.set_params, {"params": {"lr": -1}})
    assert controller.get_params({}) == before
    assert controller.take_commands(9) == []


def test_set_params_acknowledges_the_step_each_change_applies_at() -> None:
    controller, _ = make_controller("running")
    controller.take_commands(next_step=9)  # the loop is running step 8
    controller.update_progress(next_epoch_step=12)
    reply = controller.set_params({"params": {"lr": "1e-3", "ti": "300000", "bs": 64}})
    assert reply["params"] == {"learning_rate": 0.001, "training_iters": 300000, "batch_size": 64}
    assert reply["applies"] == {
        "learning_rate": "next_step",
        "training_iters": "now",
        "batch_size": "next_epoch",
    }
    assert reply["applies_at_step"] == {"learning_rate": 9, "training_iters": 9, "batch_size": 12}
    [command] = controller.take_commands(next_step=10)
    assert command.kind == "set_params" and command.params["batch_size"] == 64


def test_a_batch_size_set_while_idle_mid_epoch_applies_where_the_resumed_epoch_ends() -> None:
    controller, _ = make_controller("loading")
    progress = Progress(step=11, next_epoch_step=17)  # restored 3 batches into an 8-batch epoch
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), progress, autostart=False)
    reply = controller.set_params({"params": {"bs": 64, "lr": "1e-3"}})
    assert reply["applies_at_step"] == {"batch_size": 17, "learning_rate": 12}


def test_while_loading_start_is_queued_and_checkpoint_is_not_ready() -> None:
    controller, published = make_controller("loading")
    assert controller.status({})["state"] == "loading"
    assert controller.start({"params": {"lr": 0.01}})["state"] == "loading"
    refused(ErrorCode.NOT_READY, controller.checkpoint, {})
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=False)
    assert controller.state == "running"
    assert [body["state"] for topic, body in published if topic == "event.state"] == ["running"]


def test_a_stop_while_loading_wins_over_autostart_and_the_last_word_counts() -> None:
    controller, published = make_controller("loading")
    assert controller.stop({}) == {"state": "loading", "at_step": 0, "already": False}
    assert controller.stop({})["already"] is True
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=True)
    assert [b["state"] for t, b in published if t == "event.state"] == ["stopped"]  # never running
    controller, _ = make_controller("loading")
    controller.stop({})
    controller.start({})  # then the owner changed their mind
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=False)
    assert controller.state == "running"
    controller, _ = make_controller("loading")
    controller.stop({})  # nothing would have started it: no run was stopped
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=False)
    assert controller.state == "idle"


def test_a_job_that_starts_once_loaded_refuses_a_stop_until_then() -> None:
    controller = Controller(
        PARAM_SPECS, defaults(PARAM_SPECS), run_id="r", session="s", publish=lambda t, b: None,
        starts_when_loaded=True,
    )  # fmt: skip
    assert "multi-worker" in refused(ErrorCode.NOT_READY, controller.stop, {}).message
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=True)
    assert controller.stop({})["state"] == "stopping"


def test_values_set_while_loading_win_over_the_restored_ones_for_the_budget_and_status() -> None:
    controller, published = make_controller("loading")
    restored = {**defaults(PARAM_SPECS), "training_iters": 320, "batch_size": 32}
    controller.start({"params": {"ti": 640}})  # what the "budget used up" refusal asks for
    controller.loaded(PARAM_SPECS, restored, Progress(step=10, samples_seen=320), autostart=False)
    assert controller.state == "running"
    assert controller.status({})["params"]["training_iters"] == 640
    assert not [b for t, b in published if t == "log"]
    [command] = controller.take_commands(11)
    assert command.params == {"training_iters": 640}  # still for the loop to apply


@pytest.mark.parametrize("wrong", [0, False, "", [], "x", 1])
def test_start_refuses_params_that_are_not_a_map_even_falsy_ones(wrong: Any) -> None:
    controller, _ = make_controller("idle")
    refused(ErrorCode.INVALID_PARAMS, controller.start, {"params": wrong})
    assert controller.state == "idle" and controller.take_commands(8) == []
    assert controller.start({"params": {}})["state"] == "running"


def test_after_a_failed_setup_checkpoint_and_evaluate_are_refused_with_the_reason() -> None:
    controller, _ = make_controller("loading")
    controller.setup_failed({"type": "FileNotFoundError", "message": "no MNIST file at x.npz"})
    for op in (controller.start, controller.checkpoint, controller.evaluate):
        message = refused(ErrorCode.INVALID_STATE, op, {}).message
        assert "could not be set up (FileNotFoundError: no MNIST file at x.npz)" in message
    assert controller.state == "failed" and controller.take_commands(1) == []


def test_heartbeat_body_reports_how_long_since_the_loop_checked_in() -> None:
    controller, _ = make_controller("idle")
    controller.take_commands(8)
    body = controller.heartbeat_body()
    assert body["state"] == "idle" and body["step"] == 7 and 0 <= body["loop_age_s"] < 1


def test_every_option_has_an_environment_variable_and_flags_win() -> None:
    environ = {
        "CHATTRAIN_MAX_STEPS": "5",
        "CHATTRAIN_PARAMS": "lr=0.1,bs=64",
        "CHATTRAIN_AUTOSTART": "yes",
        "CHATTRAIN_ON_NONFINITE": "skip",
    }
    config = parse_config(["--max-steps", "9"], environ)
    assert config.max_steps == 9 and config.autostart and config.on_nonfinite == "skip"
    assert config.params == ("lr=0.1", "bs=64")
    assert parse_config(["--param", "ti=10"], environ).params == ("ti=10",)


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--task", "nosuch"], {}), ([], {"CHATTRAIN_TASK": "nosuch"}), (["--module", "nocolon"], {}),
     (["--module", "pkg.mod:"], {}), (["--module", "1pkg:Cls"], {})],
)  # fmt: skip
def test_an_unknown_task_or_a_malformed_module_is_a_usage_error_before_loading(
    argv: list[str], env: dict[str, str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(argv, env)
    assert info.value.code == 2


def test_a_bad_initial_param_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(["--param", "lr=fast"], {})
    assert info.value.code == 2
    assert parse_config(["--module", "pkg.mod:Cls", "--param", "anything=1"], {}).module
