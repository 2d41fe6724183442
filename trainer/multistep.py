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

How the controls stay exact (the choice). ``StepGate`` holds three variables on the host CPU: the
count of claimed steps, a ``closed`` flag and the graph's ``busy`` flag. Before every step the
graph sets busy, reads closed and, if open, fetches a batch and counts the step, then clears busy.
A control handler (stop, pause, set_params, checkpoint, evaluate: ``Controller`` calls
``StepGate.close``) sets closed, waits until busy is clear (a claim takes microseconds) and reads
the count (Dekker's handshake: each variable op is atomic and these ones are ordered). A claim
that read "open" is then in the count it reads, and every later claim reads "closed", so the count
``r`` is the last step that runs before the loop is back on the host, and a change applies at
``r + 1`` exactly. The reply says so at once, and the host applies the change (assigns the
learning rate, asks the loop to stop, ...) before step ``r + 1`` runs. ``Controller.take_commands``
reopens the gate under the controller's lock in the same drain, so a command is either drained
there or closes the next call. The handler's side is three eager variable ops, which run on its
own thread: a first version used a ``tf.CriticalSection``, whose ``close`` was a graph call that
queued behind the running step (set_params p50 5 ms, p99 41 ms under load, against 0.8 / 6).

Two alternatives were weighed. "The graph applies a pending change at a target step the host
chose" needs a target the graph cannot have passed, which takes this same handshake, and then
ending the call is simpler and also covers stop, pause, checkpoint and evaluate. "The reply waits
for the graph's acknowledgement" makes the reply wait for the step in flight (tens of
milliseconds for the seed CNN on a CPU, against the 20 ms p99 round trip) or, between calls, for
an evaluation. A closed gate costs one extra call; the handshake a few microseconds per step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import tensorflow as tf

from trainer.config import JIT_CHOICES
from trainer.steps import FINITE_OUTPUT, StepFn

logger = logging.getLogger(__name__)

LR_OUTPUT = "lr"  # the learning rate each step ran with (a row column, not a metric)
MAX_STEPS_PER_CALL = 256
TARGET_CALL_S = 0.05  # auto K: calls about this long keep the feed lively and the host overhead small
STEP_TIME_SMOOTHING = 0.3
CLOSE_WAIT_S = 5.0


def resolve_jit(choice: str) -> bool:
    """``auto`` means what Keras means: XLA on when a GPU is visible."""
    if choice not in JIT_CHOICES:
        raise ValueError(f"jit_compile must be one of {', '.join(JIT_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return choice == "on"


def _read(variable: tf.Variable) -> Any:
    return tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=variable.dtype).numpy()


class StepGate:
    """The claimed-step count, the closed flag and the graph's busy flag, on the host CPU."""

    def __init__(self) -> None:
        with tf.device("/CPU:0"):
            self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="gate_count")
            self.closed = tf.Variable(False, trainable=False, name="gate_closed")
            self.busy = tf.Variable(False, trainable=False, name="gate_busy")
            self._true, self._false = tf.constant(True), tf.constant(False)

    def close(self) -> int:
        """Any thread: no step is claimed after this; returns the last step that was.

        Eager variable ops run on the calling thread, so this never queues behind a running step;
        raw ops, because the ``tf.Variable`` methods cost three times as much (~30 us each here).
        """
        tf.raw_ops.AssignVariableOp(resource=self.closed.handle, value=self._true)
        deadline = time.monotonic() + CLOSE_WAIT_S
        while bool(_read(self.busy)):  # the graph is inside a claim: a few microseconds
            if time.monotonic() > deadline:  # a claim that failed and left busy set (a bug)
                logger.error("step gate: busy for %.0f s; the step in the reply may be off", CLOSE_WAIT_S)
                break
        return int(_read(self.count))

    def reopen(self) -> None:
        """The loop, between calls, under the controller's lock (``Controller.take_commands``);
        a raw op, as in ``close``: this runs at every boundary."""
        tf.raw_ops.AssignVariableOp(resource=self.closed.handle, value=self._false)

    def sync(self, step: int) -> None:
        """The loop, between calls: the count follows the trainer's step (after a restore)."""
        self.count.assign(step)

    def abandon(self) -> None:
        """The loop, after a call that raised: a claim cut short must not leave busy set."""
        self.busy.assign(False)

    def claim(self, iterator: Any, limit: tf.Tensor, exhausted: tf.Variable) -> tuple[tf.Tensor, Any]:
        """In the graph: whether the next step (at most ``limit``) was claimed, and its batch.

        Set busy, then read closed; fetch a batch only if open; count the step only if there was
        one; clear busy. ``close`` sets closed, then waits for busy to clear before reading the
        count, so a claim that read "open" is counted in what it reads and no later claim succeeds.
        """
        with tf.control_dependencies([self.busy.assign(True)]):
            closed = self.closed.read_value()
        step = self.count.read_value() + 1
        go = tf.logical_not(closed) & (step <= limit)
        optional = tf.cond(
            go,
            iterator.get_next_as_optional,
            lambda: tf.experimental.Optional.empty(iterator.element_spec),
        )
        claimed = optional.has_value()
        ran_out = go & tf.logical_not(claimed)
        counted = self.count.assign(tf.where(claimed, step, step - 1))
        noted = exhausted.assign(exhausted.read_value() | ran_out)
        with tf.control_dependencies([counted, noted]):
            released = self.busy.assign(False)
        with tf.control_dependencies([released]):
            return tf.identity(claimed), optional


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

    def _run(self, iterator: Any, k: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
        rows = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=None)

        def body(i: tf.Tensor, going: tf.Tensor, rows: tf.TensorArray) -> Any:
            claimed, optional = self._gate.claim(iterator, limit, self.exhausted)

            def step() -> tuple[tf.Tensor, tf.Tensor]:
                outputs = dict(self._step_fn(optional.get_value()))
                return self._row(outputs), tf.cast(outputs[FINITE_OUTPUT], tf.bool)

            # The step branch is traced first, so the other one knows the row's width.
            row, finite = tf.cond(claimed, step, lambda: (tf.zeros([len(self.names)]), tf.constant(True)))
            rows = rows.write(i, row)
            return i + tf.cast(claimed, tf.int32), claimed & finite, rows

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
