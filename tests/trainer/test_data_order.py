"""The order of the training data: a new one every epoch, seeded by the epoch (as Keras reshuffles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
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
