"""The order of the training data: a new one every epoch, seeded by the epoch (as Keras reshuffles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import Callback  # noqa: E402
from trainer.data import synthetic_mnist, train_dataset  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32


class EpochLog(TinyModule):
    """Records the epoch of every training dataset the trainer asks for."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.epochs_asked: list[int] = []

    def train_dataset(self, batch_size: int) -> Any:
        self.epochs_asked.append(self.epoch)
        return super().train_dataset(batch_size)


def make_trainer(run_dir: Path, module: Any, steps: int = 4) -> Trainer:
    return Trainer(module, params={"bs": BATCH, "ti": BATCH * steps, "ds": 2}, run_dir=run_dir)


def test_every_epoch_has_its_own_order_and_the_same_epoch_the_same_order() -> None:
    pair = synthetic_mnist(64).train

    def order(epoch: int) -> list[int]:
        return [int(y) for _, ys in train_dataset(pair, 16, epoch=epoch) for y in ys.numpy()]

    def first_images(epoch: int) -> np.ndarray:
        return next(iter(train_dataset(pair, 64, epoch=epoch)))[0].numpy()

    assert not np.array_equal(first_images(0), first_images(1))
    assert np.array_equal(first_images(1), first_images(1))
    assert sorted(order(0)) == sorted(order(1))  # a permutation of the same samples


def test_the_trainer_asks_for_each_epochs_data_and_a_resumed_run_for_its_epoch(tmp_path: Path) -> None:
    module = EpochLog(synthetic=64)  # 2 batches of 32 per epoch
    make_trainer(tmp_path, module, steps=6).fit()
    assert module.epochs_asked == [0, 1, 2]
    resumed = EpochLog(synthetic=64)
    trainer = make_trainer(tmp_path, resumed)
    trainer.restore()
    trainer.set_params({"training_iters": BATCH * 10})
    trainer.fit()
    assert resumed.epochs_asked == [3, 4]


class Fingerprinted(TinyModule):
    """Each step also outputs its batch's pixel and label sums: which batch it trained on."""

    def training_step(self, batch: Any) -> Any:
        x, y = batch
        outputs = dict(super().training_step(batch))
        return {**outputs, "pixels": tf.reduce_sum(x), "labels": tf.reduce_sum(tf.cast(y, tf.float32))}


class StepLog(Callback):
    """(step, epoch, pixels, labels) of every step; sets ``at_step``'s params after that step,
    as a chat command during the run would."""

    def __init__(self, at_step: int = 0, params: dict[str, Any] | None = None) -> None:
        self.steps: list[tuple[int, int, float, float]] = []
        self.at_step, self.params = at_step, params or {}
        self.trainer: Trainer | None = None

    def on_step_end(self, trainer: Any, logs: Any) -> None:
        self.steps.append((trainer.step, trainer.epoch, logs["pixels"], logs["labels"]))
        if trainer.step == self.at_step and self.trainer is not None:
            self.trainer.set_params(self.params)


SAMPLES = 256  # 8 batches of 32 per epoch, 4 of 64
KILLED_AT = 11  # 3 batches into epoch 1
BUDGET = 16 * 32 + 8 * 64  # epochs 0, 1 with batches of 32, then 2, 3 with 64: 24 steps


def batches(steps: list[tuple[int, int, float, float]]) -> list[float]:
    return [value for step in steps for value in step[2:]]


def order_trainer(run_dir: Path, log: StepLog, strategy: Any, samples: int) -> Trainer:
    trainer = Trainer(
        Fingerprinted(synthetic=SAMPLES),
        params={"bs": 32, "ti": samples, "ds": 1000},
        callbacks=[log],
        run_dir=run_dir,
        steps_per_execution=4,  # the resumed epoch's first call is cut at its end (5 batches left)
        strategy=strategy,
        progress=False,
    )
    log.trainer = trainer
    return trainer


@pytest.mark.parametrize("distributed", [False, True], ids=["default", "mirrored"])
def test_a_run_resumed_mid_epoch_trains_the_batches_an_uninterrupted_one_would(
    tmp_path: Path, distributed: bool
) -> None:
    """Also when the next epoch's batch size was set before the restart (it applies there)."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if distributed else None
    bigger = {"batch_size": 64}
    uninterrupted = StepLog(at_step=KILLED_AT, params=bigger)
    order_trainer(tmp_path / "a", uninterrupted, strategy, BUDGET).fit()
    assert len(uninterrupted.steps) == 24

    order_trainer(tmp_path / "b", StepLog(), strategy, 32 * KILLED_AT).fit()  # saves step 11
    resumed = StepLog()
    trainer = order_trainer(tmp_path / "b", resumed, strategy, BUDGET)
    restored = trainer.restore()
    assert restored is not None and restored.step == KILLED_AT
    trainer.set_params({"training_iters": BUDGET, **bigger})  # as --param flags on a restart
    applies = {c["name"]: c["applies_at_step"] for c in trainer.param_changes}
    trainer.fit()

    expected = uninterrupted.steps[KILLED_AT:]
    assert [s[:2] for s in resumed.steps] == [s[:2] for s in expected]  # steps and epochs
    assert batches(resumed.steps) == pytest.approx(batches(expected), rel=1e-6)
    assert applies["batch_size"] == 17  # where the uninterrupted run's applied: the next epoch
    assert restored.epoch_position == (3, 32) and trainer.epoch == 4 and trainer.epoch_batches == 0


def test_a_checkpoint_without_the_epoch_position_restores_as_at_an_epoch_start(tmp_path: Path) -> None:
    """What ``CheckpointStore`` wrote before it saved the position: no ``epoch_position`` entry."""
    first = make_trainer(tmp_path, TinyModule(synthetic=64))
    first.setup()
    old = tf.train.Checkpoint(
        step=tf.Variable(3, dtype=tf.int64),
        epoch=tf.Variable(1, dtype=tf.int64),
        samples_seen=tf.Variable(3 * BATCH, dtype=tf.int64),
        params=tf.Variable(json.dumps(first.params)),
        callbacks=tf.Variable("{}"),
        optimizer=first.optimizer,
        **first.module.checkpoint_objects(),
    )
    tf.train.CheckpointManager(old, str(tmp_path / "checkpoints"), max_to_keep=3).save(checkpoint_number=3)
    module = EpochLog(synthetic=64)
    trainer = make_trainer(tmp_path, module, steps=6)
    restored = trainer.restore()
    assert restored is not None and restored.step == 3 and restored.epoch_position == (0, 0)
    trainer.set_params({"training_iters": BATCH * 5})
    trainer.fit()
    assert module.epochs_asked == [1]  # epoch 1 from its first batch: steps 4 and 5
    assert trainer.step == 5 and trainer.epoch == 2
