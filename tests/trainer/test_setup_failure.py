"""A trainer whose data cannot be loaded says why, and refuses `start` instead of failing again."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import ErrorCode, RemoteError
from tests.trainer.support import TrainerProcess

pytestmark = pytest.mark.slow


def test_start_after_a_failed_setup_is_refused_with_the_reason(workdir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz file")
    process = TrainerProcess(workdir, tmp_path / "run", ["--data", str(broken)])
    try:
        failed = process.wait_status(lambda s: s["state"] == "failed")
        assert failed["error"] is not None
        with pytest.raises(RemoteError) as refusal:
            process.client.start()
        assert refusal.value.code == ErrorCode.INVALID_STATE
        assert "could not be set up" in refusal.value.message
        assert process.client.status()["state"] == "failed"
    finally:
        process.close()


def test_a_tensorflow_that_cannot_be_imported_fails_the_trainer_and_start_says_why(
    workdir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken" / "tensorflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this install of TensorFlow is broken')\n")
    process = TrainerProcess(workdir, tmp_path / "run", [], env={"PYTHONPATH": str(broken.parent)})
    try:
        failed = process.wait_status(lambda s: s["state"] == "failed")
        assert "this install of TensorFlow is broken" in failed["error"]["message"]
        for op in (process.client.start, process.client.evaluate, process.client.checkpoint):
            with pytest.raises(RemoteError) as refusal:
                op()
            assert refusal.value.code == ErrorCode.INVALID_STATE
            assert "could not be set up (ImportError: this install" in refusal.value.message
        status = process.client.status()
        assert status["state"] == "failed" and status["error"] == failed["error"]
    finally:
        process.close()
