"""A plain ``model.fit`` with ``chattrain.keras.Remote()`` steered from the sidecar's chat."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from chattrain.keras import Remote  # noqa: E402
from protocol import resolve_connection  # noqa: E402
from tests.sidecar.harness import endpoints, make_config, running_sidecar  # noqa: E402

WAIT_S = 60.0  # fit's first batch traces the step: seconds on a loaded machine


def compiled_model() -> Any:
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture
def eps() -> Iterator[tuple[str, str]]:
    with endpoints() as pair:
        yield pair


def test_a_plain_fit_obeys_the_chat(
    eps: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The instance's keys (kept across restarts on purpose) go to this test's own runtime dir,
    # not the user's, where one file per test run would pile up.
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(tmp_path / "runtime"))
    rng = np.random.default_rng(0)
    x = rng.random((256, 8), dtype=np.float32)
    y = (x.sum(axis=1) > 4).astype(np.int64)
    model = compiled_model()
    remote = Remote(
        validation_data=(x, y), run_dir=tmp_path / "run", display_step=5,
        control=eps[0], metrics=eps[1], instance=f"ct-keras-{os.getpid()}",
    )  # fmt: skip
    result: dict[str, Any] = {}

    def fit() -> None:  # a budget far too long: only 'stop' ends it
        result["history"] = model.fit(x, y, epochs=10_000, batch_size=16, callbacks=[remote], verbose=0)

    instance = f"ct-keras-{os.getpid()}"
    connection = resolve_connection(control=eps[0], metrics=eps[1], instance=instance)  # CurveZMQ keys
    assert connection.curve is not None
    with running_sidecar(make_config(*eps, tmp_path / "state", curve=connection.curve)) as (_, chat):
        fitting = threading.Thread(target=fit, name="fit")
        fitting.start()
        try:
            chat.wait_text("Iter 5,", WAIT_S)  # the feed: the seed's progress line, from fit's logs

            def ask(text: str, fragment: str) -> str:
                before = len(chat.snapshot())
                chat.push_message(text)
                return chat.wait_text(fragment, WAIT_S, after=before)

            assert ask("status", "State:").startswith("State: running, step ")
            assert ask("lr 0.05", "OK:").startswith("OK: learning_rate = 0.05 (was 0.01)")
            assert ask("pause", "Paused").startswith("⏸ Paused at step")
            paused_at = remote.run.step if remote.run else -1
            assert ask("status", "State:").startswith(f"State: paused, step {paused_at}")
            assert ask("resume", "Resumed").startswith("▶️ Resumed at step")
            assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.05)
            assert "Checkpoint saved" in ask("checkpoint", "Checkpoint saved")
            assert "accuracy" in ask("eval", "📊 Evaluation at step")
            assert "test accuracy" in ask("stop", "⏹ Stopped at step")
        finally:
            model.stop_training = True
            fitting.join(WAIT_S)
    history = result["history"]
    assert len(history.history["loss"]) < 10_000  # stopped, not finished
    assert list((tmp_path / "run" / "checkpoints").glob("step-*.weights.h5"))


def test_a_dead_control_server_stops_the_fit_and_leaves_the_users_process_running(
    eps: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The thread-death watch of ``python -m trainer``, less its exit: this process is the user's."""
    from protocol import ControlClient, TrainerUnavailable
    from tests.trainer.ct_fault_modules import FAULT_OP, arm_fault

    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(tmp_path / "runtime"))
    x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    y = (x.sum(axis=1) > 4).astype(np.int64)
    remote = Remote(run_dir=tmp_path / "run", control=eps[0], metrics=eps[1], insecure_no_curve=True,
                    instance=f"ct-keras-death-{os.getpid()}")  # fmt: skip
    bound = threading.Event()

    class BreakTheServer(keras.callbacks.Callback):  # type: ignore[misc]
        """After Remote bound its sockets: the next FAULT_OP request ends the serving thread."""

        def on_train_begin(self, logs: Any = None) -> None:
            arm_fault(eps[0])
            bound.set()

    result: dict[str, Any] = {}
    fitting = threading.Thread(  # a budget far too long: only the stop the watch asks for ends it
        target=lambda: result.update(history=model.fit(x, y, epochs=10_000, batch_size=16, verbose=0,
                                                       callbacks=[remote, BreakTheServer()])),
        name="fit",
    )  # fmt: skip
    model = compiled_model()
    caplog.set_level("ERROR", logger="chattrain.keras")
    fitting.start()
    try:
        assert bound.wait(WAIT_S)
        with ControlClient(eps[0], timeout_ms=2000, retries=0) as client, pytest.raises(TrainerUnavailable):
            client.request(FAULT_OP)  # the serving thread dies instead of answering
        fitting.join(WAIT_S)
        assert not fitting.is_alive()
    finally:
        model.stop_training = True
        fitting.join(WAIT_S)
    assert len(result["history"].history["loss"]) < 10_000  # stopped by the watch, not finished
    assert "the control-server thread died" in caplog.text and "the run stops" in caplog.text
