"""Where a trainer step's time goes, in one child process: what could make it slower than fit's.

On one fixed batch of 128 (the input pipeline out of the picture), ``--profile-rounds`` alternating
blocks of ``--profile-steps`` steps: the trainer's compiled step (finite check, every output read
on the host) and a plain ``tf.function`` step (one read, as ``fit``'s). Then, alone: the input
pipeline without training, and the traces of the trainer's step after a 30-step fit (1 = none).
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import BATCH_SIZE, run_child, scratch_dir, summary


def _steps(data: str) -> tuple[Any, Any, Any]:
    import keras
    import tensorflow as tf

    from trainer.steps import compile_train_step
    from trainer.tasks.mnist_cnn import MnistCnn

    module, plain = MnistCnn(data=data), MnistCnn(data=data)
    module.setup()
    plain.setup()
    optimizer, plain_optimizer = keras.optimizers.Adam(0.001), keras.optimizers.Adam(0.001)
    optimizer.build(module.trainable_variables)
    dataset = module.train_dataset(BATCH_SIZE)

    @tf.function  # type: ignore[untyped-decorator]
    def plain_step(batch: Any) -> Any:
        with tf.GradientTape() as tape:
            outputs = plain.training_step(batch)
        gradients = tape.gradient(outputs["loss"], plain.trainable_variables)
        plain_optimizer.apply_gradients(zip(gradients, plain.trainable_variables, strict=True))
        return outputs

    return next(iter(dataset)), compile_train_step(module, optimizer, dataset.element_spec), plain_step


def _block(step: Any, batch: Any, steps: int, read_all: bool) -> float:
    began = time.perf_counter()
    for _ in range(steps):
        outputs = step(batch)
        for name in outputs if read_all else ["loss"]:  # the trainer reads every output
            float(outputs[name])
    return (time.perf_counter() - began) / steps


def _pipeline_rate(data: str, batches: int) -> float:
    from trainer.data import load_mnist, train_dataset

    iterator = iter(train_dataset(load_mnist(data).train, BATCH_SIZE))
    next(iterator)
    began = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH_SIZE / (time.perf_counter() - began)


def _tracing_count(data: str) -> int:
    from trainer.tasks.mnist_cnn import MnistCnn
    from trainer.trainer import Trainer

    with scratch_dir("ctp-") as work:
        trainer = Trainer(MnistCnn(data=data), run_dir=work / "run", max_steps=30)
        trainer.test = lambda: {}  # type: ignore[method-assign]
        trainer.fit()
        return int(trainer._compiled["train"].experimental_get_tracing_count())  # type: ignore[attr-defined]


def run(data: str, steps: int, rounds: int) -> dict[str, Any]:
    """The profile in its own process (TensorFlow state stays out of the caller)."""
    return run_child("step_profile:profile", data=data, steps=steps, rounds=rounds)


def profile(data: str, steps: int, rounds: int) -> dict[str, Any]:
    batch, trainer_step, plain_step = _steps(data)
    _block(trainer_step, batch, 3, True)  # tracing
    _block(plain_step, batch, 3, False)
    times: dict[str, list[float]] = {"trainer_step": [], "plain_step": []}
    for _ in range(rounds):
        times["trainer_step"].append(_block(trainer_step, batch, steps, True))
        times["plain_step"].append(_block(plain_step, batch, steps, False))
    return {
        "ms_per_step": {k: summary([t * 1e3 for t in v]) for k, v in times.items()},
        "trainer_speed_vs_plain": summary([p / t for t, p in zip(*times.values(), strict=True)]),
        "pipeline_samples_per_s": _pipeline_rate(data, 200),
        "train_step_traces_after_fit": _tracing_count(data),
    }
