"""`trainctl ls`, `--instance NAME` and `watch --all` with two fake trainers and their connection files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakes.trainer import FakeTrainer
from protocol import ConnectionInfo
from tests.trainctl.conftest import CliResult

NAMES = ("exp1", "exp2")


def write_connection_file(directory: Path, name: str, trainer: FakeTrainer, pid: int) -> None:
    control, metrics = f"ipc://{directory}/{name}.control", f"ipc://{directory}/{name}.metrics"
    ConnectionInfo(control, metrics, f"run-{name}", trainer.session, 1, pid=pid).write(
        directory / f"{name}.json"
    )


@pytest.fixture
def runs(ipc_dir: Path) -> Iterator[dict[str, FakeTrainer]]:
    """Two fake trainers (instances exp1, exp2) as `python -m trainer --instance NAME` leaves them."""
    fakes: dict[str, FakeTrainer] = {}
    try:
        for step, name in ((10, "exp1"), (20, "exp2")):
            eps = f"ipc://{ipc_dir}/{name}.control", f"ipc://{ipc_dir}/{name}.metrics"
            fakes[name] = FakeTrainer(*eps, state="running", step=step, announce=False).start()
            write_connection_file(ipc_dir, name, fakes[name], os.getpid())
        yield fakes
    finally:
        for fake in fakes.values():
            fake.close()


def test_ls_lists_every_run_with_state_and_step(
    cli: Callable[..., CliResult], runs: dict[str, FakeTrainer], ipc_dir: Path
) -> None:
    # A killed trainer leaves its connection file behind, naming a process that is gone.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = FakeTrainer(f"ipc://{ipc_dir}/old.control", f"ipc://{ipc_dir}/old.metrics")  # never started
    try:
        write_connection_file(ipc_dir, "old", dead, int(gone.stdout))
    finally:
        dead.close()
    result = cli("--json", "ls", connect=False)
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in result.json()}
    assert set(rows) == {"exp1", "exp2", "old"}
    assert (rows["exp1"]["state"], rows["exp1"]["step"], rows["exp1"]["total_steps"]) == ("running", 10, 1000)
    assert (rows["exp2"]["state"], rows["exp2"]["step"]) == ("running", 20)
    assert rows["old"]["state"] == "down"
    table = cli("ls", connect=False)
    assert table.code == 0 and "exp1" in table.out and "down" in table.out


def test_instance_addresses_one_run(cli: Callable[..., CliResult], runs: dict[str, FakeTrainer]) -> None:
    result = cli("--instance", "exp2", "set", "lr", "0.01", connect=False)
    assert result.code == 0, result.err
    assert runs["exp2"].params["learning_rate"] == 0.01
    assert runs["exp1"].params["learning_rate"] == 0.001
    assert cli("stop", "--instance", "exp1", connect=False).code == 0  # after the command too
    assert (runs["exp1"].state, runs["exp2"].state) == ("stopped", "running")


def test_watch_all_follows_every_run(cli: Callable[..., CliResult], runs: dict[str, FakeTrainer]) -> None:
    for fake in runs.values():
        fake.op_stop({})
    result = cli("--json", "watch", "--all", "--until-state", "stopped", "--for", "30", connect=False)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    snapshots = {line["run"]: line for line in lines if line["kind"] == "snapshot"}
    assert set(snapshots) == set(NAMES)
    assert snapshots["exp2"]["status"]["step"] == 20


def test_ls_with_no_runs_says_so(cli: Callable[..., CliResult]) -> None:
    result = cli("ls", connect=False)
    assert result.code == 0 and "no runs" in result.out
    assert cli("--json", "ls", connect=False).json() == []


def test_ls_shows_a_connection_file_it_cannot_read_instead_of_hiding_its_run(
    cli: Callable[..., CliResult], ipc_dir: Path
) -> None:
    broken = ipc_dir / "broken.json"
    broken.write_text('{"control": "ipc:///x", ')  # cut short: never what a trainer writes
    broken.chmod(0o600)
    [row] = cli("--json", "ls", connect=False).json()
    assert (row["name"], row["state"], row["path"]) == ("broken", "unreadable", str(broken))
    assert row["error"]
    table = cli("ls", connect=False)
    assert table.code == 0 and "unreadable" in table.out and "no runs" not in table.out
