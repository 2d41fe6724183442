"""The connection factory: CurveZMQ with zero configuration, the same keys for the control client
and the feed subscriber, keys from the 0600 connection file, unsafe key places refused."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.trainer import FakeTrainer
from protocol import (
    ConnectionConfigError,
    ConnectionInfo,
    ControlClient,
    ControlServer,
    Data,
    Snapshot,
    TrainerUnavailable,
    UnsafeDirectory,
    resolve_connection,
    server_curve,
)
from protocol.connect import instance_keys, keys_path
from tests.protocol.support import CallLog

WAIT_S = 10.0


@pytest.fixture
def runtime(ipc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's private runtime directory, with no CHATTRAIN_* of the developer's."""
    for name in ("CONTROL", "METRICS", "CONNECTION", "INSTANCE"):
        monkeypatch.delenv(f"CHATTRAIN_{name}", raising=False)
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(ipc_dir))
    return ipc_dir


@pytest.fixture
def trainer_side(runtime: Path, closing: Callable[[Any], Any]) -> FakeTrainer:
    """A fake trainer started as the real one starts: keys by the factory's rules, connection file."""
    connection = resolve_connection()  # the endpoints only; the keys are the server's part
    curve, client_keys = server_curve(runtime / "default.json")
    trainer = closing(FakeTrainer(connection.control, connection.metrics, curve=curve).start())
    ConnectionInfo(
        connection.control, connection.metrics, "run", trainer.session, 1,
        server_public_key=curve.public_key(),
        client_public_key=client_keys.public, client_secret_key=client_keys.secret,
    ).write(runtime / "default.json")  # fmt: skip
    return trainer


def test_a_client_started_before_the_trainer_shares_its_generated_keys(
    runtime: Path, closing: Callable[[Any], Any]
) -> None:
    early = resolve_connection()  # no connection file yet: the instance's key file is made
    assert early.curve is not None
    assert stat.S_IMODE(keys_path(runtime / "default.json").stat().st_mode) == 0o600
    curve, _ = server_curve(runtime / "default.json")
    server = closing(ControlServer(early.control, {"status": CallLog()}, session="s1", curve=curve))
    server.start()
    assert closing(early.control_client(timeout_ms=2000)).status() == {"n": 1}


def test_only_the_connection_files_key_is_admitted_on_control_and_feed(
    trainer_side: FakeTrainer, runtime: Path, closing: Callable[[Any], Any]
) -> None:
    connection = resolve_connection()
    assert connection.source == f"connection file {runtime / 'default.json'}"
    client = closing(connection.control_client(timeout_ms=2000))
    assert client.status()["state"] == "idle"
    subscriber = closing(connection.subscriber(closing(connection.control_client(timeout_ms=2000))))
    deadline = time.monotonic() + WAIT_S
    while not any(isinstance(e, Snapshot) for e in subscriber.poll(100)):
        assert time.monotonic() < deadline, "the feed never synced"
    trainer_side.advance(3)
    steps: list[int] = []
    while len(steps) < 3 and time.monotonic() < deadline:
        steps += [e.message.body["step"] for e in subscriber.poll(100) if isinstance(e, Data)]
    assert steps == [1, 2, 3]  # the feed subscriber uses the keys too
    plain = closing(ControlClient(connection.control, timeout_ms=300, retries=0))
    with pytest.raises(TrainerUnavailable):
        plain.status()  # another local user, without the 0600 file, gets nothing


def test_the_connection_file_alone_carries_the_keys_elsewhere(
    trainer_side: FakeTrainer,
    runtime: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    closing: Callable[[Any], Any],
) -> None:
    copied = tmp_path / "copied.json"
    copied.write_bytes((runtime / "default.json").read_bytes())
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(tmp_path / "elsewhere"))  # no key file there
    connection = resolve_connection(connection_file=copied)
    assert closing(connection.control_client(timeout_ms=2000)).status()["state"] == "idle"


def test_a_trainer_without_curve_says_so_in_its_connection_file(runtime: Path) -> None:
    ConnectionInfo("ipc:///c", "ipc:///m", "run", "s1", 1).write(runtime / "default.json")
    assert resolve_connection().curve is None
    assert resolve_connection(insecure_no_curve=True).curve is None


def test_keys_in_a_place_others_can_write_or_read_are_refused(runtime: Path, tmp_path: Path) -> None:
    instance_keys(runtime / "default.json")
    keys_path(runtime / "default.json").chmod(0o644)
    with pytest.raises(UnsafeDirectory, match="mode 0600"):
        instance_keys(runtime / "default.json")
    with pytest.raises(ConnectionConfigError, match="mode 0600"):
        resolve_connection()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="writable by nobody else"):
        instance_keys(shared / "default.json")


def test_a_missing_explicit_connection_file_or_half_the_key_options_are_refused(
    runtime: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        resolve_connection(connection_file=tmp_path / "nope.json")
    with pytest.raises(ConnectionConfigError, match="needs --curve-secret-key"):
        resolve_connection(curve_server_key=tmp_path / "server.key")
