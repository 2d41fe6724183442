"""The trainer's network options: loopback by default, CurveZMQ when keys are given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol import ClientCurve, ConnectionInfo, ControlClient, TrainerUnavailable, generate_keypair


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
        phone = ClientCurve(keys / "clients" / "phone.key_secret", keys / "server.key")
        with ControlClient(control, curve=phone, timeout_ms=3000, retries=5) as client:
            assert client.status()["state"] in ("loading", "idle")
        public_key = (keys / "server.key").read_text().split('public-key = "')[1].split('"')[0]
        assert ConnectionInfo.read(connection).server_public_key == public_key
        stranger = ClientCurve(tmp_path / "strangers" / "stranger.key_secret", keys / "server.key")
        with (
            ControlClient(control, curve=stranger, timeout_ms=300, retries=1) as client,
            pytest.raises(TrainerUnavailable),
        ):
            client.status()
    finally:
        process.terminate()
        process.wait(timeout=60)
