"""The host side of an epoch: compiled calls of several steps, then the per-step hooks replayed.

Per call (``trainer.multistep`` says what the graph does)::

    limit = min(end of run, end of epoch if its length is known, earliest Callback.next_boundary)
    rows = call(iterator, k, limit)           # one host read per call
    for each row (one step):                   # trainer.step is that step's number here
        on_step_end(logs)                      # loss, accuracy, ..., steps_per_s, eta_s
        trainer.after_step_hooks()             # a failure asked for raised; a rollback done
        if step % display_step == 0: on_report(logs + lr)
    on_call_end                                # one metrics.steps message for the call's steps
    on_boundary                                # control drains commands here, holds on pause
    trainer.after_boundary_hooks()             # failure raised; peers sync; service_requests()

The hooks' ``logs`` are plain floats from that one read; a stop, checkpoint or evaluation a
callback requests while the rows are replayed takes effect at the boundary (the steps in the rows
have run already).

An epoch begun before (by a run that was stopped, or by the process a restored checkpoint came
from: ``trainer.epoch_batches`` > 0) goes on where it was: same batch size, its trained batches
skipped, so its steps, its end and every later epoch are those of an uninterrupted run (skipping
reads those batches; it does not train them).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from trainer.lifecycle import ACTIVITY_TRACING
from trainer.multistep import LR_OUTPUT, MultiStep
from trainer.params import BATCH_SIZE, DISPLAY_STEP
from trainer.steps import FINITE_OUTPUT

if TYPE_CHECKING:
    from trainer.trainer import Trainer

RATE_SMOOTHING = 0.2  # per step


def run_epoch(trainer: Trainer) -> None:
    done = trainer.epoch_batches
    if done == 0:  # a new epoch; one under way keeps the batch size it began with
        trainer.batch_size = int(trainer.setting(BATCH_SIZE))
    trainer.module.epoch = trainer.epoch  # seeds this epoch's shuffle
    dataset = trainer.module.train_dataset(trainer.batch_size)
    call = trainer.compiled.train_call(dataset)
    cardinality = int(dataset.cardinality().numpy())  # < 1: not known (or infinite)
    trainer.steps_per_epoch = cardinality if cardinality > 0 else None
    trainer.next_epoch_step = epoch_end(trainer.step - done, cardinality)
    trainer.dispatch("on_epoch_start", {})
    call.exhausted.assign(False)
    # Skipped before distributing: every replica and worker skips the same global batches.
    iterator = trainer.compiled.iterate(dataset.skip(done) if done else dataset)
    ran_out = cardinality > 0 and done >= cardinality  # the data shrank since: the epoch is over
    while not trainer.done() and not ran_out:
        remaining = cardinality - trainer.epoch_batches if cardinality > 0 else None
        _, ran_out = run_call(trainer, call, iterator, remaining)
        ran_out = ran_out or (cardinality > 0 and trainer.epoch_batches >= cardinality)
    if trainer.epoch_batches == 0 and ran_out:
        raise ValueError(f"the training dataset yielded no batch (batch_size={trainer.batch_size})")
    if ran_out:
        trainer.epoch += 1  # ``epoch`` counts completed passes over the training data
        trainer.epoch_batches = 0
    trainer.dispatch("on_epoch_end", {})


def epoch_end(start_step: int, cardinality: int) -> int | None:
    """The first step of the next epoch, for an epoch that began after ``start_step``."""
    return start_step + cardinality + 1 if cardinality > 0 else None


def call_limit(trainer: Trainer, remaining: int | None) -> int:
    """The last step this call may run."""
    limits = [trainer.total_steps()]
    if remaining is not None:
        limits.append(trainer.step + remaining)
    for callback in trainer.callbacks:
        wanted = callback.next_boundary(trainer)
        if wanted is not None:
            limits.append(max(wanted, trainer.step + 1))
    return min(limits)


def run_call(trainer: Trainer, call: MultiStep, iterator: Any, remaining: int | None) -> tuple[int, bool]:
    """One compiled call and its hooks; returns (steps run, whether the data ran out)."""
    k = trainer.sizer.next_k()
    traced = call.tracing_count()
    started = time.perf_counter()
    try:
        if traced == 0:
            with trainer.doing(ACTIVITY_TRACING):
                rows = call(iterator, k, call_limit(trainer, remaining))
        else:
            rows = call(iterator, k, call_limit(trainer, remaining))
    except Exception:
        trainer.gate.abandon()
        _count_finished_steps(trainer)
        raise
    seconds = time.perf_counter() - started
    steps = len(rows)
    trainer.sizer.observe(steps, seconds, traced=call.tracing_count() != traced)
    ran_out = remaining is None and steps < k and call.ran_out()  # read only when it ended early
    replay(trainer, rows, call.names, seconds)
    trainer.dispatch("on_call_end", {})
    trainer.dispatch("on_boundary", {})
    trainer.after_boundary_hooks()
    return steps, ran_out


def _count_finished_steps(trainer: Trainer) -> None:
    """A step failed inside a call: the steps before it ran (their rows are lost with the call)."""
    finished = max(0, int(trainer.gate.count.numpy()) - 1 - trainer.step)  # the failed one was claimed
    trainer.step += finished
    trainer.epoch_batches += finished
    trainer.samples_seen += finished * trainer.batch_size


def replay(trainer: Trainer, rows: Any, names: list[str], seconds: float) -> None:
    if len(rows) == 0:
        return
    rate = len(rows) / max(seconds, 1e-9)
    for row in rows.tolist():
        logs = dict(zip(names, row, strict=True))
        trainer.last_step_finite = bool(logs.pop(FINITE_OUTPUT))
        lr = logs.pop(LR_OUTPUT)
        trainer.step += 1
        trainer.epoch_batches += 1
        trainer.samples_seen += trainer.batch_size
        trainer.steps_per_s = rate if trainer.steps_per_s == 0 else _smooth(trainer.steps_per_s, rate)
        logs["steps_per_s"] = trainer.steps_per_s
        logs["eta_s"] = (trainer.total_steps() - trainer.step) / trainer.steps_per_s
        after_step(trainer, logs, lr)


def _smooth(previous: float, rate: float) -> float:
    return (1 - RATE_SMOOTHING) * previous + RATE_SMOOTHING * rate


def after_step(trainer: Trainer, logs: dict[str, float], lr: float) -> None:
    trainer.dispatch("on_step_end", logs)
    trainer.after_step_hooks()
    if trainer.step % int(trainer.setting(DISPLAY_STEP)) == 0:
        trainer.dispatch("on_report", {**logs, "lr": lr if math.isfinite(lr) else trainer.learning_rate()})
