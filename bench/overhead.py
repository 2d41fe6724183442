"""Throughput where the framework is the cost: a model so small that host work per step decides.

    .venv/bin/python bench/overhead.py [--steps 1536] [--warmup 128] [--repeats 3]

A 784-32-10 MLP (ReLU, logits), random data (fixed seed), batch 64, ``keras.optimizers.Adam`` and
sparse cross-entropy everywhere, the way a GPU makes any model overhead-bound. Each repetition
runs every variant once, in this order (interleaved, so drift hits all alike), each in its own
process:

- ``fit_spe1`` / ``fit_spe32``: ``keras.Model.fit`` with ``steps_per_execution`` 1 and 32.
- ``trainer``: ``trainer.Trainer`` on ``KerasModule`` with the callbacks ``python -m trainer``
  builds, the control plane live (Controller, ControlServer, Publisher, as ``trainer.__main__``
  wires them) and two ``Subscriber``s reading the feed from another process;
  ``steps_per_execution`` auto, ``jit_compile`` auto.
- ``trainer_spe1``: the same at one step per call (what the trainer did before).

The clock runs between two host points where every step before them has finished: for ``fit``
a batch-begin callback that reads ``optimizer.iterations`` (a sync) at the two clock points only;
for the trainer the first ``on_boundary`` at or after step ``warmup`` and the last one. Rates are
steps over that window; ratios are paired within a repetition, then median (min..max).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.harness import run_json_child, scratch_dir, summary  # noqa: E402

logger = logging.getLogger("bench.overhead")

VARIANTS = ("fit_spe1", "fit_spe32", "trainer", "trainer_spe1")
BATCH = 64
BATCHES_PER_EPOCH = 512  # a multiple of every K used, so no call is cut short by an epoch's end
COMMAND = "python bench/overhead.py --repeats 3"


def _data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    samples = BATCH * BATCHES_PER_EPOCH
    x = rng.random((samples, 784), dtype=np.float32)
    return x, rng.integers(0, 10, size=(samples,), dtype=np.int64)


def _model() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    return model


def _dataset(arrays: tuple[Any, Any], batch_size: int) -> Any:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays).shuffle(BATCH * 16, seed=0)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _compile(model: Any, spe: int) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=spe,
    )


def fit(spe: int, warmup: int, steps: int) -> dict[str, Any]:
    import keras

    last = warmup + steps
    marks: dict[str, tuple[int, float]] = {}

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        """Batch begins come once per execution; a sync only at the two clock points."""

        def __init__(self) -> None:
            super().__init__()
            self.executions = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            done, self.executions = self.executions * spe, self.executions + 1
            for name, at in (("start", warmup), ("end", last)):
                if done >= at and name not in marks:
                    marks[name] = (int(self.model.optimizer.iterations.numpy()), time.perf_counter())
            if done >= last:
                self.model.stop_training = True

    model = _model()
    _compile(model, spe)
    epochs = last // BATCHES_PER_EPOCH + 2
    model.fit(_dataset(_data(), BATCH), epochs=epochs, verbose=0, callbacks=[Clock()])
    return _rate(marks, jit=bool(model.jit_compile), spe=spe)


def _rate(marks: dict[str, tuple[int, float]], **extra: Any) -> dict[str, Any]:
    (s0, t0), (s1, t1) = marks["start"], marks["end"]
    return {"steps_per_s": (s1 - s0) / (t1 - t0), "timed_steps": s1 - s0, "seconds": t1 - t0, **extra}


def trainer(spe: int | None, warmup: int, steps: int) -> dict[str, Any]:
    from bench.throughput_roles import _control_plane, _start_readers, _stop_readers
    from trainer.callbacks.base import Callback
    from trainer.config import Config
    from trainer.control import Progress
    from trainer.module import KerasModule, sparse_accuracy
    from trainer.session import build_callbacks
    from trainer.trainer import Trainer

    last = warmup + steps
    marks: dict[str, tuple[int, float]] = {}
    calls: list[int] = []

    class Clock(Callback):
        def on_boundary(self, trainer: Trainer, logs: Any) -> None:
            calls.append(trainer.step)
            if trainer.step >= warmup and "start" not in marks:
                marks["start"] = (trainer.step, time.perf_counter())
            marks["end"] = (trainer.step, time.perf_counter())

    with scratch_dir("cto-") as work:
        config = Config(run_dir=work / "run", quiet=True)
        controller, publish, closers = _control_plane(work)
        readers = _start_readers(work)
        model = _model()
        _compile(model, 1)
        arrays, datasets = _data(), {}

        def train(batch_size: int) -> Any:
            """Built once per batch size, as for fit: the trainer asks every epoch, and making it
            anew copies the 100 MB of arrays (about a quarter of this model's time)."""
            if batch_size not in datasets:
                datasets[batch_size] = _dataset(arrays, batch_size)
            return datasets[batch_size]

        module = KerasModule(model, train=train, metrics={"accuracy": sparse_accuracy})
        trainer = Trainer(
            module,
            params={"batch_size": BATCH, "display_step": 64, "training_iters": BATCH * last},
            callbacks=[*build_callbacks(config, controller, publish), Clock()],
            run_dir=config.run_dir,
            max_steps=last,
            steps_per_execution=spe,
            jit_compile=config.jit_compile,
        )
        trainer.test = lambda: {}  # type: ignore[method-assign]  # only training is timed
        progress = Progress(step=0, epoch=0, total_steps=trainer.total_steps())
        controller.loaded(trainer.specs, trainer.params, progress, autostart=True)
        try:
            trainer.fit()
        finally:
            feed = _stop_readers(readers)
            for item in closers:
                item.close()
    sizes = [b - a for a, b in zip([0, *calls], calls, strict=False)][1:]
    k_median = sorted(sizes)[len(sizes) // 2] if sizes else 0
    return _rate(marks, jit=trainer.jit_compile, spe=spe or "auto", k_median=k_median, feed=feed)


def measure(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    args = [__file__, "role", variant, "--warmup", str(warmup), "--steps", str(steps)]
    return run_json_child(args)


def run(steps: int = 1536, warmup: int = 128, repeats: int = 3) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for repeat in range(repeats):
        for variant in VARIANTS:
            result = measure(variant, warmup, steps)
            logger.info("repeat %d %-13s %8.1f steps/s", repeat + 1, variant, result["steps_per_s"])
            runs[variant].append(result)

    def paired(top: str, bottom: str) -> dict[str, Any]:
        pairs = zip(runs[top], runs[bottom], strict=True)
        return summary([a["steps_per_s"] / b["steps_per_s"] for a, b in pairs])

    return {
        "model": "784-32-10 MLP, random data, batch 64, Adam",
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "order": list(VARIANTS),
        "command": COMMAND,
        "load_average_at_end": list(os.getloadavg()),
        "steps_per_s": {v: summary([r["steps_per_s"] for r in rs]) for v, rs in runs.items()},
        "ratios": {
            "trainer_vs_fit_spe32": paired("trainer", "fit_spe32"),
            "trainer_vs_fit_spe1": paired("trainer", "fit_spe1"),
            "trainer_spe1_vs_fit_spe1": paired("trainer_spe1", "fit_spe1"),
            "fit_spe32_vs_fit_spe1": paired("fit_spe32", "fit_spe1"),
        },
        "runs": runs,
    }


VARIANT_TEXT = {
    "fit_spe1": "`keras.Model.fit`, `steps_per_execution=1`",
    "fit_spe32": "`keras.Model.fit`, `steps_per_execution=32`",
    "trainer": "`trainer.Trainer`, steps per call auto, control plane live + 2 subscribers",
    "trainer_spe1": "the same at 1 step per call",
}


def markdown(o: dict[str, Any]) -> list[str]:
    """The section of BENCHMARKS.md (``bench.report``)."""
    from bench.report_sections import fig, table, verdict

    ratios = o["ratios"]
    rows = []
    for variant, rate in o["steps_per_s"].items():
        first = o["runs"][variant][0]
        how = f"jit {first.get('jit')}" + (f", K median {first['k_median']}" if "k_median" in first else "")
        rows.append([VARIANT_TEXT[variant], fig(rate, "{:,.0f}"), how])
    spe32, spe1 = ratios["trainer_vs_fit_spe32"], ratios["trainer_vs_fit_spe1"]
    compared = [
        ["trainer / fit(spe=32)", fig(spe32, "{:.2f}"), verdict(spe32["median"], _at_least(1.0), ">= 1.0")],
        ["trainer / fit(spe=1)", fig(spe1, "{:.2f}"), verdict(spe1["median"], _at_least(2.0), ">= 2.0")],
        ["trainer at 1 step per call / fit(spe=1)", fig(ratios["trainer_spe1_vs_fit_spe1"], "{:.2f}"), ""],
        ["fit(spe=32) / fit(spe=1)", fig(ratios["fit_spe32_vs_fit_spe1"], "{:.2f}"), ""],
    ]
    load = " ".join(f"{value:.2f}" for value in o["load_average_at_end"])
    return [
        "## Where the framework is the cost: a tiny MLP",
        "",
        f"{o['model']}; each run times {o['timed_steps']} steps after {o['warmup_steps']}; "
        f"{o['repeats']} repetition(s), interleaved in the order {', '.join(o['order'])}; every "
        f"variant its own process. Load average at the end: {load}. "
        f"Rerun alone: `{o['command']}`.",
        "",
        *table(["variant", "steps/s", "ran with"], rows),
        *table(["comparison", "paired ratio", "target (median)"], compared),
    ]


def _at_least(bound: float) -> Any:
    return lambda value: value >= bound


def _role(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    if variant.startswith("fit_spe"):
        return fit(int(variant.removeprefix("fit_spe")), warmup, steps)
    return trainer(1 if variant == "trainer_spe1" else None, warmup, steps)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", nargs="?", choices=("role",), help=argparse.SUPPRESS)
    parser.add_argument("variant", nargs="?", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1536)
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.role:
        print(json.dumps(_role(args.variant, args.warmup, args.steps)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.steps, args.warmup, args.repeats)
    print(json.dumps(result, indent=2))
    logger.info("\n%s", "\n".join(markdown(result)))


if __name__ == "__main__":
    main()
