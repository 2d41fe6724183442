"""Quality of the built-in example: test accuracy after the seed's budget, and steps to 98% / 99%.

One run of ``trainer.Trainer`` with the built-in ``MnistCnn`` in a child process, capped at
``--quality-max-steps``; the whole test set evaluated every ``--quality-eval-every`` steps and at
``SEED_STEPS`` (the seed's 200,000 samples). Steps-to-target have the resolution of the evaluations.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import BATCH_SIZE, run_child
from fakes.processes import scratch_dir

SEED_STEPS = 200_000 // BATCH_SIZE  # 1562
TARGETS = (0.98, 0.99)


def train(data: str, max_steps: int, eval_every: int) -> dict[str, Any]:
    from trainer.callbacks.base import Callback
    from trainer.tasks.mnist_cnn import MnistCnn
    from trainer.trainer import Trainer

    curve: dict[int, float] = {}
    eval_s = [0.0]

    class EvaluateEvery(Callback):
        def on_step_end(self, trainer: Trainer, logs: Any) -> None:
            if trainer.step % eval_every == 0 or trainer.step == SEED_STEPS:
                began = time.perf_counter()
                trainer.test()
                eval_s[0] += time.perf_counter() - began

        def on_test_end(self, trainer: Trainer, logs: Any) -> None:
            curve[trainer.step] = float(logs["accuracy"])

    with scratch_dir("ctq-") as work:
        params = {"batch_size": BATCH_SIZE, "training_iters": BATCH_SIZE * max_steps}
        trainer = Trainer(
            MnistCnn(data=data), params=params, callbacks=[EvaluateEvery()], run_dir=work / "run"
        )
        began = time.perf_counter()
        trainer.fit()
        wall_s = time.perf_counter() - began
    return {
        "max_steps": max_steps, "eval_every": eval_every, "steps_run": trainer.step, "seed_steps": SEED_STEPS,
        "test_accuracy_at_seed_budget": curve.get(SEED_STEPS), "final_test_accuracy": curve.get(trainer.step),
        "steps_to": {f"{t:.2f}": next((s for s in sorted(curve) if curve[s] >= t), None) for t in TARGETS},
        "curve": {str(step): acc for step, acc in sorted(curve.items())}, "wall_s": wall_s,
        "train_samples_per_s": trainer.step * BATCH_SIZE / max(wall_s - eval_s[0], 1e-9),
    }  # fmt: skip


def run(data: str, max_steps: int, eval_every: int) -> dict[str, Any]:
    """The run in its own process (TensorFlow state stays out of the caller)."""
    return run_child("quality:train", data=data, max_steps=max_steps, eval_every=eval_every)
