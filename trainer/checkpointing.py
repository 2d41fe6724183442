"""Checkpoints: model, optimizer, the trainer's counters and the params, via ``CheckpointManager``.

Params travel as a JSON string in a ``tf.Variable`` so that one checkpoint is the whole truth of a
run; the learning rate also lives in the optimizer's own variable. The callbacks' states
(``Callback.state_dict``, by key) travel the same way, in a second one; a checkpoint written
before they did (without that variable) restores as it always did, with no callback state. The
position in the current epoch (batches done, their batch size) is a third: a resumed run skips
the batches of its epoch already trained, so it sees the data an uninterrupted run would; one
written before it was saved restores as at the start of an epoch.

Saves are asynchronous: ``save`` copies the variables (``Snapshot``: the loop may go on changing
them) and a background thread writes the copies through ``CheckpointManager``. A save asked for
while one is in flight first waits for it: at most one is in flight. The manager records a
checkpoint as the latest only after its files are complete, so a kill -9 mid-write leaves the
previous checkpoint the latest and a ``ckpt-N_temp`` directory behind, which the next
``CheckpointStore`` removes. ``take_completed`` hands back the saves whose files are complete, so
that what is announced as saved is on disk, and ``take_failed`` the ones that failed (a full
disk), so that those are announced as failed and their step can be saved again. The writer
thread is not a daemon: the interpreter waits for a write in flight before it exits.

Params acknowledged between checkpoints while no run is in progress (idle, failed) are kept in
``pending_params.json`` beside the checkpoints (``save_params``): restoring the checkpoint they
were set on top of applies them, so a restart keeps them without writing a whole checkpoint; set
before the first checkpoint (the seed's ``lr 0.01`` before ``开始``), ``fresh_params`` has them.

``restore`` falls back to the previous checkpoint when the latest cannot be read (a torn file
after a crash), naming what it skipped; one that does not fit the model is an error, not skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from tensorflow.python.util import object_identity

from trainer.intent import write_json_atomic

logger = logging.getLogger(__name__)

MAX_TO_KEEP = 3
TEMP_SUFFIX = "_temp"  # TensorFlow writes ckpt-N into ckpt-N_temp, then moves the files out
PENDING_PARAMS_FILE = "pending_params.json"
CALLBACKS_KEY = "callbacks"  # the tracked name of the callbacks' states in the checkpoint
POSITION_KEY = "epoch_position"  # the tracked name of (batches done in the epoch, their batch size)
EPOCH_START = (0, 0)  # the position of a checkpoint written before positions were saved
MISMATCH_DETAIL_CHARS = 600


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model built now (names the checkpoint and the misfit)."""


class CheckpointUnreadable(OSError):
    """A checkpoint whose files cannot be read (names the checkpoint and the error)."""


@dataclass(frozen=True)
class Restored:
    path: str
    step: int
    epoch: int
    samples_seen: int
    params: dict[str, Any]
    callbacks: dict[str, Any] = field(default_factory=dict)  # state by key (``callback_states``)
    epoch_position: tuple[int, int] = EPOCH_START  # (batches of the epoch done, its batch size)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the ``*_temp`` directories a kill -9 during a save left; returns what went."""
    if not directory.is_dir():
        return []
    stale = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.endswith(TEMP_SUFFIX))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s, left by a save that never finished", path)
    return stale


def _variables(root: tf.train.Checkpoint) -> list[Any]:
    """Every variable (TensorFlow's or Keras') reachable from ``root``."""
    view = tf.train.TrackableView(root)
    return [t for t in view.descendants() if isinstance(t, (tf.Variable, keras.Variable))]


class Snapshot:
    """CPU copies of the variables, made when first seen and refreshed by ``take`` (main thread).

    A writer ``tf.train.Checkpoint`` over the same objects serializes the copies instead of the
    live variables (its saver's object map, as TensorFlow's own async checkpoint does), so the
    loop can go on updating the live ones while it writes. TensorFlow's
    ``experimental_enable_async_checkpoint`` fails on its second save with Keras 3 variables
    (their ``_copy_trackable_to_cpu`` creates a variable inside a ``tf.function``): hence this.
    """

    def __init__(self, objects: Mapping[str, Any]) -> None:
        self.writer = tf.train.Checkpoint(**objects)
        self._pairs: list[tuple[Any, tf.Variable]] = []
        self._map: Any = object_identity.ObjectIdentityDictionary()

    def take(self) -> None:
        with tf.device("CPU:0"):
            for variable in _variables(self.writer):  # again each time: variables made since
                if variable is not self.writer.save_counter and variable not in self._map:
                    copy = tf.Variable(_value(variable))
                    self._map[variable] = copy
                    self._pairs.append((variable, copy))
        for variable, copy in self._pairs:
            copy.assign(_value(variable))
        self.writer._saver._object_map = self._map  # noqa: SLF001 (see the class docstring)


def _holds(path: str, name: str) -> bool:
    """Whether the checkpoint at ``path`` has the top-level variable tracked as ``name``."""
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError):
        return True  # unreadable: let the full restore report it
    return bool(reader.has_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))


def _value(variable: Any) -> Any:
    return variable.value if isinstance(variable, keras.Variable) else variable


class CheckpointStore:
    """Save and restore ``objects`` plus the counters under ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        objects: Mapping[str, Any],
        *,
        max_to_keep: int = MAX_TO_KEEP,
        restore_dir: str | Path | None = None,
    ) -> None:
        """``restore_dir``: where ``restore`` looks when it is not ``directory`` (a non-chief
        worker writes its own copies, as TensorFlow asks of every worker, and restores the chief's)."""
        self.directory = Path(directory)
        self._restore_dir = Path(restore_dir) if restore_dir is not None else None
        self.removed_temps = remove_stale_temps(self.directory)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_step")
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_epoch")
        self._samples = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_samples")
        self._params = tf.Variable("{}", dtype=tf.string, trainable=False, name="ct_params")
        self._callbacks = tf.Variable("{}", dtype=tf.string, trainable=False, name="ct_callbacks")
        self._position = tf.Variable(EPOCH_START, dtype=tf.int64, trainable=False, name="ct_epoch_position")
        legacy = {
            "step": self._step,
            "epoch": self._epoch,
            "samples_seen": self._samples,
            "params": self._params,
            **objects,
        }
        self._later = {CALLBACKS_KEY: self._callbacks, POSITION_KEY: self._position}  # added since
        tracked = {**legacy, **self._later}
        self._checkpoint = tf.train.Checkpoint(**tracked)
        self._legacy = legacy
        self._snapshot = Snapshot(tracked)
        self._manager = tf.train.CheckpointManager(
            self._snapshot.writer, str(self.directory), max_to_keep=max_to_keep
        )
        self._lock = threading.Lock()
        self._completed: list[tuple[int, str]] = []  # appended by the writer thread
        self._failed: list[tuple[int, str]] = []  # (step, why): appended by the writer thread
        self._writer: threading.Thread | None = None
        self._saved_step: int | None = None  # the step whose files are on disk, latest

    @property
    def saved_step(self) -> int | None:
        """The latest step whose files are on disk (saved or restored here), after ``sync``."""
        return self._saved_step

    @property
    def latest_path(self) -> str | None:
        """The latest complete checkpoint (one being written is not it yet)."""
        return self._manager.latest_checkpoint  # type: ignore[no-any-return]

    def save(
        self,
        *,
        step: int,
        epoch: int,
        samples_seen: int,
        params: Mapping[str, Any],
        callbacks: Mapping[str, Any] | None = None,
        epoch_position: tuple[int, int] = EPOCH_START,
    ) -> str:
        """Snapshot now and write in the background; returns the path the files will have.
        ``callbacks``: the callbacks' states by key, JSON-encodable (``callback_states``);
        ``epoch_position``: the batches of the current epoch done and its batch size.

        Waits for the save in flight first. A second save of a step on disk is a no-op:
        rewriting ``ckpt-N`` in place could leave a torn latest checkpoint; one whose write
        failed is written again."""
        path = str(self.directory / f"ckpt-{step}")  # the manager's naming
        self.sync()
        if step == self._saved_step:
            return path
        self._step.assign(step)
        self._epoch.assign(epoch)
        self._samples.assign(samples_seen)
        self._params.assign(json.dumps(dict(params), sort_keys=True))
        self._callbacks.assign(json.dumps(dict(callbacks or {}), sort_keys=True))
        self._position.assign(epoch_position)
        self._snapshot.take()
        # Not a daemon: the interpreter waits for a write in flight before it exits.
        self._writer = threading.Thread(target=self._write, args=(step,), name="checkpoint-writer")
        self._writer.start()
        return path

    def _write(self, step: int) -> None:
        try:
            path = self._manager.save(checkpoint_number=step)
        except Exception as exc:  # a full disk: this save is lost, the previous one stays the latest
            logger.exception("checkpoint of step %d failed", step)
            with self._lock:
                self._failed.append((step, f"{type(exc).__name__}: {exc}"[:MISMATCH_DETAIL_CHARS]))
            return
        with self._lock:
            self._completed.append((step, str(path)))
            self._saved_step = step
        # Only now: the params it holds were pending until its files were complete.
        (self.directory / PENDING_PARAMS_FILE).unlink(missing_ok=True)
        logger.info("checkpoint saved at step %d: %s", step, path)

    def sync(self) -> None:
        """Wait for the save in flight (if any) to be complete on disk."""
        if self._writer is not None:
            self._writer.join()

    def take_completed(self) -> list[tuple[int, str]]:
        """``(step, path)`` of the saves completed since the last call, oldest first."""
        with self._lock:
            done, self._completed = self._completed, []
        return done

    def take_failed(self) -> list[tuple[int, str]]:
        """``(step, why)`` of the saves that failed since the last call, oldest first."""
        with self._lock:
            failed, self._failed = self._failed, []
        return failed

    def save_params(self, params: Mapping[str, Any]) -> None:
        """Keep ``params`` (acknowledged after the latest checkpoint, or before the first) for the
        next restore of it (``fresh_params`` when there is none)."""
        latest = self.latest_path
        record = {"checkpoint": Path(latest).name if latest else None, "params": dict(params)}
        write_json_atomic(self.directory / PENDING_PARAMS_FILE, record)

    def fresh_params(self) -> dict[str, Any]:
        """The params acknowledged before this run dir had any checkpoint."""
        return self._pending_params(self.directory, None)

    def restore(self, path: str | None = None) -> Restored | None:
        """Restore ``path`` (default: the latest); None when there is none.

        Every variable of the model must be in the checkpoint with its shape and every value in the
        checkpoint must find its variable: a misfit raises ``CheckpointMismatch``, never a partial
        restore that trains on."""
        self.sync()
        if path is not None:
            return self._restore_one(path)
        directory = self._restore_dir or self.directory
        state = tf.train.get_checkpoint_state(str(directory))
        candidates = list(state.all_model_checkpoint_paths) if state is not None else []
        for index, candidate in enumerate(reversed(candidates)):
            try:
                return self._restore_one(candidate)
            except CheckpointUnreadable as exc:
                if index == len(candidates) - 1:
                    raise
                logger.error("%s; trying the one before it", exc)
        return None

    def _restore_one(self, path: str) -> Restored:
        self._callbacks.assign("{}")  # what an older checkpoint (without them) means
        self._position.assign(EPOCH_START)
        checkpoint = self._reader(path)
        try:
            checkpoint.restore(path).assert_consumed()
        except (AssertionError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:MISMATCH_DETAIL_CHARS]
            raise CheckpointMismatch(f"checkpoint {path} does not match this model: {detail}") from exc
        except (tf.errors.OpError, OSError, IndexError) as exc:  # a torn or missing file
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:MISMATCH_DETAIL_CHARS]
            raise CheckpointUnreadable(f"checkpoint {path} cannot be read: {detail}") from exc
        params = json.loads(self._params.numpy().decode("utf-8"))
        restored = Restored(
            path=path,
            step=int(self._step.numpy()),
            epoch=int(self._epoch.numpy()),
            samples_seen=int(self._samples.numpy()),
            params={**params, **self._pending_params(Path(path).parent, Path(path).name)},
            callbacks=json.loads(self._callbacks.numpy().decode("utf-8")),
            epoch_position=(int(self._position[0].numpy()), int(self._position[1].numpy())),
        )
        self._saved_step = restored.step
        logger.info("restored step %d from %s", restored.step, path)
        return restored

    def _reader(self, path: str) -> tf.train.Checkpoint:
        """The checkpoint over what ``path`` holds: one written before a later variable was saved
        lacks it, and ``assert_consumed`` would refuse the whole restore for it."""
        held = {key: variable for key, variable in self._later.items() if _holds(path, key)}
        if len(held) == len(self._later):
            return self._checkpoint
        return tf.train.Checkpoint(**self._legacy, **held)

    def _pending_params(self, directory: Path, checkpoint: str | None) -> dict[str, Any]:
        """The pending params beside ``directory``'s checkpoints, if set on top of ``checkpoint``."""
        file = directory / PENDING_PARAMS_FILE
        try:
            record = json.loads(file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring %s: %s", file, exc)
            return {}
        if not isinstance(record, dict) or record.get("checkpoint") != checkpoint:
            return {}
        params = record.get("params")
        return dict(params) if isinstance(params, dict) else {}
