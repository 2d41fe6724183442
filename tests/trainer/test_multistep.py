"""Several steps per compiled call: controls exact to the step, every step still published."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from protocol.steps import METRICS_STEPS, step_losses

tf = pytest.importorskip("tensorflow")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from tests.trainer.test_loop import Recorder  # noqa: E402
from trainer.callbacks.base import Callback  # noqa: E402
from trainer.callbacks.checkpoint import PeriodicCheckpoint  # noqa: E402
from trainer.callbacks.control import ControlBridge  # noqa: E402
from trainer.callbacks.nonfinite import NonFiniteLoss, NonFinitePolicy  # noqa: E402
from trainer.callbacks.publish import PublishMetrics  # noqa: E402
from trainer.config import parse_config  # noqa: E402
from trainer.control import Controller, Progress  # noqa: E402
from trainer.module import StepOutputs  # noqa: E402
from trainer.multistep import MAX_STEPS_PER_CALL, CallSizer, resolve_jit  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32
K = 16
WAIT_S = 60.0


class HeldModule(TinyModule):
    """Holds the graph inside step ``hold_at`` until the test has sent its command."""

    def __init__(self, hold_at: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold_at = hold_at
        self.reached = threading.Event()
        self.release = threading.Event()

    def _arrive(self, calls: Any) -> Any:
        if int(calls) == self.hold_at:
            self.reached.set()
            assert self.release.wait(WAIT_S), "the test never released the held step"
        return calls

    def training_step(self, batch: Any) -> StepOutputs:
        outputs = dict(super().training_step(batch))
        seen = tf.py_function(self._arrive, [self.calls.read_value()], tf.int64)
        with tf.control_dependencies([seen]):
            outputs["loss"] = tf.identity(outputs["loss"])
        return outputs


def controlled_trainer(
    run_dir: Path, module: TinyModule, *callbacks: Any, steps: int = 40, ds: int = 1
) -> tuple[Trainer, Controller, list[tuple[str, dict[str, Any]]]]:
    published: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, body: dict[str, Any]) -> None:
        published.append((topic, body))

    params = {"bs": BATCH, "ti": BATCH * steps, "ds": ds}
    controller = Controller((), {}, run_id="r", session="s", publish=publish)
    bridge = ControlBridge(controller, publish)
    trainer = Trainer(
        module,
        params=params,
        callbacks=[bridge, PublishMetrics(publish), *callbacks],
        run_dir=run_dir,
        steps_per_execution=K,
    )
    controller.loaded(trainer.specs, trainer.params, Progress(), autostart=True)
    return trainer, controller, published


def while_held(module: HeldModule, command: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``command`` from another thread while the graph is inside step ``hold_at``."""
    reply: dict[str, Any] = {}

    def act() -> None:
        if module.reached.wait(WAIT_S):
            reply.update(command())
        module.release.set()

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return reply


def test_stop_takes_effect_within_one_step_at_16_steps_per_call(tmp_path: Path) -> None:
    module = HeldModule(hold_at=5, synthetic=256)
    recorder = Recorder()
    trainer, controller, _ = controlled_trainer(tmp_path, module, recorder)
    reply = while_held(module, lambda: controller.stop({}))
    assert trainer.fit().outcome == "stopped"
    assert reply["at_step"] == 5 and trainer.step == 5
    assert recorder.steps("on_step_end") == [1, 2, 3, 4, 5]
    assert recorder.steps("on_boundary") == [5]  # steps 1..5 ran in one call, which the stop ended


def test_a_learning_rate_change_applies_exactly_at_the_step_in_the_reply(tmp_path: Path) -> None:
    module = HeldModule(hold_at=7, synthetic=512)
    recorder = Recorder()
    trainer, controller, published = controlled_trainer(tmp_path, module, recorder, steps=30)
    reply = while_held(module, lambda: controller.set_params({"params": {"lr": 0.05}}))
    assert trainer.fit().outcome == "finished"
    assert reply["applies_at_step"] == {"learning_rate": 8}
    reports = zip(recorder.steps("on_report"), recorder.logs["on_report"], strict=True)
    lrs = {step: logs["lr"] for step, logs in reports}
    assert lrs[7] == pytest.approx(0.001) and lrs[8] == pytest.approx(0.05)
    assert all(lrs[s] == pytest.approx(0.05) for s in range(8, 31))
    [change] = trainer.param_changes
    assert change["applies_at_step"] == 8
    events = [body for topic, body in published if topic == "event.param_changed"]
    assert [e["applies_at_step"] for e in events] == [8]
    assert recorder.steps("on_boundary") == [7, 16, 30]  # the change ended a call; epochs of 16 steps


def test_every_step_is_published_and_reports_land_on_their_steps(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer, _, published = controlled_trainer(tmp_path, TinyModule(synthetic=256), recorder, ds=5)
    assert trainer.fit().outcome == "finished"
    batches = [body for topic, body in published if topic == METRICS_STEPS]
    points = [point for body in batches for point in step_losses(body)]
    reports = [body["step"] for topic, body in published if topic == "metrics.report"]
    assert [step for step, _ in points] == list(range(1, 41)) and reports == list(range(5, 41, 5))
    losses = [logs["loss"] for logs in recorder.logs["on_step_end"]]
    assert [loss for _, loss in points] == pytest.approx(losses)  # every step's own loss
    # One message per call, split where a report comes, so the feed stays in step order.
    assert len(batches) == 5 + 7  # 5 calls, split by the 7 reports that come before a call's end
    feed_steps = [body["step"] for topic, body in published if topic.startswith("metrics.")]
    assert feed_steps == sorted(feed_steps)
    assert all("accuracy" in body for topic, body in published if topic == "metrics.report")
    # 256 samples / 32 = 8 steps per epoch: each epoch is one call (the epoch's end is a limit).
    assert recorder.steps("on_boundary") == list(range(8, 41, 8))


def test_a_checkpoint_every_n_steps_is_taken_at_its_step(tmp_path: Path) -> None:
    trainer, _, published = controlled_trainer(
        tmp_path, TinyModule(synthetic=1024), PeriodicCheckpoint(every_steps=6), steps=20
    )
    trainer.fit()
    saved = [body["step"] for topic, body in published if topic == "event.checkpoint_saved"]
    assert saved == [6, 12, 18, 20]


def test_a_non_finite_step_ends_the_call_and_the_policy_acts_at_it(tmp_path: Path) -> None:
    module = TinyModule(synthetic=1024, nan_at_calls=(4,))
    trainer, _, _ = controlled_trainer(tmp_path, module, NonFinitePolicy("stop"), steps=20)
    with pytest.raises(NonFiniteLoss):
        trainer.fit()
    assert trainer.step == 4 and trainer.error_info is not None


def test_xla_on_trains_and_auto_means_on_only_with_a_gpu(tmp_path: Path) -> None:
    trainer = Trainer(
        TinyModule(synthetic=128),
        params={"bs": BATCH, "ti": BATCH * 8},
        run_dir=tmp_path,
        steps_per_execution=4,
        jit_compile="on",
    )
    assert trainer.fit().outcome == "finished" and trainer.step == 8
    assert resolve_jit("auto") == bool(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ValueError, match="jit_compile"):
        resolve_jit("maybe")


def test_auto_steps_per_call_grow_for_short_steps_and_stay_bounded() -> None:
    sizer = CallSizer(None)
    assert sizer.next_k() == 1
    sizer.observe(1, 5.0, traced=True)  # a call that traced says nothing about a step
    assert sizer.next_k() == 1
    sizer.observe(1, 1e-5, traced=False)
    assert sizer.next_k() == MAX_STEPS_PER_CALL
    sizer.observe(10, 10.0, traced=False)
    assert sizer.next_k() == 1
    with pytest.raises(ValueError, match="steps_per_execution"):
        CallSizer(0)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], (None, "auto")), (["--steps-per-execution", "32", "--jit-compile", "on"], (32, "on"))],
)
def test_steps_per_execution_and_jit_flags(argv: list[str], expected: tuple[Any, str]) -> None:
    config = parse_config(argv, {})
    assert (config.steps_per_execution, config.jit_compile) == expected
    assert parse_config([], {"CHATTRAIN_STEPS_PER_EXECUTION": "auto"}).steps_per_execution is None


@pytest.mark.parametrize("argv", [["--steps-per-execution", "0"], ["--jit-compile", "maybe"]])
def test_bad_steps_per_execution_or_jit_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(argv, {})
    assert exited.value.code == 2


def test_a_step_that_raises_inside_a_call_counts_the_steps_before_it(tmp_path: Path) -> None:
    module = TinyModule(synthetic=1024, fail_at_call=6)
    trainer, controller, _ = controlled_trainer(tmp_path, module, steps=20)
    with pytest.raises(tf.errors.InvalidArgumentError):
        trainer.fit()
    assert trainer.step == 5 and trainer.samples_seen == 5 * BATCH
    assert controller.status({})["step"] == 5 and controller.state == "failed"


def test_tensorboard_gets_each_report_at_its_step(tmp_path: Path) -> None:
    from trainer.callbacks.tensorboard import TensorBoard

    board = TensorBoard(tmp_path)
    trainer, _, _ = controlled_trainer(tmp_path, TinyModule(synthetic=256), board, steps=16, ds=4)
    trainer.fit()
    board.flush()
    seen = tensorboard_scalars(tmp_path)
    assert [step for step, _ in seen["train/loss"]] == [4, 8, 12, 16]
    assert {"train/accuracy", "train/lr", "test/accuracy"} <= set(seen)
    assert "train/eta_s" not in seen
    assert all(lr == pytest.approx(0.001) for _, lr in seen["train/lr"])


def test_a_pause_writes_the_tensorboard_records_held_so_far(tmp_path: Path) -> None:
    """TensorBoard batches its writes (about once a second); a paused run must not keep them back."""
    from trainer.callbacks.tensorboard import TensorBoard

    seen_while_paused: list[list[int]] = []
    held = threading.Event()

    class WhilePaused(Callback):
        """After TensorBoard in the list: reads its files once the run is held at the pause."""

        def on_activity(self, trainer: Any, logs: Any) -> None:
            if trainer.activity == "idle" and controller.state == "paused":
                seen_while_paused.append(
                    [step for step, _ in tensorboard_scalars(tmp_path).get("train/loss", [])]
                )
                held.set()

    def resume_once_held() -> None:
        held.wait(20)  # without the hook the run stays paused: resume it anyway, so the test fails
        controller.resume({})

    module = HeldModule(hold_at=6, synthetic=256)
    trainer, controller, published = controlled_trainer(
        tmp_path, module, TensorBoard(tmp_path), WhilePaused(), steps=10, ds=2
    )
    reply = while_held(module, lambda: controller.pause({}))
    threading.Thread(target=resume_once_held, daemon=True).start()
    assert trainer.fit().outcome == "finished"
    assert reply["state"] == "paused" and [body["step"] for t, body in published if t == "event.paused"] == [
        6
    ]
    assert seen_while_paused == [[2, 4, 6]]  # every report up to the pause, on disk while paused


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> (step, value) of every scalar in the run's TensorBoard event files."""
    seen: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return seen
