"""supervise: restarts with backoff, clean exits, stop signals, and survival under honcho."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from fakes.trainer import wait_until
from supervise import RespawnConfig, describe_exit, next_backoff
from supervise.__main__ import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
RESPAWN = [sys.executable, "-m", "supervise"]
# Counts its runs in <dir>/<name>.runs, writes its pid to <dir>/<name>.pid, then exits with the code
# given for this run (the last one repeats), or with "wait" sleeps until a signal arrives.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    folder, name, plan = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    if "ignore-term" in sys.argv[4:]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "grandchild" in sys.argv[4:]:  # one that ignores SIGTERM, in our process group
        import subprocess
        mark = folder / f"{name}.grandchild"
        code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open(sys.argv[1], 'w').write('ready'); time.sleep(600)")
        grandchild = subprocess.Popen([sys.executable, "-c", code, str(mark)])
        while not mark.exists():
            time.sleep(0.01)
        (folder / f"{name}.gpid").write_text(str(grandchild.pid))
    runs = folder / f"{name}.runs"
    with runs.open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    count = len(runs.read_text().split())
    (folder / f"{name}.pid.tmp").write_text(str(os.getpid()))
    os.replace(folder / f"{name}.pid.tmp", folder / f"{name}.pid")
    step = plan[min(count, len(plan)) - 1]
    if step == "wait":
        while True:
            time.sleep(60)
    sys.exit(int(step))
    """
)


@pytest.fixture
def child(tmp_path: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(tmp_path)]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def spawn(
    processes: list[subprocess.Popen[bytes]],
    argv: list[str],
    *,
    stdout: IO[bytes] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so teardown can kill its whole group), stderr piped."""
    process = subprocess.Popen(argv, start_new_session=True, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)
    processes.append(process)
    return process


def runs(folder: Path, name: str) -> list[int]:
    path = folder / f"{name}.runs"
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def kill_if_alive(pid: int) -> None:
    """A failing test must not leave its orphan running."""
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() -> None:
    config = RespawnConfig(("x",), "x", initial_backoff_s=0.5, max_backoff_s=3.0, stable_after_s=60.0)
    waits = [0.0]
    for _ in range(5):
        waits.append(next_backoff(config, waits[-1], ran_s=1.0))
    assert waits[1:] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert next_backoff(config, 3.0, ran_s=61.0) == 0.5


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "signal SIGKILL"


def test_the_command_follows_the_double_dash() -> None:
    config = parse_args(["--max-backoff", "5", "--", "python", "-m", "trainer", "--quiet"])
    assert config.command == ("python", "-m", "trainer", "--quiet")
    assert config.max_backoff_s == 5.0 and config.name == "python"


@pytest.mark.parametrize(
    "option",
    [
        ["--initial-backoff", "nan"],  # was: restarts in a hot loop
        ["--initial-backoff", "inf"],  # was: an OverflowError traceback at the first wait
        ["--initial-backoff", "0"],  # never doubles: the same hot loop
        ["--max-backoff", "nan"],  # was: no cap at all
        ["--max-backoff", "1e400"],  # CHATTRAIN_RESPAWN_MAX_BACKOFF reaches this flag verbatim
        ["--stable-after", "nan"],
        ["--stop-timeout", "inf"],
        ["--stop-timeout=-1"],
        ["--no-restart-on", "256"],
    ],
)
def test_a_value_out_of_range_is_one_line_and_exit_2_before_anything_runs(
    option: list[str], child: list[str], tmp_path: Path
) -> None:
    result = subprocess.run(
        # A child that exits cleanly: had the value been taken, this would end at once with 0.
        [*RESPAWN, *option, "--", *child, "job", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and option[0].split("=")[0] in lines[0], result.stderr
    assert runs(tmp_path, "job") == []


def test_a_child_that_crashes_twice_is_restarted_twice_and_a_clean_exit_ends_it(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    argv = [*RESPAWN, "--initial-backoff", "0.05", "--", *child, "job", "3,3,0"]
    process = spawn(processes, argv)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert len(runs(tmp_path, "job")) == 3
    log = err.decode()
    assert "exit code 3 after" in log and "restart #1 in 0.05 s" in log and "restart #2 in 0.10 s" in log
    assert "exited cleanly" in log


def test_always_restarts_after_a_clean_exit_too(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = spawn(
        processes, [*RESPAWN, "--always", "--initial-backoff", "0.01", "--", *child, "job", "0,0,wait"]
    )
    wait_until(lambda: len(runs(tmp_path, "job")) == 3, what="a third run")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) != 0


def test_sigterm_stops_the_child_and_the_supervisor_promptly(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = spawn(processes, [*RESPAWN, "--", *child, "job", "wait"])
    wait_until(lambda: (tmp_path / "job.pid").exists(), what="the child's pid")
    pid = int((tmp_path / "job.pid").read_text())
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 2.0
    assert not alive(pid)
    assert len(runs(tmp_path, "job")) == 1


def test_a_stop_signal_during_the_backoff_wait_ends_it_at_once(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = spawn(processes, [*RESPAWN, "--initial-backoff", "30", "--", *child, "job", "1"])
    wait_until(lambda: len(runs(tmp_path, "job")) == 1, what="the first run")
    assert process.stderr is not None
    assert b"restart #1 in 30.00 s" in process.stderr.readline()  # now waiting to restart
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 128 + signal.SIGINT


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    argv = [*RESPAWN, "--stop-timeout", "0.3", "--", *child, "job", "wait", "ignore-term"]
    process = spawn(processes, argv)
    wait_until(lambda: (tmp_path / "job.pid").exists(), what="the child's pid")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 128 + signal.SIGTERM
    assert not alive(int((tmp_path / "job.pid").read_text()))


def test_sigterm_ends_grandchildren_that_ignore_it_and_leaves_no_orphan(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    argv = [*RESPAWN, "--stop-timeout", "0.5", "--", *child, "job", "wait", "grandchild"]
    process = spawn(processes, argv)
    wait_until(lambda: (tmp_path / "job.pid").exists(), what="the child's pid")
    grandchild = int((tmp_path / "job.gpid").read_text())
    try:
        process.send_signal(signal.SIGTERM)  # the child exits on it at once; the grandchild ignores it
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
        assert not alive(grandchild)
        assert process.stderr is not None and b"SIGKILL" in process.stderr.read()
    finally:
        kill_if_alive(grandchild)


def test_a_crashed_childs_leftover_processes_are_ended_before_anything_else(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    argv = [*RESPAWN, "--stop-timeout", "0.5", "--no-restart-on", "3", "--", *child, "job", "3", "grandchild"]
    process = spawn(processes, argv)
    try:
        assert process.wait(timeout=20) == 3
        assert not alive(int((tmp_path / "job.gpid").read_text()))
    finally:
        kill_if_alive(int((tmp_path / "job.gpid").read_text()))


def test_under_honcho_a_killed_entry_comes_back_and_the_other_keeps_running(
    child: list[str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # honcho runs each line with `sh -c`, so default expansions work as in the repository's Procfile.
    wrapped = " ".join([*RESPAWN, "--initial-backoff", "${RESPAWN_TEST_BACKOFF:-0.05}", "--"] + child)
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"alpha: {wrapped} alpha wait\nbeta: {wrapped} beta wait\n")
    with (tmp_path / "honcho.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        argv = [sys.executable, "-m", "honcho", "start", "-f", str(procfile)]
        honcho = spawn(processes, argv, stdout=log, cwd=tmp_path)

    wait_until(lambda: bool(runs(tmp_path, "alpha") and runs(tmp_path, "beta")), what="both entries")
    alpha, beta = runs(tmp_path, "alpha")[0], runs(tmp_path, "beta")[0]
    os.kill(alpha, signal.SIGKILL)
    wait_until(lambda: len(runs(tmp_path, "alpha")) == 2, what="alpha restarted")
    again = runs(tmp_path, "alpha")[1]
    assert alive(again) and alive(beta) and runs(tmp_path, "beta") == [beta]
    assert honcho.poll() is None
    honcho.send_signal(signal.SIGINT)  # Ctrl-C in honcho stops every entry
    assert honcho.wait(timeout=10) != 0
    wait_until(lambda: not alive(again) and not alive(beta), timeout_s=5, what="both children gone")
    assert "signal SIGKILL" in (tmp_path / "honcho.log").read_text()


def test_the_repository_procfile_wraps_every_entry_in_respawn() -> None:
    entries = dict(
        line.split(":", 1)
        for line in (REPO_ROOT / "Procfile").read_text().splitlines()
        if line and line[0] != "#"
    )
    assert set(entries) == {"trainer", "sidecar"}
    assert all("-m supervise " in command for command in entries.values())
    result = subprocess.run(
        [sys.executable, "-m", "honcho", "check"], cwd=REPO_ROOT, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
