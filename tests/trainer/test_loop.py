"""The training loop in-process (one TensorFlow import for the lot): hooks, params, policies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import HOOKS, Callback  # noqa: E402
from trainer.callbacks.checkpoint import PeriodicCheckpoint  # noqa: E402
from trainer.callbacks.nonfinite import NonFiniteLoss, NonFinitePolicy  # noqa: E402
from trainer.callbacks.publish import PublishMetrics  # noqa: E402
from trainer.errors import TRACEBACK_TAIL_LINES  # noqa: E402
from trainer.module import KerasModule, sparse_accuracy  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32


class Recorder(Callback):
    """Records every hook call as (hook, step) and lets a test act at a given step."""

    def __init__(self, actions: dict[int, Any] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.logs: dict[str, list[dict[str, float]]] = {}
        self.actions = actions or {}

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:

            def hook(trainer: Trainer, logs: Any) -> None:
                self.calls.append((name, trainer.step))
                self.logs.setdefault(name, []).append(dict(logs))
                assert all(isinstance(v, float) for v in logs.values()), logs
                if name == "on_step_end" and trainer.step in self.actions:
                    self.actions.pop(trainer.step)(trainer)

            return hook
        return super().__getattribute__(name)

    def steps(self, hook: str) -> list[int]:
        return [step for name, step in self.calls if name == hook]


def make_trainer(run_dir: Path, module: Any, *callbacks: Callback, steps: int = 10, **params: Any) -> Trainer:
    values = {"bs": BATCH, "ti": BATCH * steps, "ds": 5, **params}
    return Trainer(module, params=values, callbacks=list(callbacks), run_dir=run_dir, progress=False)


def weights_finite(trainer: Trainer) -> bool:
    return all(np.isfinite(v.numpy()).all() for v in trainer.module.trainable_variables)


def test_fit_runs_training_iters_over_batch_size_steps_in_hook_order(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), recorder, steps=10)
    assert trainer.fit().outcome == "finished"
    assert trainer.step == 10
    assert recorder.steps("on_step_end") == list(range(1, 11))
    assert recorder.steps("on_report") == [5, 10]
    hooks = [name for name, _ in recorder.calls if name != "on_activity"]  # tests/trainer/test_run_states.py
    assert hooks[:2] == ["on_train_start", "on_epoch_start"]
    assert hooks[-4:] == ["on_epoch_end", "on_checkpoint", "on_test_end", "on_train_end"]
    assert set(recorder.logs["on_report"][0]) >= {"loss", "accuracy", "lr", "steps_per_s", "eta_s"}
    assert "finite" not in recorder.logs["on_report"][0]  # the loop's flag, not a metric
    assert "accuracy" in recorder.logs["on_train_end"][0]
    assert (tmp_path / "checkpoints" / "ckpt-10.index").exists()


def test_live_learning_rate_and_batch_size_changes_never_retrace(tmp_path: Path) -> None:
    def change(trainer: Trainer) -> None:
        trainer.set_params({"learning_rate": 0.05, "batch_size": 16}, at_step=trainer.step + 1)

    recorder = Recorder(actions={3: change})
    trainer = make_trainer(tmp_path, TinyModule(synthetic=128), recorder, steps=12)
    trainer.fit()
    assert trainer.learning_rate() == pytest.approx(0.05)
    change_events = {c["name"]: c for c in trainer.param_changes}
    assert change_events["learning_rate"]["applies_at_step"] == 4
    assert change_events["batch_size"]["applies_at_step"] == 5  # 128 / 32 = 4 steps per epoch
    assert trainer.batch_size == 16
    assert trainer._compiled["train"].experimental_get_tracing_count() == 1


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_non_finite_loss_is_never_applied_and_the_policy_decides(tmp_path: Path, policy: str) -> None:
    recorder = Recorder()
    nonfinite = NonFinitePolicy(policy)
    trainer = make_trainer(
        tmp_path, TinyModule(synthetic=256, nan_at_calls=(4,)), nonfinite, recorder, steps=8
    )
    if policy == "skip":
        assert trainer.fit().outcome == "finished"
        assert nonfinite.skipped == 1 and trainer.step == 8
    else:
        with pytest.raises(NonFiniteLoss):
            trainer.fit()
        assert trainer.step == 4
        assert trainer.error_info is not None and trainer.error_info["type"] == "NonFiniteLoss"
        assert recorder.steps("on_exception") == [4]
    assert math.isnan(recorder.logs["on_step_end"][3]["loss"])
    assert weights_finite(trainer)


def test_non_finite_loss_rolls_back_to_the_last_checkpoint(tmp_path: Path) -> None:
    recorder = Recorder()
    nonfinite = NonFinitePolicy("rollback")
    trainer = make_trainer(
        tmp_path,
        TinyModule(synthetic=256, nan_at_calls=(6,)),
        nonfinite,
        PeriodicCheckpoint(every_steps=4),
        recorder,
        steps=10,
    )
    assert trainer.fit().outcome == "finished"
    assert recorder.steps("on_step_end") == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10]
    assert nonfinite.rollbacks_since_progress == 0  # reset by the checkpoint at step 8
    assert nonfinite.rollbacks == 1  # the run's total
    assert weights_finite(trainer)


def test_rollback_gives_up_when_the_loss_stays_non_finite(tmp_path: Path) -> None:
    nonfinite = NonFinitePolicy("rollback", max_rollbacks=2)
    module = TinyModule(synthetic=256, nan_at_calls=tuple(range(3, 50)))
    trainer = make_trainer(tmp_path, module, nonfinite, PeriodicCheckpoint(every_steps=2), steps=10)
    with pytest.raises(NonFiniteLoss):
        trainer.fit()
    assert trainer.last_checkpoint_step == 2


def test_exception_in_user_code_fails_the_run_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = make_trainer(
        tmp_path,
        TinyModule(synthetic=256, fail_at_call=5),
        PeriodicCheckpoint(every_steps=2),
        recorder,
        steps=10,
    )
    with pytest.raises(tf.errors.InvalidArgumentError):
        trainer.fit()
    assert trainer.error_info is not None
    assert "user code failed on purpose" in trainer.error_info["message"]
    # The end of the traceback: the user's line that raised, then the error itself.
    tail = trainer.error_info["traceback_tail"].splitlines()
    assert 0 < len(tail) <= TRACEBACK_TAIL_LINES
    assert any("ct_test_modules.py" in line and "in training_step" in line for line in tail), tail
    assert "user code failed on purpose" in "\n".join(tail[-2:]), tail
    assert trainer.last_checkpoint_step == 4
    assert recorder.steps("on_exception") == [4]


def test_a_new_trainer_resumes_step_params_and_weights_from_the_run_dir(tmp_path: Path) -> None:
    first = make_trainer(tmp_path, TinyModule(synthetic=256), steps=6, lr=0.002)
    first.fit()
    weights = [v.numpy() for v in first.module.trainable_variables]
    published: list[tuple[str, dict[str, Any]]] = []
    publisher = PublishMetrics(lambda topic, body: published.append((topic, body)))
    second = make_trainer(tmp_path, TinyModule(synthetic=256), publisher, steps=6)
    restored = second.restore()
    assert restored is not None and restored.step == 6
    # Values read back from the checkpoint are applied, but they are no news: no param_changed.
    assert [change["reason"] for change in second.param_changes] == ["restored"]
    assert not [topic for topic, _ in published if topic == "event.param_changed"]
    assert second.step == 6 and second.params["learning_rate"] == pytest.approx(0.002)
    assert second.learning_rate() == pytest.approx(0.002)
    for before, after in zip(weights, second.module.trainable_variables, strict=True):
        np.testing.assert_array_equal(before, after.numpy())


def test_a_compiled_keras_model_trains_through_the_one_line_wrapper(tmp_path: Path) -> None:
    # Linearly separable through the origin: 20 SGD steps learn it (0.98 or more over 6 seeds,
    # where the larger class is 0.58 of the samples).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    module = KerasModule(model, train=(x, y), test=(x, y), metrics={"accuracy": sparse_accuracy})
    trainer = Trainer(module, params={"bs": 16}, max_steps=20, run_dir=tmp_path, progress=False)
    assert trainer.params["learning_rate"] == pytest.approx(0.5)
    assert trainer.fit().outcome == "finished"
    assert trainer.step == 20
    assert trainer.test()["accuracy"] >= 0.9


def test_a_module_that_refuses_a_param_change_keeps_the_values_it_had(tmp_path: Path) -> None:
    class Picky(TinyModule):
        def params_changed(self, params: dict[str, Any]) -> None:
            if params["learning_rate"] > 0.1:
                raise ValueError("this model diverges above 0.1")

    heard: list[dict[str, Any]] = []

    class Heard(Callback):
        def on_params_changed(self, trainer: Trainer, logs: Any) -> None:
            heard.extend(trainer.param_changes)

    trainer = Trainer(Picky(synthetic=64), params={"bs": BATCH}, callbacks=[Heard()], run_dir=tmp_path)
    with pytest.raises(ValueError, match="diverges"):
        trainer.set_params({"learning_rate": 0.5, "display_step": 7})
    assert trainer.params["learning_rate"] == 0.001 and trainer.params["display_step"] != 7
    assert trainer.module.trainer_params["learning_rate"] == 0.001  # the module's view too
    assert trainer.learning_rate() == pytest.approx(0.001) and heard == []
    trainer.set_params({"learning_rate": 0.05})
    assert trainer.learning_rate() == pytest.approx(0.05) and [c["new"] for c in heard] == [0.05]
