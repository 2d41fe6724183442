"""Callback state in checkpoints: ``state_dict()`` saved with every checkpoint, handed back to
``load_state_dict`` on restore; older checkpoints (without it) still restore."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import Callback, Logs, state_keys  # noqa: E402
from trainer.callbacks.nonfinite import NonFinitePolicy  # noqa: E402
from trainer.callbacks.view import TrainerView  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32


def make_trainer(run_dir: Path, module: Any, *callbacks: Callback, steps: int = 4) -> Trainer:
    params = {"bs": BATCH, "ti": BATCH * steps, "ds": 100}
    return Trainer(module, params=params, callbacks=list(callbacks), run_dir=run_dir, progress=False)


class Counter(Callback):
    """Counts steps; its state is the count and a label, and it records what it was handed."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.steps = 0
        self.loaded: list[dict[str, Any]] = []

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "label": self.label, "nested": {"at": [self.steps, 0.5]}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loaded.append(dict(state))
        self.steps = int(state["steps"])


def test_callback_state_survives_a_checkpoint_and_a_new_trainer(tmp_path: Path) -> None:
    first, second = Counter("first"), Counter("second")
    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), first, second, steps=4)
    trainer.fit()
    saved = [first.state_dict(), second.state_dict()]
    assert saved[0]["steps"] == 4

    again = [Counter("new"), Counter("new")]
    restoring = make_trainer(tmp_path, TinyModule(synthetic=256), *again, steps=4)
    assert restoring.restore() is not None and restoring.step == 4
    # Two of a kind: each gets its own (keyed Counter, Counter[1]), exactly what it returned.
    assert [counter.loaded for counter in again] == [[saved[0]], [saved[1]]]
    assert again[0].steps == 4


def test_a_rollback_restores_the_weights_but_not_the_callbacks_state(tmp_path: Path) -> None:
    counter = Counter("c")
    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), counter, steps=4)
    trainer.fit()
    trainer.rollback()
    assert counter.loaded == []


def test_the_keys_are_the_class_names_with_an_index_for_a_second_of_a_kind() -> None:
    callbacks = [Counter("a"), NonFinitePolicy(), Counter("b"), Counter("c")]
    assert state_keys(callbacks) == ["Counter", "NonFinitePolicy", "Counter[1]", "Counter[2]"]


def test_the_non_finite_counts_survive_a_restart(tmp_path: Path) -> None:
    module = TinyModule(synthetic=256, nan_at_calls=(2,))
    policy = NonFinitePolicy("skip")
    trainer = make_trainer(tmp_path, module, policy, steps=4)
    assert trainer.fit().outcome == "finished" and policy.skipped == 1

    resumed = NonFinitePolicy("skip")
    again = make_trainer(tmp_path, TinyModule(synthetic=256), resumed)
    again.restore()
    assert resumed.skipped == 1
    again.set_params({"training_iters": BATCH * 6})  # the restored budget was used up
    assert again.fit().outcome == "finished" and again.step == 6
    assert resumed.skipped == 1  # a fit that continues a run keeps its totals


class Unsavable(Callback):
    def state_dict(self) -> dict[str, Any]:
        return {"handle": object()}


def test_a_state_that_json_cannot_encode_fails_the_save_naming_the_callback(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), Unsavable(), steps=2)
    with pytest.raises(TypeError, match=r"Unsavable\.state_dict\(\) cannot be saved"):
        trainer.fit()
    assert trainer.error_info is not None and "Unsavable" in trainer.error_info["message"]


def write_old_format_checkpoint(trainer: Trainer, step: int) -> None:
    """What ``CheckpointStore`` wrote before callback state was saved: no ``callbacks`` entry."""
    trainer.setup()
    old = tf.train.Checkpoint(
        step=tf.Variable(step, dtype=tf.int64),
        epoch=tf.Variable(0, dtype=tf.int64),
        samples_seen=tf.Variable(step * BATCH, dtype=tf.int64),
        params=tf.Variable(json.dumps({**trainer.params, "learning_rate": 0.0042})),
        optimizer=trainer.optimizer,
        **trainer.module.checkpoint_objects(),
    )
    manager = tf.train.CheckpointManager(old, str(trainer.run_dir / "checkpoints"), max_to_keep=3)
    manager.save(checkpoint_number=step)


def test_a_checkpoint_from_before_callback_state_restores(tmp_path: Path) -> None:
    write_old_format_checkpoint(make_trainer(tmp_path, TinyModule(synthetic=256), steps=6), step=3)
    counter = Counter("kept")
    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), counter, steps=6)
    restored = trainer.restore()  # the old checkpoint's params (its budget too, 6 steps)
    assert restored is not None and restored.step == 3 and restored.callbacks == {}
    assert trainer.step == 3 and trainer.learning_rate() == pytest.approx(0.0042)
    assert counter.loaded == []  # nothing saved for it: it keeps its own state
    assert trainer.fit().outcome == "finished" and trainer.step == 6
