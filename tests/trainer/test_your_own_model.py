"""Your own model from the README: the example module, the constructor options, the one-line
Keras wrapper (progress, budget, compiled metrics, history)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from examples.my_module import LABEL_NOISE, Spirals  # noqa: E402
from trainer import KerasModule, Trainer  # noqa: E402
from trainer.tasks import load_module  # noqa: E402


def test_the_example_module_trains_with_its_own_live_parameter(tmp_path: Path) -> None:
    trainer = Trainer(
        Spirals(samples=400), params={"noise": 0.2}, max_steps=12, run_dir=tmp_path, progress=False
    )
    assert [spec.name for spec in trainer.specs] == ["learning_rate", "batch_size", LABEL_NOISE]
    assert trainer.params == {"learning_rate": 0.01, "batch_size": 64, LABEL_NOISE: 0.2}
    history = trainer.fit()
    assert history.outcome == "finished" and trainer.step == 12
    assert history.steps == [10] and set(history.history) == {"loss", "accuracy", "lr"}
    assert set(history.test) == {"loss", "accuracy"}
    trainer.set_params({LABEL_NOISE: 0.3})
    assert trainer.module.noise.numpy() == pytest.approx(0.3)  # the step reads it from the variable


def test_a_module_gets_only_the_constructor_options_it_takes() -> None:
    module = load_module(None, "examples.my_module:Spirals", data="mnist.npz", data_limit=5, synthetic=300)
    assert isinstance(module, Spirals) and module.samples == 300


def test_a_compiled_model_in_one_line_shows_progress_and_returns_its_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Linearly separable through the origin, so one epoch learns it (0.85 or more over 6 seeds; the
    # larger class is 0.51 of the samples).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = Trainer(KerasModule(model, train=(x, y), test=(x, y)), run_dir=tmp_path).fit()
    assert history.outcome == "finished"
    assert history.steps == [10]  # one epoch (as fit), batch 32 (as fit): 16 steps
    assert len(history.history["accuracy"]) == 1  # the compiled metric, reported
    assert history.test["accuracy"] >= 0.75
    err = capsys.readouterr().err
    assert f"checkpoints go to {tmp_path / 'checkpoints'}" in err
    assert "16/16" in err  # the progress bar reached the end of the epoch budget


def test_a_missing_data_file_names_the_variable_to_set(tmp_path: Path) -> None:
    from trainer.data import load_mnist

    with pytest.raises(FileNotFoundError, match="set CHATTRAIN_DATA \\(or --data\\)"):
        load_mnist(tmp_path / "nowhere.npz")


def test_a_failed_download_says_why_in_full_and_names_the_variable_to_set(tmp_path: Path) -> None:
    import subprocess
    import sys

    # A real download attempt through a proxy nobody listens on (refused at once), with an empty
    # Keras cache: what a machine without network sees.
    env = {**os.environ, "HOME": str(tmp_path), "KERAS_HOME": str(tmp_path / ".keras"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # fmt: skip
    env.pop("CHATTRAIN_DATA", None)
    code = "from trainer.data import load_mnist\ntry:\n load_mnist(None)\nexcept OSError as e:\n print(e)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("cannot download MNIST (") and line.endswith(
        "); set CHATTRAIN_DATA (or --data) to a Keras-layout mnist.npz"
    ), done.stdout + done.stderr
    assert "Connection refused" in line, line  # the cause itself, not cut mid-word


def test_a_metric_named_like_a_compiled_one_replaces_it_rather_than_running_both(tmp_path: Path) -> None:
    calls = []

    def accuracy(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        calls.append("traced")
        return tf.constant(0.25)

    x = np.zeros((64, 4), np.float32)
    y = np.zeros((64,), np.int64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])  # fmt: skip
    trainer = Trainer(
        KerasModule(model, train=(x, y), metrics={"accuracy": accuracy}),
        params={"display_step": 1}, max_steps=3, run_dir=tmp_path, progress=False,
    )  # fmt: skip
    history = trainer.fit()
    assert calls and history.history["accuracy"] == [0.25, 0.25, 0.25]
    compiled = [m for group in model.metrics if hasattr(group, "metrics") for m in group.metrics]
    assert [m.name for m in compiled] == ["accuracy"]
    # Built on two samples, then never updated (a step would leave the count at its batch, 64).
    assert float(compiled[0].count.numpy()) <= 2
