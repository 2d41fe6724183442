"""One trainer per run directory, and a run directory it cannot use is a configuration error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol import hold_lock
from tests.trainer.support import REPO_ROOT, TEST_MODULE, TrainerProcess
from trainer.__main__ import RUN_DIR_LOCK

pytestmark = pytest.mark.slow


def trainer_exit(workdir: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m trainer`` on ``run_dir`` with endpoints of its own, to its exit."""
    endpoints = ["--control", f"ipc://{workdir}/second-c", "--metrics", f"ipc://{workdir}/second-m"]
    return subprocess.run(
        [sys.executable, "-m", "trainer", "--module", TEST_MODULE, "--run-dir", str(run_dir), *endpoints],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_trainer_on_a_run_dir_in_use_exits_naming_the_one_using_it(
    workdir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = TrainerProcess(workdir, run_dir, ["--module", TEST_MODULE, "--synthetic-data", "64"])
    try:
        second = trainer_exit(workdir, run_dir)  # say, a second --instance without its own --run-dir
        assert second.returncode == 3, second.stderr  # in use: the supervisor retries it later
        [line] = second.stderr.strip().splitlines()
        assert f"run dir {run_dir} is in use by trainer process {first.popen.pid}" in line
        assert first.client.status()["state"] in ("loading", "idle")  # the first one is untouched
    finally:
        first.close()  # kill -9
    with hold_lock(run_dir / RUN_DIR_LOCK, "still held by {holder}"):
        pass  # the kernel dropped the lock with its holder: a restart takes the run dir


def test_a_run_dir_that_is_not_a_directory_is_a_usage_error(workdir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "file"
    taken.write_text("not a directory")
    result = trainer_exit(workdir, taken)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"run dir {taken} is not a directory this trainer can write" in line
