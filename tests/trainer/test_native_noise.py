"""TensorFlow's start-up notices stay off the terminal; everything else written to fd 2 gets through."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, threading
    from trainer.native_noise import filtered_stderr
    logging.basicConfig(stream=sys.stderr, format="%(threadName)s %(message)s")
    os.write(2, b"before\\n")
    with filtered_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see...\\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to X\\n")
        os.write(2, b"E0000 a real native error\\n")
        worker = threading.Thread(target=lambda: logging.warning("the control thread speaks"), name="control")
        worker.start(); worker.join()
        os.write(2, b"no newline at the end")
    os.write(2, b"\\nafter\\n")
    """
)


def test_only_the_known_notices_are_dropped_and_the_rest_keeps_its_order() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, timeout=120, check=True
    )
    assert done.stderr.decode().splitlines() == [
        "before",
        "E0000 a real native error",
        "control the control thread speaks",
        "no newline at the end",
        "after",
    ]


def test_the_trainer_prints_no_tensorflow_start_up_notice(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "--synthetic-data",
            "64",
            "--max-steps",
            "2",
            "--autostart",
            "--exit-when-done",
            "--quiet",
            "--run-dir",
            str(tmp_path / "run"),
            "--instance",
            "noise",
            "--insecure-no-curve",
        ],  # fmt: skip
        cwd=ROOT,
        env={**os.environ, "CHATTRAIN_RUNTIME_DIR": str(tmp_path / "rt")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "oneDNN" not in done.stderr and "InitializeLog" not in done.stderr, done.stderr
    assert "state running -> finished" in done.stderr  # the trainer's own lines still show
