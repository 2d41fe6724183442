"""The trainer's network and key options: loopback by default, CurveZMQ always (generated keys in
its 0600 connection file, or given key files), configuration errors exit 2 with one line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import (
    ClientCurve,
    ConnectionInfo,
    ControlClient,
    TrainerUnavailable,
    generate_keypair,
    resolve_connection,
)


def test_a_wildcard_bind_without_allow_remote_exits_with_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--control", "tcp://0.0.0.0:0", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "allow-remote" in result.stderr


def test_curve_keys_admit_listed_clients_only(tmp_path: Path, free_tcp_endpoints: tuple[str, str]) -> None:
    keys = tmp_path / "keys"
    generate_keypair(keys, "server")
    generate_keypair(keys / "clients", "phone")
    generate_keypair(tmp_path / "strangers", "stranger")
    control, metrics = free_tcp_endpoints
    connection = tmp_path / "connection.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "--control", control, "--metrics", metrics,
         "--run-dir", str(tmp_path / "run"), "--synthetic-data", "64", "--quiet",
         "--connection-file", str(connection),
         "--curve-server-secret", str(keys / "server.key_secret"), "--curve-clients", str(keys / "clients")],
    )  # fmt: skip
    try:
        phone = ClientCurve.from_files(keys / "clients" / "phone.key_secret", keys / "server.key")
        with ControlClient(control, curve=phone, timeout_ms=3000, retries=5) as client:
            assert client.status()["state"] in ("loading", "idle")
        public_key = (keys / "server.key").read_text().split('public-key = "')[1].split('"')[0]
        assert ConnectionInfo.read(connection).server_public_key == public_key
        stranger = ClientCurve.from_files(tmp_path / "strangers" / "stranger.key_secret", keys / "server.key")
        with (
            ControlClient(control, curve=stranger, timeout_ms=300, retries=1) as client,
            pytest.raises(TrainerUnavailable),
        ):
            client.status()
        local = resolve_connection(connection_file=connection)  # the file's own client key
        with local.control_client(timeout_ms=3000, retries=5) as client:
            assert client.status()["state"] in ("loading", "idle")
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("bind", ["loopback", "all interfaces with --allow-remote"])
def test_with_no_key_options_only_the_connection_files_key_gets_in(
    tmp_path: Path, free_tcp_endpoints: tuple[str, str], bind: str
) -> None:
    control, metrics = free_tcp_endpoints
    served = [control, metrics]
    if bind != "loopback":
        served = [e.replace("127.0.0.1", "0.0.0.0") for e in served] + ["--allow-remote"]
    connection = tmp_path / "connection.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "--control", served[0], "--metrics", served[1], *served[2:],
         "--run-dir", str(tmp_path / "run"), "--synthetic-data", "64", "--quiet",
         "--connection-file", str(connection)],
        env={**os.environ, "CHATTRAIN_RUNTIME_DIR": str(tmp_path / "rt")},
    )  # fmt: skip
    try:
        local = resolve_connection(control=control, metrics=metrics, connection_file=connection)
        with local.control_client(timeout_ms=3000, retries=5) as client:
            assert client.status()["state"] in ("loading", "idle")
        assert stat.S_IMODE(connection.stat().st_mode) == 0o600
        assert ConnectionInfo.read(connection).client_secret_key is not None
        with (
            ControlClient(control, timeout_ms=300, retries=1) as plain,  # another local user
            pytest.raises(TrainerUnavailable),
        ):
            plain.status()
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--curve-clients", "*"], "--curve-clients '*' would admit any key"),
        (["--curve-server-secret", "/nonexistent/server.key_secret"], "cannot read the CurveZMQ secret key"),
        (["--curve-clients", "/nonexistent/clients"], "directory /nonexistent/clients does not exist"),
        (["--heartbeat-interval", "x"], "argument --heartbeat-interval: 'x': not a number"),
        (["--max-steps", "0"], "--max-steps (CHATTRAIN_MAX_STEPS) must be >= 1"),
        (["--insecure-no-curve", "--curve-clients", "/tmp"], "contradicts"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    result = run_trainer(tmp_path, options)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_runtime_dir_others_can_write_exits_2(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = run_trainer(tmp_path, [], runtime=shared)
    assert result.returncode == 2 and "refusing runtime directory" in result.stderr.strip().splitlines()[-1]


def run_trainer(
    tmp_path: Path, options: list[str], runtime: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHATTRAIN_RUNTIME_DIR": str(runtime or tmp_path / "rt")}
    command = [sys.executable, "-m", "trainer", "--run-dir", str(tmp_path / "run"), "--quiet", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
