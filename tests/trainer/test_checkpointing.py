"""Checkpoints in-process: asynchronous snapshots, stale temp dirs, misfits, params kept."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import Callback  # noqa: E402
from trainer.callbacks.checkpoint import PeriodicCheckpoint  # noqa: E402
from trainer.callbacks.publish import PublishMetrics  # noqa: E402
from trainer.checkpointing import (  # noqa: E402
    PENDING_PARAMS_FILE,
    CheckpointMismatch,
    CheckpointStore,
    CheckpointUnreadable,
)
from trainer.config import parse_config  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32


class ShapedModule(TinyModule):
    """TinyModule with other hidden layers: ``hidden`` units per layer."""

    def __init__(self, hidden: tuple[int, ...], **options: Any) -> None:
        super().__init__(**options)
        self.hidden = hidden

    def setup(self) -> None:
        super().setup()
        layers = [keras.layers.Dense(units, activation="relu") for units in self.hidden]
        self.model = keras.Sequential(
            [keras.Input((28, 28, 1)), keras.layers.Flatten(), *layers, keras.layers.Dense(10)]
        )


def make_trainer(run_dir: Path, module: Any, *callbacks: Any, steps: int = 4, **params: Any) -> Trainer:
    values = {"bs": BATCH, "ti": BATCH * steps, "ds": 2, **params}
    return Trainer(module, params=values, callbacks=list(callbacks), run_dir=run_dir)


def weights(trainer: Trainer) -> list[np.ndarray]:
    return [v.numpy().copy() for v in trainer.module.model.variables]


def test_the_default_cadence_is_a_minute_and_a_step_cadence_is_on_request() -> None:
    config = parse_config([], {})
    assert config.checkpoint_every_s == 60.0
    assert config.checkpoint_every_steps == 0
    assert parse_config(["--checkpoint-every-steps", "500"], {}).checkpoint_every_steps == 500


def test_a_save_is_a_snapshot_so_training_on_during_the_write_changes_nothing(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, TinyModule(synthetic=128))
    trainer.fit()
    saved = weights(trainer)
    trainer.step += 1
    trainer.save_checkpoint(wait=False)
    for variable in trainer.module.model.variables:  # the loop goes on while the file is written
        variable.assign(tf.zeros_like(variable))
    trainer.store.sync()
    again = make_trainer(tmp_path, TinyModule(synthetic=128))
    assert again.restore() is not None and again.step == trainer.step
    assert all(np.array_equal(a, b) for a, b in zip(saved, weights(again), strict=True))


def test_a_save_asked_for_while_one_is_in_flight_waits_and_both_complete(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, TinyModule(synthetic=128))
    store = trainer.store
    for step in (1, 2, 3):
        store.save(step=step, epoch=0, samples_seen=step * BATCH, params=trainer.params)
    store.sync()
    assert [step for step, _ in store.take_completed()] == [1, 2, 3]
    assert store.latest_path == str(tmp_path / "checkpoints" / "ckpt-3")
    assert store.take_completed() == []


def test_checkpoint_saved_is_announced_only_once_the_files_are_complete(tmp_path: Path) -> None:
    announced: list[tuple[int | None, bool]] = []

    class Announced(PeriodicCheckpoint):
        def on_checkpoint(self, trainer: Trainer, logs: Any) -> None:
            path = Path(f"{trainer.last_checkpoint_path}.index")
            announced.append((trainer.last_checkpoint_step, path.exists()))

    trainer = make_trainer(tmp_path, TinyModule(synthetic=256), Announced(every_steps=2), steps=8)
    trainer.fit()
    assert announced and all(complete for _, complete in announced)
    assert [step for step, _ in announced][-1] == 8 == trainer.last_checkpoint_step


def test_temp_directories_left_by_a_killed_save_are_removed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "ckpt-40_temp").mkdir(parents=True)
    (checkpoints / "ckpt-40_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 64)
    (checkpoints / "notes_temp.txt").write_text("a file, not a save's directory")
    with caplog.at_level(logging.WARNING, logger="trainer.checkpointing"):
        store = CheckpointStore(checkpoints, {"v": tf.Variable(1.0)})
    assert not (checkpoints / "ckpt-40_temp").exists()
    assert (checkpoints / "notes_temp.txt").exists()
    assert store.removed_temps == [checkpoints / "ckpt-40_temp"]
    assert "ckpt-40_temp" in caplog.text


class CountingModule(TinyModule):
    """TinyModule that also checkpoints its call counter: one variable more than TinyModule."""

    def checkpoint_objects(self) -> dict[str, Any]:
        return {**super().checkpoint_objects(), "calls": self.calls}


MODULES = {
    "tiny": lambda: TinyModule(synthetic=128),
    "wider": lambda: ShapedModule((32,), synthetic=128),
    "counting": lambda: CountingModule(synthetic=128),
}


@pytest.mark.parametrize(
    ("saved_by", "restored_by"),
    [("tiny", "wider"), ("tiny", "counting"), ("counting", "tiny")],
    ids=["other shapes", "a variable the checkpoint lacks", "a value the model lacks"],
)
def test_a_checkpoint_restored_onto_a_different_model_fails_naming_it(
    tmp_path: Path, saved_by: str, restored_by: str
) -> None:
    make_trainer(tmp_path, MODULES[saved_by]()).fit()
    other = make_trainer(tmp_path, MODULES[restored_by]())
    with pytest.raises(CheckpointMismatch) as caught:
        other.restore()
    message = str(caught.value)
    assert message.startswith(f"checkpoint {tmp_path / 'checkpoints' / 'ckpt-4'} does not match this model")
    assert other.step == 0 and other.last_checkpoint_step is None  # nothing taken as restored


def test_params_changed_while_idle_survive_a_restart_without_a_new_checkpoint(tmp_path: Path) -> None:
    first = make_trainer(tmp_path, TinyModule(synthetic=128), PeriodicCheckpoint())
    first.fit()
    first.set_params({"learning_rate": 0.0077})
    assert (tmp_path / "checkpoints" / PENDING_PARAMS_FILE).stat().st_mode & 0o777 == 0o600
    second = make_trainer(tmp_path, TinyModule(synthetic=128), PeriodicCheckpoint())
    restored = second.restore()
    assert restored is not None and restored.step == 4
    assert second.params["learning_rate"] == 0.0077
    assert second.learning_rate() == pytest.approx(0.0077)


def test_a_later_checkpoint_holds_the_params_and_retires_the_pending_file(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, TinyModule(synthetic=128), PeriodicCheckpoint(), steps=4)
    trainer.fit()
    trainer.set_params({"learning_rate": 0.0077, "training_iters": BATCH * 6})
    trainer.fit()
    assert not (tmp_path / "checkpoints" / PENDING_PARAMS_FILE).exists()
    again = make_trainer(tmp_path, TinyModule(synthetic=128))
    assert again.restore() is not None and again.step == 6 and again.params["learning_rate"] == 0.0077


def test_a_save_that_fails_is_announced_as_failed_and_its_step_is_saved_again(tmp_path: Path) -> None:
    heard: list[tuple[Any, ...]] = []
    published: list[tuple[str, dict[str, Any]]] = []

    class Heard(Callback):
        def on_checkpoint(self, trainer: Trainer, logs: Any) -> None:
            heard.append(("saved", trainer.last_checkpoint_step))

        def on_checkpoint_failed(self, trainer: Trainer, logs: Any) -> None:
            heard.append(("failed", dict(trainer.checkpoint_error or {}), trainer.last_checkpoint_step))

    publish = PublishMetrics(lambda topic, body: published.append((topic, body)), state=lambda: "idle")
    trainer = make_trainer(tmp_path, TinyModule(synthetic=128), Heard(), publish)
    trainer.setup()  # the store is made: what stands in the way now is no stale temp it removes
    blocker = tmp_path / "checkpoints" / "ckpt-0_temp"  # where TensorFlow writes ckpt-0 (a full disk)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    trainer.save_checkpoint()
    [(kind, failure, last_good)] = heard
    assert kind == "failed" and failure["step"] == 0 and last_good is None and failure["error"]
    assert trainer.last_checkpoint_step is None and trainer.store.latest_path is None
    [(topic, body)] = [(t, b) for t, b in published if t.startswith("event.")]
    assert topic == "event.checkpoint_failed" and body["step"] == 0
    assert body["error"] == failure["error"] and body["last_checkpoint_step"] is None
    blocker.unlink()
    trainer.save_checkpoint()  # the same step again: written this time, not taken as done
    assert heard[-1] == ("saved", 0)
    assert Path(f"{trainer.last_checkpoint_path}.index").exists()


def test_a_torn_latest_checkpoint_falls_back_to_the_one_before_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_trainer(tmp_path, TinyModule(synthetic=256), PeriodicCheckpoint(every_steps=2), steps=6).fit()
    checkpoints = tmp_path / "checkpoints"
    for data in checkpoints.glob("ckpt-6.data-*"):  # a crash before the files reached the disk
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    again = make_trainer(tmp_path, TinyModule(synthetic=256), steps=6)
    with caplog.at_level(logging.ERROR, logger="trainer.checkpointing"):
        restored = again.restore()
    assert restored is not None and restored.step == 4 and again.step == 4
    assert f"checkpoint {checkpoints / 'ckpt-6'} cannot be read" in caplog.text
    for data in checkpoints.glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(CheckpointUnreadable, match="ckpt-2 cannot be read"):
        make_trainer(tmp_path, TinyModule(synthetic=256), steps=6).restore()


def test_params_set_before_the_first_checkpoint_survive_a_restart(tmp_path: Path) -> None:
    first = make_trainer(tmp_path, TinyModule(synthetic=128), PeriodicCheckpoint())
    first.set_params({"learning_rate": 0.0077})  # the seed's `lr 0.01`, then a crash before 开始
    second = make_trainer(tmp_path, TinyModule(synthetic=128), PeriodicCheckpoint())
    assert second.restore() is None
    assert second.params["learning_rate"] == 0.0077
    assert second.learning_rate() == pytest.approx(0.0077)
