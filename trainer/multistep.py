"""Several training steps per compiled call, with the controls still exact to the step.

Why: a step of a small model (or of any model on a GPU) takes less time than the host's work
around it: one ``tf.function`` call, one read back of its outputs and a round of callbacks. Like
Keras' ``steps_per_execution``, ``MultiStep`` runs up to ``k`` steps inside one call: a
``tf.while_loop`` over the dataset iterator. Each step's outputs (and the learning rate it used)
become one row of a float32 matrix, read back once per call; the trainer then replays the
per-step hooks row by row, so the feed, progress, plots and JSONL still get one point per step
and ``display_step`` reports land on their steps. The skipped-update flag stays in the graph: a
non-finite step ends the call at once, so the host's policy acts before another step runs.

The call also ends early when the gate is closed, at the step limit the host passes (the end of
the run, the end of the epoch when its length is known, a step a callback asked for with
``Callback.next_boundary``) and when the data runs out.

How the controls stay exact (the choice). ``StepGate`` holds two variables on the host CPU, the
count of claimed steps and a ``closed`` flag, behind one ``tf.CriticalSection``. Before every step
the graph, inside the section, reads the flag and, if open, claims the next step (count += 1). A
control handler (stop, pause, set_params, checkpoint, evaluate: ``Controller`` calls
``StepGate.close``) sets the flag and reads the count inside the same section, so no step can be
claimed between the two: the count it reads, ``r``, is the last step that runs before the loop is
back on the host, and a change applies at ``r + 1`` exactly. The reply says so at once, without
waiting, and the host applies the change (assigns the learning rate, sets ``should_stop``, ...)
before step ``r + 1`` runs. ``Controller.take_commands`` reopens the gate under the controller's
lock in the same drain, so a command is either drained there or closes the next call.

Two alternatives were weighed. "The graph applies a pending change at a target step the host
chose" needs a target the graph cannot have passed; without mutual exclusion the host can only
bound the graph's position to within a step (a race either way), and with it, ending the call is
simpler and also covers stop, pause, checkpoint and evaluate. "The reply waits for the graph's
acknowledgement" makes the reply wait for the step in flight (tens of milliseconds for the seed
CNN on a CPU, against the 20 ms p99 round trip) or, between calls, for an evaluation. A closed
gate costs one extra call; the section costs a few microseconds per step.

One race remains, documented rather than closed: a dataset of unknown length claims a step,
finds no batch and gives the claim back; a handler closing the gate in that instant is told one
step too many. A known length (the usual ``from_tensor_slices`` pipeline) never reaches the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from trainer.config import JIT_CHOICES
from trainer.steps import FINITE_OUTPUT, StepFn

logger = logging.getLogger(__name__)

LR_OUTPUT = "lr"  # the learning rate each step ran with (a row column, not a metric)
MAX_STEPS_PER_CALL = 64
TARGET_CALL_S = 0.05  # auto K: calls about this long keep the feed lively and the host overhead small
STEP_TIME_SMOOTHING = 0.3


def resolve_jit(choice: str) -> bool:
    """``auto`` means what Keras means: XLA on when a GPU is visible."""
    if choice not in JIT_CHOICES:
        raise ValueError(f"jit_compile must be one of {', '.join(JIT_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return choice == "on"


class StepGate:
    """The claimed-step count and the closed flag the graph reads before every step."""

    def __init__(self) -> None:
        with tf.device("/CPU:0"):
            self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="gate_count")
            self.closed = tf.Variable(False, trainable=False, name="gate_closed")
        self._section = tf.CriticalSection(name="step_gate")
        self._close = tf.function(lambda: self._locked(self._close_locked))
        self._close.get_concrete_function()  # traced here, not in the first handler that closes

    def close(self) -> int:
        """Any thread: no step is claimed after this; returns the last step that was."""
        return int(self._close().numpy())

    def reopen(self) -> None:
        """The loop, between calls, under the controller's lock (``Controller.take_commands``)."""
        self.closed.assign(False)

    def sync(self, step: int) -> None:
        """The loop, between calls: the count follows the trainer's step (after a restore)."""
        self.count.assign(step)

    def claim(self, limit: tf.Tensor) -> tf.Tensor:
        """In the graph: the step claimed, or -1 when the gate is closed or ``limit`` reached."""
        return self._locked(lambda: self._claim_locked(limit))

    def give_back(self) -> tf.Tensor:
        """In the graph: undo a claim whose step found no batch."""
        return self._locked(lambda: self.count.assign_sub(1))

    def _locked(self, fn: Callable[[], Any]) -> Any:
        return self._section.execute(fn, exclusive_resource_access=False)

    def _close_locked(self) -> tf.Tensor:
        with tf.control_dependencies([self.closed.assign(True)]):
            return self.count.read_value()

    def _claim_locked(self, limit: tf.Tensor) -> tf.Tensor:
        step = self.count.read_value() + 1
        go = tf.logical_not(self.closed.read_value()) & (step <= limit)

        def claim() -> tf.Tensor:
            with tf.control_dependencies([self.count.assign(step)]):
                return tf.identity(step)

        return tf.cond(go, claim, lambda: tf.constant(-1, tf.int64))


class MultiStep:
    """The compiled K-step call; ``names`` are the row's columns (known once traced)."""

    def __init__(self, step_fn: StepFn, gate: StepGate, optimizer: keras.optimizers.Optimizer) -> None:
        self.names: list[str] = []
        self._step_fn = step_fn
        self._gate = gate
        self._optimizer = optimizer
        with tf.device("/CPU:0"):
            self.exhausted = tf.Variable(False, trainable=False, name="data_exhausted")
        self._call = tf.function(self._run, reduce_retracing=True)

    def tracing_count(self) -> int:
        return int(self._call.experimental_get_tracing_count())

    def ran_out(self) -> bool:
        """Whether the iterator was found empty (read only when a call ended early)."""
        return bool(self.exhausted.numpy())

    def __call__(self, iterator: Any, k: int, limit: int) -> Any:
        """Up to ``k`` steps, none past step ``limit``; the rows as one numpy array (one host read)."""
        return self._call(iterator, tf.constant(k, tf.int32), tf.constant(limit, tf.int64)).numpy()

    def _row(self, outputs: dict[str, tf.Tensor]) -> tf.Tensor:
        columns = {**outputs, LR_OUTPUT: self._optimizer.learning_rate}
        self.names = list(columns)
        return tf.stack([tf.reshape(tf.cast(v, tf.float32), []) for v in columns.values()])

    def _one(self, iterator: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One step (the step already claimed): ran, the row, whether the update was finite."""
        optional = iterator.get_next_as_optional()

        def run() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            outputs = dict(self._step_fn(optional.get_value()))
            return tf.constant(True), self._row(outputs), tf.cast(outputs[FINITE_OUTPUT], tf.bool)

        def ran_out() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.control_dependencies([self._gate.give_back(), self.exhausted.assign(True)]):
                return tf.constant(False), tf.zeros([len(self.names)]), tf.constant(True)

        ran, row, finite = tf.cond(optional.has_value(), run, ran_out)  # traces run first: names known
        return ran, row, finite

    def _run(self, iterator: Any, k: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
        rows = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=None)

        def body(i: tf.Tensor, going: tf.Tensor, rows: tf.TensorArray) -> Any:
            claimed = self._gate.claim(limit) >= 0
            ran, row, finite = tf.cond(
                claimed,
                lambda: self._one(iterator),
                lambda: (tf.constant(False), tf.zeros([len(self.names)]), tf.constant(True)),
            )
            rows = rows.write(i, row)
            return i + tf.cast(ran, tf.int32), ran & finite, rows

        count, _, rows = tf.while_loop(
            lambda i, going, rows: going & (i < k), body, (tf.constant(0), tf.constant(True), rows)
        )
        return rows.stack()[:count]


class CallSizer:
    """K for the next call: fixed, or (auto) calls of about ``TARGET_CALL_S``."""

    def __init__(self, steps_per_execution: int | None) -> None:
        if steps_per_execution is not None and steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution!r}")
        self.fixed = steps_per_execution
        self.step_s: float | None = None

    def next_k(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.step_s is None:
            return 1  # until a call that did not trace says how long a step takes
        return max(1, min(MAX_STEPS_PER_CALL, int(TARGET_CALL_S / max(self.step_s, 1e-9))))

    def observe(self, steps: int, seconds: float, *, traced: bool) -> None:
        if steps == 0 or traced:
            return
        per_step = seconds / steps
        smoothed = self.step_s
        self.step_s = per_step if smoothed is None else smoothed + STEP_TIME_SMOOTHING * (per_step - smoothed)
