"""`trainctl watch`: JSON lines in order, restarts reported, detaching on Ctrl-C, ending by itself."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakes.trainer import FakeTrainer
from protocol import KeyPair, ServerCurve
from tests.system.processes import ctrl_c_as_in_a_terminal
from tests.trainctl.conftest import CliResult
from trainctl import exit_codes

LINE_TIMEOUT_S = 60.0  # a loaded 2-core CI machine starts a Python process slowly


class WatchProcess:
    """`trainctl watch --json` in a child process, its stdout lines read by a thread."""

    def __init__(self, endpoints: tuple[str, str], *extra: str) -> None:
        command = [sys.executable, "-m", "trainctl", "--control", endpoints[0], "--metrics", endpoints[1]]
        self.process = subprocess.Popen(
            [*command, "--timeout-ms", "500", "watch", "--json", *extra],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_in_a_terminal,  # SIGINT as a terminal's child has it
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def until(self, done: Callable[[dict[str, Any]], bool], what: str) -> list[dict[str, Any]]:
        """Every line up to and including the first for which `done` holds."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while not seen or not done(seen[-1]):
            try:
                seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line for {what}; saw {[line['kind'] for line in seen]}") from None
        return seen

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)  # EOF ends it
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def watch(endpoints: tuple[str, str]) -> Iterator[Callable[..., WatchProcess]]:
    started: list[WatchProcess] = []

    def start(*extra: str) -> WatchProcess:
        started.append(WatchProcess(endpoints, *extra))
        return started[-1]

    yield start
    for process in started:
        process.close()


def data_seqs(lines: list[dict[str, Any]], session: str) -> list[int]:
    return [line["seq"] for line in lines if line["kind"] == "data" and line["session"] == session]


def test_watch_json_shows_a_snapshot_then_contiguous_data_and_follows_a_restart(
    watch: Callable[..., WatchProcess], endpoints: tuple[str, str], trainer_curve: tuple[ServerCurve, KeyPair]
) -> None:
    first = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        first.advance(3)
        watcher = watch("--for", "600")  # so that only the Ctrl-C below can end it in time
        snapshot = watcher.until(lambda line: line["kind"] == "snapshot", "the snapshot")[-1]
        assert snapshot["status"]["session"] == first.session and snapshot["status"]["last_seq"] == 3
        first.advance(20)
        lines = watcher.until(lambda line: line.get("seq") == 23, "seq 23")
        assert data_seqs(lines, first.session) == list(range(4, 24))
        assert lines[-1]["topic"] == "metrics.steps" and lines[-1]["body"]["step"] == 23
    finally:
        first.close()
    second = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        second.advance(4)
        lines = watcher.until(
            lambda line: line.get("session") == second.session and line.get("seq") == 4, "seq 4"
        )
        changed = [line for line in lines if line["kind"] == "session_changed"]
        assert changed and changed[0]["old"] == first.session and changed[0]["new"] == second.session
        assert data_seqs(lines, second.session) == [1, 2, 3, 4]
    finally:
        second.close()
    watcher.process.send_signal(signal.SIGINT)  # Ctrl-C detaches cleanly
    assert watcher.process.wait(timeout=LINE_TIMEOUT_S) == exit_codes.OK


def test_watch_reports_the_trainer_down_and_back(
    watch: Callable[..., WatchProcess], endpoints: tuple[str, str], trainer_curve: tuple[ServerCurve, KeyPair]
) -> None:
    trainer = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    watcher = watch("--for", "30")
    watcher.until(lambda line: line["kind"] == "snapshot", "the snapshot")
    trainer.close()
    watcher.until(lambda line: line["kind"] == "down", "trainer down")
    again = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        watcher.until(lambda line: line["kind"] == "back", "trainer back")
    finally:
        again.close()


def test_watch_until_state_ends_when_the_state_is_reached(
    watch: Callable[..., WatchProcess], trainer: FakeTrainer, cli: Callable[..., CliResult]
) -> None:
    watcher = watch("--until-state", "running,failed", "--for", "30")
    watcher.until(lambda line: line["kind"] == "snapshot", "the snapshot")
    assert cli("start").code == exit_codes.OK
    assert watcher.process.wait(timeout=LINE_TIMEOUT_S) == exit_codes.OK
    last = watcher.until(lambda line: line.get("topic") == "event.started", "event.started")[-1]
    assert last["body"]["state"] == "running"


def test_watch_for_ends_by_itself_and_says_when_the_state_was_not_reached(
    trainer: FakeTrainer, cli: Callable[..., CliResult]
) -> None:
    assert cli("watch", "--json", "--for", "0.5").code == exit_codes.OK
    assert (
        cli("watch", "--json", "--for", "0.5", "--until-state", "finished").code
        == exit_codes.CONDITION_NOT_MET
    )


def test_watch_without_a_trainer_exits_3(cli: Callable[..., CliResult]) -> None:
    result = cli("watch", "--json", "--for", "0.5", "--timeout-ms", "100", "--retries", "0")
    assert result.code == exit_codes.UNAVAILABLE


def test_watch_for_people_draws_progress_and_events(
    trainer: FakeTrainer, cli: Callable[..., CliResult]
) -> None:
    trainer.advance(2)
    result = cli("watch", "--for", "0.5")
    assert result.code == exit_codes.OK
    assert "idle" in result.out and "step 2/1000" in result.out and "attached" in result.out


def run_watch_to_its_end(endpoints: tuple[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """trainctl in a child process, so that a watch that never ends fails the test instead of hanging it."""
    command = [sys.executable, "-m", "trainctl", "--control", endpoints[0], "--metrics", endpoints[1]]
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=LINE_TIMEOUT_S)


def test_the_scripts_watch_exits_3_with_the_error_document_when_it_cannot_attach(
    endpoints: tuple[str, str],
) -> None:
    # The README's script form, no --for, nothing at the endpoints: it used to wait for ever, silent.
    until = ("--json", "watch", "--until-state", "stopped,finished,failed")
    result = run_watch_to_its_end(endpoints, "--timeout-ms", "300", "--retries", "1", *until)
    assert result.returncode == exit_codes.UNAVAILABLE
    document = json.loads(result.stdout.splitlines()[-1])
    assert document["ok"] is False and document["exit_code"] == exit_codes.UNAVAILABLE
    assert document["error"]["code"] == "unavailable" and "cannot attach" in document["error"]["message"]
    [line] = result.stderr.splitlines()
    assert "cannot attach" in line and endpoints[0] in line


def test_the_live_view_exits_3_too_when_it_cannot_attach(endpoints: tuple[str, str]) -> None:
    result = run_watch_to_its_end(endpoints, "--timeout-ms", "300", "--retries", "0", "watch")
    assert result.returncode == exit_codes.UNAVAILABLE
    assert "cannot attach" in result.stderr


def test_a_script_waiting_for_a_state_gives_up_once_the_trainer_stays_down(
    watch: Callable[..., WatchProcess], endpoints: tuple[str, str], trainer_curve: tuple[ServerCurve, KeyPair]
) -> None:
    trainer = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        watcher = watch("--until-state", "finished", "--down-timeout", "1")
        watcher.until(lambda line: line["kind"] == "snapshot", "the snapshot")
    finally:
        trainer.close()
    lines = watcher.until(lambda line: "ok" in line, "the error document")
    assert "down" in [line.get("kind") for line in lines]  # said first, then given up on
    assert lines[-1]["exit_code"] == exit_codes.UNAVAILABLE and "down for" in lines[-1]["error"]["message"]
    assert watcher.process.wait(timeout=LINE_TIMEOUT_S) == exit_codes.UNAVAILABLE


def test_a_script_waiting_for_a_state_rides_out_a_restart_shorter_than_the_down_timeout(
    watch: Callable[..., WatchProcess],
    endpoints: tuple[str, str],
    trainer_curve: tuple[ServerCurve, KeyPair],
    cli: Callable[..., CliResult],
) -> None:
    first = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        watcher = watch("--until-state", "running", "--down-timeout", "600")
        watcher.until(lambda line: line["kind"] == "snapshot", "the snapshot")
    finally:
        first.close()
    watcher.until(lambda line: line["kind"] == "down", "trainer down")
    second = FakeTrainer(*endpoints, curve=trainer_curve[0]).start()
    try:
        watcher.until(lambda line: line["kind"] in ("back", "session_changed"), "trainer back")
        assert cli("start").code == exit_codes.OK
        assert watcher.process.wait(timeout=LINE_TIMEOUT_S) == exit_codes.OK
    finally:
        second.close()


@pytest.mark.parametrize("option", ["--for", "--down-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_duration_that_is_not_a_finite_number_is_a_usage_error(
    option: str, value: str, cli: Callable[..., CliResult]
) -> None:
    result = cli("watch", option, value)
    assert result.code == exit_codes.USAGE and len(result.err.splitlines()) == 1
    assert f"{option} must be a finite number" in result.err
