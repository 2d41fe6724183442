"""The loop, its controller and its callbacks together in-process: how a run ends, what the
heartbeat says the loop is doing, and metrics named like the keys they travel with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow")

from protocol import RequestError  # noqa: E402
from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import Callback  # noqa: E402
from trainer.callbacks.control import ControlBridge  # noqa: E402
from trainer.callbacks.jsonl import FILE_NAME, JsonlLog  # noqa: E402
from trainer.callbacks.publish import PublishMetrics  # noqa: E402
from trainer.control import Controller, Progress  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32
Published = list[tuple[str, dict[str, Any]]]


class Actions(Callback):
    """Runs ``actions[step](trainer)`` after that step; records each activity and its heartbeat."""

    def __init__(self, controller: Controller, actions: dict[int, Any] | None = None) -> None:
        self.controller = controller
        self.actions = actions or {}
        self.activities: list[tuple[str, dict[str, Any]]] = []

    def on_step_end(self, trainer: Trainer, logs: Any) -> None:
        if trainer.step in self.actions:
            self.actions.pop(trainer.step)(trainer)

    def on_activity(self, trainer: Trainer, logs: Any) -> None:
        self.activities.append((trainer.activity, self.controller.heartbeat_body()))


def controlled(
    tmp_path: Path, module: Any, steps: int, *extra: Callback
) -> tuple[Trainer, Controller, Published]:
    published: Published = []
    publish = lambda topic, body: published.append((topic, body))  # noqa: E731
    controller = Controller((), {}, run_id="r", session="s", publish=publish)
    callbacks = [ControlBridge(controller, publish), PublishMetrics(publish, state=lambda: controller.state)]
    params = {"bs": BATCH, "ti": BATCH * steps, "ds": 2}
    trainer = Trainer(module, params=params, callbacks=[*callbacks, *extra], run_dir=tmp_path, progress=False)
    progress = Progress(step=trainer.step, total_steps=trainer.total_steps())
    controller.loaded(trainer.specs, trainer.params, progress, autostart=True)
    return trainer, controller, published


def test_a_stop_ends_in_the_stopped_state_with_a_final_stopped_event(tmp_path: Path) -> None:
    controller_holder: list[Controller] = []
    actions = {3: lambda trainer: controller_holder[0].stop({})}
    trainer, controller, published = controlled(tmp_path, TinyModule(synthetic=256), 10)
    controller_holder.append(controller)
    trainer.callbacks.append(Actions(controller, actions))
    assert trainer.fit().outcome == "stopped"
    assert controller.state == "stopped" and controller.status({})["state"] == "stopped"
    final = [body for topic, body in published if topic in ("event.stopped", "event.finished")]
    # Sent between steps 3 and 4 (the loop is on the host): step 4 never starts.
    assert [(body["event"], body["state"], body["step"]) for body in final] == [("stopped", "stopped", 3)]
    states = [body["state"] for topic, body in published if topic == "event.state"]
    assert states == ["running", "stopping", "stopped"]


def test_a_finished_run_refuses_a_start_until_its_budget_is_raised(tmp_path: Path) -> None:
    trainer, controller, published = controlled(tmp_path, TinyModule(synthetic=256), 4)
    assert trainer.fit().outcome == "finished" and controller.state == "finished"
    with pytest.raises(RequestError) as refused:
        controller.start({})
    assert refused.value.code == "invalid_state"
    assert "budget used up at step 4" in refused.value.message
    assert refused.value.message.endswith("raise ti or start a new run dir")
    assert controller.state == "finished"
    assert controller.start({"params": {"ti": BATCH * 6}})["state"] == "running"


def test_the_heartbeat_says_what_the_loop_is_doing(tmp_path: Path) -> None:
    trainer, controller, _ = controlled(tmp_path, TinyModule(synthetic=256), 4)
    recorder = Actions(controller, {2: lambda t: t.request_evaluation()})
    trainer.callbacks.append(recorder)
    trainer.fit()
    activities = [name for name, _ in recorder.activities]
    assert activities[:3] == ["step", "tracing", "step"]
    assert "evaluating" in activities and "checkpointing" in activities
    assert activities[-1] == "idle"
    for name, body in recorder.activities:
        assert body["activity"] == name and 0 <= body["loop_age_s"] < 5  # counted from its start
    assert controller.heartbeat_body()["activity"] == "idle"


class CollidingMetrics(TinyModule):
    """Outputs metrics named like the keys of the records and bodies they are carried in."""

    def training_step(self, batch: Any) -> Any:
        outputs = dict(super().training_step(batch))
        return {**outputs, "kind": outputs["loss"], "event": outputs["loss"], "step": outputs["loss"]}

    def validation_step(self, batch: Any) -> Any:
        outputs = dict(super().validation_step(batch))
        return {**outputs, "kind": outputs["loss"], "event": outputs["loss"], "split": outputs["loss"]}


def test_a_metric_named_like_a_record_key_is_renamed_and_never_fails_the_run(tmp_path: Path) -> None:
    trainer, controller, published = controlled(
        tmp_path, CollidingMetrics(synthetic=256), 4, JsonlLog(tmp_path)
    )
    trainer.callbacks.append(Actions(controller, {2: lambda t: t.request_evaluation()}))
    assert trainer.fit().outcome == "finished"
    records = [json.loads(line) for line in (tmp_path / FILE_NAME).read_text().splitlines()]
    report = next(r for r in records if r["kind"] == "report")
    assert report["step"] == 2 and isinstance(report["metric_kind"], float) and "metric_step" in report
    evaluated = next(body for topic, body in published if topic == "event.evaluated")
    assert evaluated["event"] == "evaluated" and evaluated["split"] == "val"
    assert {"metric_event", "metric_split", "kind"} <= set(evaluated)
    step_metrics = next(body for topic, body in published if topic == "metrics.report")
    assert step_metrics["step"] == 2 and "metric_step" in step_metrics


def test_a_flood_of_set_params_reaches_the_loop_as_one_change_per_boundary(tmp_path: Path) -> None:
    trainer, controller, published = controlled(tmp_path, TinyModule(synthetic=256), 6)

    def flood(trainer: Trainer) -> None:
        for index in range(2000):
            controller.set_params({"params": {"lr": 0.002 if index % 2 else 0.003}})
        controller.set_params({"params": {"ds": 2}})  # the value in use: no change at all

    trainer.callbacks.append(Actions(controller, {2: flood}))  # between steps 2 and 3
    assert trainer.fit().outcome == "finished"
    changes = [body for topic, body in published if topic == "event.param_changed"]
    assert [(c["name"], c["new"], c["applies_at_step"]) for c in changes] == [("learning_rate", 0.002, 3)]
    assert trainer.learning_rate() == pytest.approx(0.002)
