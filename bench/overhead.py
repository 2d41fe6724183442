"""Throughput where the framework is the cost: a model so small that host work per step decides.

A 784-32-10 MLP, random data (fixed seed), batch 64, Adam, the way a GPU makes any model
overhead-bound. Variants, interleaved per repetition, each its own process: ``fit_spe1`` /
``fit_spe32`` (``keras.Model.fit`` at 1 and 32 steps per execution), ``trainer`` (``trainer.Trainer``
with ``python -m trainer``'s callbacks, the control plane live and read, steps per call auto) and
``trainer_spe1`` (the same at one step per call). Clocks in ``bench.tf_roles``; ratios paired.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.harness import compare, interleaved, run_child
from bench.tf_roles import rate, time_fit, train_inproc
from fakes.processes import scratch_dir

VARIANTS = {  # name: what it is
    "fit_spe1": "`keras.Model.fit`, `steps_per_execution=1`",
    "fit_spe32": "`keras.Model.fit`, `steps_per_execution=32`",
    "trainer": "`trainer.Trainer`, steps per call auto, control plane live + 2 subscribers",
    "trainer_spe1": "the same at 1 step per call",
}
RATIOS = {  # name: (variant, against, what it compares, the target for its median or None)
    "trainer_vs_fit_spe32": ("trainer", "fit_spe32", "trainer / fit(spe=32)", "1.0"),
    "trainer_vs_fit_spe1": ("trainer", "fit_spe1", "trainer / fit(spe=1)", "2.0"),
    "trainer_spe1_vs_fit_spe1": ("trainer_spe1", "fit_spe1", "trainer at 1 step per call / fit(spe=1)", None),
    "fit_spe32_vs_fit_spe1": ("fit_spe32", "fit_spe1", "fit(spe=32) / fit(spe=1)", None),
}
BATCH = 64
BATCHES_PER_EPOCH = 512  # a multiple of every K used, so no call is cut short by an epoch's end


def _data() -> tuple[Any, Any]:
    import numpy as np

    rng, samples = np.random.default_rng(0), BATCH * BATCHES_PER_EPOCH
    return rng.random((samples, 784), dtype=np.float32), rng.integers(0, 10, size=(samples,), dtype=np.int64)


def _model(spe: int) -> Any:
    """The MLP, compiled at ``spe`` steps per execution."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.001), metrics=["accuracy"], steps_per_execution=spe,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    return model


def _dataset(arrays: tuple[Any, Any], batch_size: int) -> Any:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays).shuffle(BATCH * 16, seed=0)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def fit(spe: int, warmup: int, steps: int) -> dict[str, Any]:
    model = _model(spe)
    marks = time_fit(
        model, _dataset(_data(), BATCH), warmup, steps, spe, (warmup + steps) // BATCHES_PER_EPOCH + 2
    )
    return {**rate(marks, BATCH), "jit_compile": bool(model.jit_compile), "spe": spe}


def trainer(spe: int | None, warmup: int, steps: int) -> dict[str, Any]:
    from trainer.callbacks.base import Callback
    from trainer.module import KerasModule, sparse_accuracy

    marks: dict[str, tuple[int, float]] = {}
    calls: list[int] = []

    class Clock(Callback):
        def on_boundary(self, trainer: Any, logs: Any) -> None:
            calls.append(trainer.step)
            if trainer.step >= warmup and "start" not in marks:
                marks["start"] = (trainer.step, time.perf_counter())
            marks["end"] = (trainer.step, time.perf_counter())

    arrays, datasets = _data(), {}

    def train(batch_size: int) -> Any:
        """Built once per batch size, as for fit: the trainer asks every epoch, and making it anew
        copies the 100 MB of arrays (about a quarter of this model's time)."""
        if batch_size not in datasets:
            datasets[batch_size] = _dataset(arrays, batch_size)
        return datasets[batch_size]

    module = KerasModule(_model(1), train=train, metrics={"accuracy": sparse_accuracy})
    # KerasModule has no training_iters: max_steps is the budget
    params = {"batch_size": BATCH, "display_step": 64}
    with scratch_dir("cto-") as work:
        fitted, _, feed = train_inproc(module, work, True, [], [Clock()], params=params,
                                       max_steps=warmup + steps, steps_per_execution=spe)  # fmt: skip
    sizes = sorted([b - a for a, b in zip([0, *calls], calls, strict=False)][1:])
    return {**rate(marks, BATCH), "jit_compile": fitted.jit_compile, "spe": spe or "auto",
            "k_median": sizes[len(sizes) // 2] if sizes else 0, "feed": feed}  # fmt: skip


def role(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    """One variant, in the child process ``run`` starts."""
    if variant.startswith("fit_spe"):
        return fit(int(variant.removeprefix("fit_spe")), warmup, steps)
    return trainer(1 if variant == "trainer_spe1" else None, warmup, steps)


def run(steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    measure = lambda variant: run_child("overhead:role", variant=variant, warmup=warmup, steps=steps)  # noqa: E731
    runs = interleaved(list(VARIANTS), repeats, measure, "steps_per_s")
    return {"model": "784-32-10 MLP, random data, batch 64, Adam", "warmup_steps": warmup,
            "timed_steps": steps, "repeats": repeats, "command": "python -m bench overhead --repeats 3",
            "load_average_at_end": list(os.getloadavg()), **compare(runs, RATIOS, "steps_per_s")}  # fmt: skip
