"""Where a trainer step's time goes, in one process: the pieces that could make it slower than fit.

    python -m bench profile [--data PATH] [--profile-steps 40] [--profile-rounds 5]

Alternating blocks of ``--steps`` steps (``--rounds`` rounds, so drift hits all alike), on one
fixed batch of 128 so the input pipeline is out of the picture:

- ``trainer_step``: ``trainer.steps.compile_train_step`` (finite check: ``global_norm`` of the
  gradients + ``tf.cond`` around the update) with the trainer's host read of every output;
- ``plain_step``: the same loss and Adam update in a ``tf.function`` without the finite check,
  one host read of the loss (what ``fit``'s step does);

then, alone: the input pipeline (``trainer.data.train_dataset``) iterated without training, and the
number of traces of the trainer's step after a ``Trainer.fit`` of 30 steps (1 = no retracing).
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

    def make_module() -> Any:
        module = MnistCnn(data=data)
        module.setup()
        return module

    module, plain = make_module(), make_module()
    optimizer, plain_optimizer = keras.optimizers.Adam(0.001), keras.optimizers.Adam(0.001)
    optimizer.build(module.trainable_variables)
    dataset = module.train_dataset(BATCH_SIZE)
    batch = next(iter(dataset))
    trainer_step = compile_train_step(module, optimizer, dataset.element_spec)

    @tf.function  # type: ignore[untyped-decorator]
    def plain_step(batch: Any) -> Any:
        with tf.GradientTape() as tape:
            outputs = plain.training_step(batch)
        variables = plain.trainable_variables
        gradients = tape.gradient(outputs["loss"], variables)
        plain_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return outputs

    return batch, trainer_step, plain_step


def _block(step: Any, batch: Any, steps: int, read_all: bool) -> float:
    began = time.perf_counter()
    for _ in range(steps):
        outputs = step(batch)
        if read_all:
            {name: float(value) for name, value in outputs.items()}  # noqa: B018 (the trainer's read)
        else:
            float(outputs["loss"])
    return (time.perf_counter() - began) / steps


def _pipeline_rate(data: str, batches: int) -> float:
    from trainer.data import load_mnist, train_dataset

    dataset = train_dataset(load_mnist(data).train, BATCH_SIZE)
    iterator = iter(dataset)
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
    ratios = [p / t for t, p in zip(times["trainer_step"], times["plain_step"], strict=True)]
    return {
        "ms_per_step": {k: summary([t * 1e3 for t in v]) for k, v in times.items()},
        "trainer_speed_vs_plain": summary(ratios),
        "pipeline_samples_per_s": _pipeline_rate(data, 200),
        "train_step_traces_after_fit": _tracing_count(data),
    }
