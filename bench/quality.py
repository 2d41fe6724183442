"""Quality of the built-in example: test accuracy after the seed's budget, and steps to 98% / 99%.

    python -m bench quality [--data PATH] [--quality-max-steps 1872] [--quality-eval-every 100]

One run of ``trainer.Trainer`` with the built-in ``MnistCnn`` (the seed's CNN, Adam 0.001, batch
128, dropout 0.25) in a child process. The whole test set (10,000 images) is evaluated every
``--eval-every`` steps and at step ``SEED_STEPS`` (the seed's 200,000 samples = 1562 full
batches of 128). The run is capped at ``--max-steps`` (default 4 epochs: 4 x 468 steps); a target
not reached by then is reported as such. Steps-to-target have the resolution of ``--eval-every``.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import BATCH_SIZE, run_child, scratch_dir

SEED_SAMPLES = 200_000
SEED_STEPS = SEED_SAMPLES // BATCH_SIZE  # 1562
STEPS_PER_EPOCH = 60_000 // BATCH_SIZE  # 468 full batches
DEFAULT_MAX_STEPS = 4 * STEPS_PER_EPOCH
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
        trainer = Trainer(
            MnistCnn(data=data),
            params={"batch_size": BATCH_SIZE, "training_iters": BATCH_SIZE * max_steps},
            callbacks=[EvaluateEvery()],
            run_dir=work / "run",
        )
        began = time.perf_counter()
        trainer.fit()
        wall_s = time.perf_counter() - began
    reached = {f"{t:.2f}": next((s for s in sorted(curve) if curve[s] >= t), None) for t in TARGETS}
    return {
        "max_steps": max_steps,
        "eval_every": eval_every,
        "steps_run": trainer.step,
        "test_accuracy_at_seed_budget": curve.get(SEED_STEPS),
        "final_test_accuracy": curve.get(trainer.step),
        "steps_to": reached,
        "curve": {str(step): acc for step, acc in sorted(curve.items())},
        "wall_s": wall_s,
        "train_samples_per_s": trainer.step * BATCH_SIZE / max(wall_s - eval_s[0], 1e-9),
    }


def run(data: str, max_steps: int, eval_every: int) -> dict[str, Any]:
    """The run in its own process (TensorFlow state stays out of the caller)."""
    result = run_child("quality:train", data=data, max_steps=max_steps, eval_every=eval_every)
    result["seed_steps"] = SEED_STEPS
    return result
