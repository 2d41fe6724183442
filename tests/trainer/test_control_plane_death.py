"""A trainer whose control server thread dies says so, fails the run and exits non-zero for a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import TrainerUnavailable
from tests.trainer.ct_fault_modules import FAULT_OP
from tests.trainer.support import TrainerProcess
from trainer.control_plane import EXIT_CONTROL_PLANE_DIED

pytestmark = pytest.mark.slow

FAULT_MODULE = "tests.trainer.ct_fault_modules:ControlServerKiller"
EXIT_WAIT_S = 90


def test_a_dead_control_server_fails_the_run_and_the_process_exits_non_zero(
    data_args: list[str], workdir: Path, tmp_path: Path
) -> None:
    process = TrainerProcess(workdir, tmp_path / "run", [*data_args, "--module", FAULT_MODULE])
    feed = process.subscribe()
    try:
        process.wait_status(lambda status: status["state"] == "idle")
        feed.attached()  # in step before the fault
        with pytest.raises(TrainerUnavailable):
            process.request(FAULT_OP)  # the serving thread dies instead of answering
        failed = feed.wait("event.failed")
        assert failed["error"]["type"] == "ControlPlaneDied"
        assert "control-server thread died" in failed["error"]["message"]
        assert process.popen.wait(timeout=EXIT_WAIT_S) == EXIT_CONTROL_PLANE_DIED
    finally:
        feed.close()
        process.close()
    assert "the control-server thread died" in process.log_path.read_text()
