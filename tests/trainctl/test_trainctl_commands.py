"""trainctl's commands against a real ControlServer: --json output, human output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fakes.trainer import FakeTrainer
from protocol import ConnectionInfo, ControlServer, ServerCurve, generate_keypair
from tests.trainctl.conftest import CliResult
from trainctl import exit_codes

Cli = Callable[..., CliResult]


def test_status_json_is_the_status_reply(cli: Cli, trainer: FakeTrainer) -> None:
    result = cli("status", "--json")
    assert result.code == exit_codes.OK
    status = result.json()
    assert status["state"] == "idle"
    assert status["session"] == trainer.session
    assert status["params"]["learning_rate"] == 0.001


def test_json_may_come_before_or_after_the_command(cli: Cli, trainer: FakeTrainer) -> None:
    assert cli("--json", "status").json() == cli("status", "--json").json()


def test_status_for_people_is_a_table(cli: Cli, trainer: FakeTrainer) -> None:
    result = cli("status")
    assert result.code == exit_codes.OK
    assert "idle" in result.out and "0 / 1000" in result.out and "learning_rate=0.001" in result.out


def test_describe_lists_params_with_aliases_and_values(cli: Cli, trainer: FakeTrainer) -> None:
    description = cli("describe", "--json").json()
    assert {p["name"]: p["aliases"] for p in description["params"]}["learning_rate"] == ["lr"]
    people = cli("describe")
    assert people.code == exit_codes.OK and "learning_rate" in people.out and "ops:" in people.out


def test_lifecycle_commands_report_the_new_state(cli: Cli, trainer: FakeTrainer) -> None:
    started = cli("start", "--json", "--param", "lr=0.01")
    assert started.code == exit_codes.OK
    assert started.json() == {"state": "running", "step": 0, "already": False}
    assert trainer.params["learning_rate"] == 0.01
    assert cli("start", "--json").json()["already"] is True
    assert cli("pause", "--json").json()["state"] == "paused"
    assert cli("resume", "--json").json()["state"] == "running"
    stopped = cli("stop")
    assert stopped.code == exit_codes.OK and "stop: state idle" in stopped.out


def test_set_accepts_names_and_aliases_and_reports_when_they_apply(cli: Cli, trainer: FakeTrainer) -> None:
    result = cli("set", "--json", "lr", "0.05", "batch_size", "256")
    assert result.code == exit_codes.OK
    body = result.json()
    assert body["params"] == {"learning_rate": 0.05, "batch_size": 256}
    assert body["applies"] == {"learning_rate": "next_step", "batch_size": "next_epoch"}
    assert cli("params", "--json").json()["params"]["batch_size"] == 256


def test_checkpoint_and_eval_say_when_they_are_scheduled(cli: Cli, trainer: FakeTrainer) -> None:
    assert cli("checkpoint", "--json").json() == {"scheduled_at_step": 1}
    assert cli("eval", "--json").json() == {"scheduled_at_step": 1}
    assert "evaluate scheduled at step 1" in cli("evaluate").out


def test_history_pages_through_published_messages(cli: Cli, trainer: FakeTrainer) -> None:
    trainer.advance(5)
    page = cli("history", "--json", "--since", "2", "--limit", "2").json()
    assert [m["seq"] for m in page["messages"]] == [3, 4]
    assert page["session"] == trainer.session and page["last_seq"] == 5
    assert "metrics.steps" in cli("history", "--with-metrics").out


def test_history_shows_events_and_leaves_metrics_for_with_metrics(cli: Cli, trainer: FakeTrainer) -> None:
    trainer.advance(3)
    trainer.event("param_changed", old=0.001, new=0.01, applies_at_step=4)
    trainer.advance(2)  # waits until all are numbered, the event among them
    events = cli("history").out
    assert "metrics.steps" not in events and "event.param_changed" in events
    everything = cli("history", "--with-metrics").out
    assert "metrics.steps" in everything and "event.param_changed" in everything


def test_a_refused_request_exits_4_with_code_and_message(cli: Cli, trainer: FakeTrainer) -> None:
    result = cli("resume")
    assert result.code == exit_codes.REFUSED
    assert "invalid_state" in result.err and "cannot resume while idle" in result.err
    as_json = cli("set", "--json", "lr", "banana")
    assert as_json.code == exit_codes.REFUSED
    assert as_json.json()["error"]["code"] == "invalid_params"
    assert "banana" in as_json.json()["error"]["message"]
    assert trainer.params["learning_rate"] == 0.001  # all or nothing


def test_no_trainer_exits_3_within_the_timeout_bound(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("status", "--json", "--timeout-ms", "100", "--retries", "1")
    elapsed = time.monotonic() - started
    assert result.code == exit_codes.UNAVAILABLE
    assert result.json()["error"]["code"] == "unavailable"
    assert elapsed < 0.2 + 1.0  # timeout_ms * attempts, plus start-up slack


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["set", "lr"],
        ["start", "--param", "lr"],
        ["history", "--since", "x"],
        ["status", "--timeout-ms", "0"],
        ["watch", "--for", "-1"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv).code == exit_codes.USAGE


def test_the_connection_file_is_used_when_no_endpoints_are_given(
    cli: Cli, trainer: FakeTrainer, connection_file: Callable[[Path], Path], tmp_path: Path
) -> None:
    path = connection_file(tmp_path / "conn.json")
    result = cli("--connection", str(path), "status", "--json", connect=False)
    assert result.code == exit_codes.OK and result.json()["session"] == trainer.session


def test_the_instance_connection_file_is_found_by_default(
    cli: Cli,
    trainer: FakeTrainer,
    connection_file: Callable[[Path], Path],
    ipc_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection_file(ipc_dir / "lab.json")
    monkeypatch.setenv("CHATTRAIN_INSTANCE", "lab")
    assert cli("status", "--json", connect=False).json()["session"] == trainer.session


def test_endpoints_come_from_the_environment(
    cli: Cli, trainer: FakeTrainer, endpoints: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATTRAIN_CONTROL", endpoints[0])
    monkeypatch.setenv("CHATTRAIN_METRICS", endpoints[1])
    assert cli("status", "--json", connect=False).code == exit_codes.OK


def test_a_missing_connection_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("--connection", str(tmp_path / "nope.json"), "status", "--json", connect=False)
    assert result.code == exit_codes.USAGE
    assert json.loads(result.out)["error"]["code"] == "usage"


def test_curve_uses_the_server_key_from_the_connection_file(
    cli: Cli, endpoints: tuple[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    generate_keypair(keys, "server")
    generate_keypair(keys / "clients", "me")
    curve = ServerCurve.from_files(keys / "server.key_secret", keys / "clients")
    handlers = {"status": lambda args: {"state": "idle"}}
    server = ControlServer(endpoints[0], handlers, session="s1", curve=curve)
    server.start()
    try:
        path = tmp_path / "conn.json"
        ConnectionInfo(
            *endpoints, run_id="r", session="s1", protocol_version=1, server_public_key=curve.public_key()
        ).write(path)
        secret = str(keys / "clients" / "me.key_secret")
        conn = ("--connection", str(path))
        result = cli(*conn, "--curve-secret-key", secret, "status", "--json", connect=False)
        assert result.code == exit_codes.OK and result.json()["state"] == "idle"
        _, stranger = generate_keypair(tmp_path / "strangers", "stranger")
        quick = ("--timeout-ms", "200", "--retries", "0")
        refused = cli(*conn, "--curve-secret-key", str(stranger), *quick, "status", connect=False)
        assert refused.code == exit_codes.UNAVAILABLE and "refused this client's CurveZMQ key" in refused.err
        keyless = cli(*conn, "status", connect=False)  # the file has no client key: nothing to try
        assert keyless.code == exit_codes.USAGE and "has no client key" in keyless.err
    finally:
        server.close()


def test_a_public_key_given_as_the_secret_key_exits_2_at_once_and_never_hangs(
    endpoints: tuple[str, str], tmp_path: Path
) -> None:
    public, _ = generate_keypair(tmp_path / "keys", "server")
    command = [sys.executable, "-m", "trainctl", "--control", endpoints[0], "--metrics", endpoints[1],
               "--curve-secret-key", str(public), "--curve-server-key", str(public), "status"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == exit_codes.USAGE
    expected = f"trainctl: {public} holds no secret key (is it the public .key file?)"
    assert done.stderr.strip().splitlines() == [expected]


def test_a_runtime_dir_others_can_write_exits_2_with_one_line(
    cli: Cli, ipc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = ipc_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(shared))
    result = cli("status", connect=False)
    assert result.code == exit_codes.USAGE
    assert result.err.startswith("trainctl: refusing runtime directory") and result.err.count("\n") == 1
