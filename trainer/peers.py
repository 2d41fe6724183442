"""Multi-worker control: the chief's decisions reach every worker at the same step boundary.

Only the chief has a control server. At every step boundary, after every callback's
``on_boundary`` (``ControlBridge`` applied the commands the chief drained) and before the requests
are served, the trainer calls ``PeerSync.sync`` (its ``peers``: ``Trainer.after_boundary_hooks``),
which runs one all-reduce of a small float64 vector: the chief puts in its decisions (checkpoint
now, evaluate now, paused, its step and the value of every live parameter), the other workers
zeros; every worker adds its stop vote (a stop any of its callbacks requested, a SIGTERM it
received). What comes back is the chief's decision, which every worker then takes as its own
requests (``Trainer.replace_requests``): the same learning rate from the same step, the same
checkpoint and evaluation, the same stop. Inside a compiled call the workers already ended at the
same step (``trainer.distribute``'s vote), so this exchange is the next collective for all of them.

While the chief is paused it repeats the exchange at every poll of its hold (``hold_tick``, from
``Trainer.hold``) with "paused" set: the other workers hold in a loop of exchanges, serving the
checkpoints and evaluations asked for meanwhile, and no collective waits longer than a poll, so
the collective timeout that detects a dead peer never fires for a long pause. No side channel
exists: a worker learns everything from the collective.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import tensorflow as tf

from protocol import ParamSpec
from trainer.cluster import WorkerRole
from trainer.distribute import PEER_ERRORS, local_results, peer_failure

if TYPE_CHECKING:
    from trainer.trainer import Trainer

logger = logging.getLogger(__name__)

STR_BYTES = 256  # a text parameter travels as up to this many UTF-8 bytes
CHECKPOINT, EVALUATE, PAUSED, STEP = range(4)
HEAD = 4


class Peers(Protocol):
    """The other workers of a multi-worker job (``trainer.peers.PeerSync``), called by the loop at
    fixed points (not a callback: it must come after every callback's requests of a boundary)."""

    def sync(self, trainer: Trainer) -> None:
        """After the ``on_train_start`` / ``on_boundary`` hooks, before the requests are served."""

    def hold_tick(self, trainer: Trainer) -> None:
        """At every poll while a callback holds this worker at a boundary (``Trainer.hold``)."""

    def finished(self, trainer: Trainer) -> None:
        """After ``on_train_end``."""


class StepMismatch(RuntimeError):
    """A worker starts at another step than the chief (it restored other checkpoints)."""


def _width(spec: ParamSpec) -> int:
    return STR_BYTES + 1 if spec.type == "str" else 1


def encode(specs: tuple[ParamSpec, ...], params: dict[str, Any], head: list[float]) -> np.ndarray:
    """The decision vector: the head, then every param's value (text as its length and bytes)."""
    parts = [np.asarray(head, np.float64)]
    for spec in specs:
        value = params.get(spec.name)
        if spec.type == "str":
            raw = str(value or "").encode("utf-8")[:STR_BYTES]
            slot = np.zeros(STR_BYTES + 1)
            slot[0] = len(raw)
            slot[1 : 1 + len(raw)] = np.frombuffer(raw, np.uint8)
            parts.append(slot)
        else:
            parts.append(np.asarray([float(value) if value is not None else 0.0]))
    return np.concatenate(parts)


def decode(specs: tuple[ParamSpec, ...], vector: np.ndarray) -> dict[str, Any]:
    values: dict[str, Any] = {}
    at = HEAD
    for spec in specs:
        if spec.type == "str":
            length = int(vector[at])
            values[spec.name] = bytes(vector[at + 1 : at + 1 + length].astype(np.uint8)).decode(
                "utf-8", "replace"
            )
        elif spec.type == "int":
            values[spec.name] = int(round(vector[at]))
        elif spec.type == "bool":
            values[spec.name] = bool(vector[at])
        else:
            values[spec.name] = float(vector[at])
        at += _width(spec)
    return values


def weights_digest(trainer: Trainer) -> str:
    """SHA-256 of this worker's trainable weights (its first replica's copy)."""
    digest = hashlib.sha256()
    for variable in trainer.module.trainable_variables:
        first = next(iter(local_results(trainer.strategy, variable)))
        digest.update(np.ascontiguousarray(first.numpy()).tobytes())
    return digest.hexdigest()


class PeerSync:
    """Every worker's ``Peers`` in a multi-worker job (``Trainer(peers=...)``)."""

    def __init__(self, strategy: tf.distribute.Strategy, role: WorkerRole) -> None:
        self._strategy = strategy
        self._role = role
        self._reduce = tf.function(self._all_reduce)

    def _all_reduce(self, decision: tf.Tensor, vote: tf.Tensor) -> Any:
        def replica() -> tf.Tensor:
            context = tf.distribute.get_replica_context()
            first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.float64)
            # Only replica 0 (the chief's first device) counts its decision; votes need only be > 0.
            return context.all_reduce("SUM", tf.concat([decision * first, [vote]], 0))

        with self._strategy.scope():  # captured, not passed (see DistributedMultiStep._any)
            return self._strategy.run(replica)

    def exchange(self, trainer: Trainer, *, paused: bool) -> np.ndarray:
        """The chief's decision vector (the last entry: the sum of the stop votes)."""
        asked = trainer.pending_requests()
        if self._role.is_chief:
            head = [asked.checkpoint, asked.evaluate, paused, trainer.step]
            decision = encode(trainer.specs, trainer.params, [float(x) for x in head])
        else:
            width = HEAD + sum(_width(s) for s in trainer.specs)
            decision = np.zeros(width)
        vote = tf.constant(float(asked.stop), tf.float64)
        try:
            result = self._reduce(tf.constant(decision, tf.float64), vote)
        except PEER_ERRORS as exc:
            raise peer_failure(exc, own_index=self._role.index) from exc
        return np.asarray(local_results(self._strategy, result).__next__().numpy())

    def _apply(self, trainer: Trainer, vector: np.ndarray) -> bool:
        """Take the chief's decision as this worker's own; returns whether the chief holds."""
        chief_step = int(vector[STEP])
        if chief_step != trainer.step:
            raise StepMismatch(
                f"{self._role.name} is at step {trainer.step}, the chief at step {chief_step}: every "
                "worker must restore the chief's checkpoints (share the run directory)"
            )
        requests = dataclasses.replace(trainer.pending_requests(), stop=bool(vector[-1] > 0))
        if self._role.is_chief:
            trainer.replace_requests(requests)
            return False
        changed = {k: v for k, v in decode(trainer.specs, vector).items() if trainer.params.get(k) != v}
        if changed:
            trainer.set_params(changed, at_step=trainer.step + 1)
        chief = dataclasses.replace(
            requests, checkpoint=bool(vector[CHECKPOINT]), evaluate=bool(vector[EVALUATE])
        )
        trainer.replace_requests(chief)
        return bool(vector[PAUSED])

    def sync(self, trainer: Trainer) -> None:
        holding = self._apply(trainer, self.exchange(trainer, paused=False))
        while holding:  # a non-chief worker while the chief is paused
            trainer.service_requests()
            holding = self._apply(trainer, self.exchange(trainer, paused=False))

    def hold_tick(self, trainer: Trainer) -> None:
        """The chief, at every poll while paused; a non-chief worker holds in ``sync`` instead."""
        if self._role.is_chief:
            self._apply(trainer, self.exchange(trainer, paused=True))

    def finished(self, trainer: Trainer) -> None:
        # The same on every worker when the run was in sync; tests and users compare these lines.
        logger.info(
            "%s: final weights digest %s at step %d", self._role.name, weights_digest(trainer), trainer.step
        )
