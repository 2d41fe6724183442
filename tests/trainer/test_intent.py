"""The run's intent file: atomic, 0600, written on the owner's changes only (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.control import Controller, Progress
from trainer.intent import INTENT_FILE, IntentRecorder, read_intent, start_on_load, write_intent
from trainer.params import PARAM_SPECS, defaults


def make_controller() -> Controller:
    controller = Controller(
        PARAM_SPECS, defaults(PARAM_SPECS), run_id="r", session="s", publish=lambda topic, body: None
    )
    controller.loaded(PARAM_SPECS, defaults(PARAM_SPECS), Progress(), autostart=False)
    return controller


def test_the_intent_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    write_intent(tmp_path, "running")
    write_intent(tmp_path, "paused")
    path = tmp_path / INTENT_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"intent": "paused"}
    assert [p.name for p in tmp_path.iterdir()] == [INTENT_FILE]  # no temporary left behind
    assert read_intent(tmp_path) == "paused"


def test_a_missing_or_unreadable_intent_file_reads_as_none(tmp_path: Path) -> None:
    assert read_intent(tmp_path) is None
    (tmp_path / INTENT_FILE).write_text("{not json")
    assert read_intent(tmp_path) is None
    (tmp_path / INTENT_FILE).write_text('{"intent": "dancing"}')
    assert read_intent(tmp_path) is None
    with pytest.raises(ValueError, match="dancing"):
        write_intent(tmp_path, "dancing")


def test_the_recorded_intent_beats_autostart_and_none_leaves_it_to_autostart() -> None:
    assert start_on_load(None, autostart=True) and not start_on_load(None, autostart=False)
    assert start_on_load("running", autostart=False) and start_on_load("paused", autostart=False)
    for ended in ("stopped", "finished", "failed"):
        assert not start_on_load(ended, autostart=True)


def test_the_recorder_follows_the_owner_start_pause_resume_stop(tmp_path: Path) -> None:
    controller = make_controller()
    recorder = IntentRecorder(controller, tmp_path)
    recorder.observe()
    assert read_intent(tmp_path) is None  # idle after loading says nothing about the owner
    seen = []
    for op in ("start", "pause", "resume", "stop"):
        controller.handlers()[op]({})
        recorder.observe()
        seen.append(read_intent(tmp_path))
    assert seen == ["running", "paused", "running", "stopped"]


def test_a_signal_stop_is_not_the_owners_and_leaves_running(tmp_path: Path) -> None:
    controller = make_controller()
    recorder = IntentRecorder(controller, tmp_path)
    controller.start({})
    recorder.observe()
    controller.signal_stop = True
    controller.stop({})  # what the loop does on SIGTERM
    recorder.observe()
    assert read_intent(tmp_path) == "running"


def test_a_setup_that_failed_ran_nothing_and_keeps_the_owners_intent(tmp_path: Path) -> None:
    write_intent(tmp_path, "running")  # the run was training when its process died
    controller = Controller(
        PARAM_SPECS, defaults(PARAM_SPECS), run_id="r", session="s", publish=lambda topic, body: None
    )
    recorder = IntentRecorder(controller, tmp_path)
    controller.on_state_change = recorder.observe
    controller.setup_failed({"type": "FileNotFoundError", "message": "no MNIST file at x.npz"})
    assert controller.state == "failed"
    assert read_intent(tmp_path) == "running"  # once the file is back, a restart carries on
