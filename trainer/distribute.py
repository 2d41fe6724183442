"""Training under ``tf.distribute``: the strategy, the distributed step and its K-step call.

``--strategy mirrored`` uses every local device (on a CPU-only machine ``--logical-devices N``
splits the CPU into N, so it can be tried here); ``--strategy multiworker`` is
``MultiWorkerMirroredStrategy`` over the workers in ``TF_CONFIG``. The Module API is unchanged:
the trainer builds the model and optimizer under ``strategy.scope()``, the loop iterates
``strategy.experimental_distribute_dataset`` (``batch_size`` is the global batch, as in Keras) and
``DistributedMultiStep`` is ``trainer.multistep.MultiStep`` with ``strategy.run`` inside.

The step (why this shape). Each replica computes its gradients and outputs; one batched
all-reduce gives every replica the same loss (a sum: Keras losses are already divided by the
number of replicas), metrics (a mean) and non-finite count, so all replicas take the same branch
of the finite check and the weights stay identical. The update runs in a cross-replica ``tf.cond``
calling ``call_for_each_replica`` (as Keras' ``LossScaleOptimizer`` does): a branch that reaches
the optimizer's ``merge_call`` from replica context is refused by ``MirroredStrategy``.

The gate across workers. Before every step each worker votes, in one scalar all-reduce, whether it
must end the call here (its gate closed, its ``k`` used up, its step limit reached); any vote ends
the call on every worker at the same step, so the workers always meet at the same collective. Only
the chief's gate is ever closed (its control server); the other workers learn of the command at
this vote, then get its content at the step boundary (``trainer.peers``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from trainer.errors import short_message
from trainer.multistep import MultiStep, StepGate
from trainer.steps import FINITE_OUTPUT

logger = logging.getLogger(__name__)

LOSS_OUTPUT = "loss"
PEER_PATTERN = re.compile(r"/job:(worker|chief)/replica:\d+/task:(\d+)")
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
    tf.errors.InternalError,
)


class PeerFailure(RuntimeError):
    """A collective with the other workers failed: a worker died, hung or lost its network."""


def split_cpu(devices: int) -> None:
    """N logical CPU devices; must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == devices:
        return  # a rebuild in the same process (a start after a failed setup)
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as exc:  # the runtime is initialised already: say so, never half-configure
        raise RuntimeError(f"--logical-devices {devices}: too late, {exc}") from None


def make_strategy(
    name: str, *, logical_devices: int | None = None, collective_timeout_s: float = 120.0
) -> tf.distribute.Strategy | None:
    """The strategy for ``--strategy`` (None for ``default``); first thing after the TF import."""
    if logical_devices is not None and logical_devices > 1:
        split_cpu(logical_devices)
    if name == "default":
        return None
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multiworker":
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    else:
        raise ValueError(f"unknown strategy {name!r}")
    logger.info("strategy %s: %d replicas in sync", name, strategy.num_replicas_in_sync)
    return strategy


def scope(strategy: tf.distribute.Strategy | None) -> contextlib.AbstractContextManager[Any]:
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> Any:
    """The dataset split across replicas; every worker reads it all and keeps its share (DATA
    sharding: in-memory arrays have no files to split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def peer_failure(exc: BaseException, *, own_index: int) -> PeerFailure:
    """Name the worker TensorFlow's collective error names (not this one), or say it timed out."""
    text = str(exc)
    peers = sorted({int(task) for _, task in PEER_PATTERN.findall(text)} - {own_index})
    who = ", ".join(f"worker {p}" for p in peers) or "a peer worker"
    if isinstance(exc, tf.errors.DeadlineExceededError) and not peers:
        who = "a peer worker (no answer within --collective-timeout)"
    logger.error("a collective with the other workers failed: %s", text)
    # TF's cause: from the line naming the peer if there is one, else its last lines (not the stack).
    lines = [line for line in text.splitlines() if line.strip()]
    naming = [
        i for i, line in enumerate(lines) if set(int(t) for _, t in PEER_PATTERN.findall(line)) & set(peers)
    ]
    cause = " ".join(" ".join(lines[naming[0] : naming[0] + 3]).split()) if naming else short_message(exc)
    return PeerFailure(f"{who} failed: {type(exc).__name__}: {cause[:300]}")


def distributed_train_step(
    module: Any, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy
) -> Any:
    """One update on a distributed batch, in cross-replica context; returns reduced outputs."""
    variables = module.trainable_variables

    def replica_grads(batch: Any) -> tuple[Any, dict[str, tf.Tensor], tf.Tensor]:
        with tf.GradientTape() as tape:
            outputs = {k: tf.cast(v, tf.float32) for k, v in dict(module.training_step(batch)).items()}
        gradients = tape.gradient(outputs[LOSS_OUTPUT], variables)
        present = [g for g in gradients if g is not None]
        ok = tf.math.is_finite(outputs[LOSS_OUTPUT]) & tf.math.is_finite(tf.linalg.global_norm(present))
        context = tf.distribute.get_replica_context()
        loss = outputs.pop(LOSS_OUTPUT)
        bad, loss, summed = context.all_reduce("SUM", (1.0 - tf.cast(ok, tf.float32), loss, outputs))
        means = {k: v / context.num_replicas_in_sync for k, v in summed.items()}
        return gradients, {LOSS_OUTPUT: loss, **means}, tf.equal(bad, 0.0)

    def apply(gradients: Any) -> None:
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        optimizer.apply_gradients(pairs)

    def step(batch: Any) -> dict[str, tf.Tensor]:
        gradients, outputs, finite = strategy.run(replica_grads, args=(batch,))
        first = strategy.experimental_local_results  # every replica holds the same reduced values

        def update() -> tf.Tensor:
            strategy.extended.call_for_each_replica(apply, args=(gradients,))
            return tf.constant(True)

        reduced = {k: first(v)[0] for k, v in outputs.items()}
        reduced[FINITE_OUTPUT] = tf.cond(first(finite)[0], update, lambda: tf.constant(False))
        return reduced

    return step


class DistributedMultiStep(MultiStep):
    """``MultiStep`` for a strategy: up to ``k`` steps per call, gate exact, and every worker's
    call ends at the same step (a vote before each step)."""

    def __init__(
        self,
        step_fn: Any,
        gate: StepGate,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        *,
        own_index: int = 0,
    ) -> None:
        self._strategy = strategy
        self._own_index = own_index
        self._multiworker = strategy.extended._in_multi_worker_mode()  # noqa: SLF001 (no public API)
        super().__init__(step_fn, gate, optimizer)

    def __call__(self, iterator: Any, k: int, limit: int) -> Any:
        try:
            with self._strategy.scope():
                rows = self._call(iterator, tf.constant(k, tf.int32), tf.constant(limit, tf.int64))
            return rows.numpy()
        except PEER_ERRORS as exc:
            if not self._multiworker:
                raise
            raise peer_failure(exc, own_index=self._own_index) from exc

    def _any(self, flag: tf.Tensor) -> tf.Tensor:
        """Whether any worker raised ``flag`` (one scalar all-reduce; one process needs none)."""
        if not self._multiworker:
            return flag
        vote = tf.cast(flag, tf.float32)
        # Captured, not passed: a tensor argument made outside the replicas has no destination.
        votes = self._strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(vote))
        )
        return self._strategy.experimental_local_results(votes)[0] > 0

    def _run(self, iterator: Any, k: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
        gate = self._gate
        rows = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=None)

        def claim_and_step() -> tuple[tf.Tensor, tf.Tensor]:
            optional = iterator.get_next_as_optional()
            claimed = optional.has_value()
            step = gate.count.read_value() + 1
            counted = gate.count.assign(tf.where(claimed, step, step - 1))
            noted = self.exhausted.assign(self.exhausted.read_value() | tf.logical_not(claimed))
            with tf.control_dependencies([counted, noted]):
                released = gate.busy.assign(False)  # the claim is counted: close() may read it now

            def run_step() -> tuple[tf.Tensor, tf.Tensor]:
                outputs = dict(self._step_fn(optional.get_value()))
                return self._row(outputs), tf.cast(outputs[FINITE_OUTPUT], tf.bool)

            with tf.control_dependencies([released]):
                row, finite = tf.cond(
                    claimed, run_step, lambda: (tf.zeros([len(self.names)]), tf.constant(True))
                )
            return tf.concat([row, [tf.cast(claimed, tf.float32)]], 0), finite

        def end_here() -> tuple[tf.Tensor, tf.Tensor]:
            with tf.control_dependencies([gate.busy.assign(False)]):
                return tf.zeros([len(self.names) + 1]), tf.constant(True)

        def body(i: tf.Tensor, going: tf.Tensor, rows: tf.TensorArray) -> Any:
            # As StepGate.claim: busy is set before closed is read and cleared once the step is counted.
            with tf.control_dependencies([gate.busy.assign(True)]):
                closed = gate.closed.read_value()
            at_limit = (gate.count.read_value() + 1 > limit) | (i >= k)
            end = self._any(closed | at_limit)
            # The claim branch is traced first, so the other one knows the row's width.
            row, finite = tf.cond(tf.logical_not(end), claim_and_step, end_here)
            claimed = row[-1] > 0
            rows = rows.write(i, row[:-1])
            return i + tf.cast(claimed, tf.int32), claimed & finite, rows

        count, _, rows = tf.while_loop(
            lambda i, going, rows: going, body, (tf.constant(0), tf.constant(True), rows)
        )
        return rows.stack()[:count]


def local_results(strategy: tf.distribute.Strategy | None, variable: Any) -> Iterator[Any]:
    """Each replica's copy of ``variable`` on this worker (the variable itself without a strategy)."""
    if strategy is None:
        yield variable
        return
    value = variable.value if isinstance(variable, keras.Variable) else variable
    yield from strategy.experimental_local_results(value)
