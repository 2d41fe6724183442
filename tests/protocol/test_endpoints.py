"""Where sockets live: loopback unless told otherwise, one server per endpoint, private files."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol import (
    ConnectionInfo,
    ControlClient,
    ControlServer,
    EndpointInUse,
    Publisher,
    check_bind_address,
    default_connection_file,
    default_endpoints,
    default_runtime_dir,
)
from tests.protocol.support import CallLog

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:5555",
        "tcp://127.3.4.5:5555",
        "tcp://localhost:5555",
        "tcp://[::1]:5555",
        "ipc:///tmp/x/control",
        "inproc://control",
    ],
)
def test_loopback_and_local_endpoints_are_allowed(endpoint: str) -> None:
    check_bind_address(endpoint)


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:5555",
        "tcp://*:5555",
        "tcp://[::]:5555",
        "tcp://192.168.1.10:5555",
        "tcp://10.0.0.1:5555",
        "tcp://eth0:5555",
        "tcp://example.com:5555",
    ],
)
def test_wildcard_and_network_addresses_are_refused_unless_allowed(endpoint: str) -> None:
    with pytest.raises(ValueError, match="allow-remote"):
        check_bind_address(endpoint)
    check_bind_address(endpoint, allow_remote=True)


@pytest.mark.parametrize("endpoint", ["udp://127.0.0.1:5555", "127.0.0.1:5555", "pgm://eth0;239.1.1.1:5555"])
def test_unknown_transports_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="unsupported endpoint"):
        check_bind_address(endpoint)


def test_servers_refuse_to_bind_a_network_address() -> None:
    with pytest.raises(ValueError):
        ControlServer("tcp://0.0.0.0:0", {}, session="s").start()
    with pytest.raises(ValueError):
        Publisher("tcp://0.0.0.0:0", session="s").start()


def test_a_second_server_on_the_same_ipc_endpoint_is_refused_and_the_first_keeps_serving(
    endpoint: Callable[[str], str], serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    control = endpoint("control")
    status = CallLog()
    serve(control, {"status": status})
    with pytest.raises(EndpointInUse) as raised:
        serve(control, {"status": CallLog()})
    assert control in str(raised.value)
    assert "already served by process" in str(raised.value)
    assert client(control).status() == {"n": 1}


def test_a_second_server_in_another_process_is_refused(
    endpoint: Callable[[str], str], serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    control = endpoint("control")
    serve(control, {"status": CallLog()})
    code = (
        "import sys; from protocol import ControlServer, EndpointInUse\n"
        "try:\n    ControlServer(sys.argv[1], {}, session='x').start()\n"
        "except EndpointInUse as exc:\n    print(exc); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, control], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 3, result.stderr
    assert "already served by process" in result.stdout
    assert client(control).status() == {"n": 1}


def test_a_second_publisher_on_the_same_ipc_endpoint_is_refused(endpoint: Callable[[str], str]) -> None:
    metrics = endpoint("metrics")
    first = Publisher(metrics, session="a")
    first.start()
    try:
        with pytest.raises(EndpointInUse):
            Publisher(metrics, session="b").start()
    finally:
        first.close()


def test_an_ipc_endpoint_is_free_again_after_close(
    endpoint: Callable[[str], str], client: Callable[..., ControlClient]
) -> None:
    control = endpoint("control")
    first = ControlServer(control, {"status": CallLog()}, session="a")
    first.start()
    first.close()
    second = ControlServer(control, {"status": lambda args: {"who": "second"}}, session="b")
    second.start()
    try:
        assert client(control).status() == {"who": "second"}
    finally:
        second.close()


def test_a_second_server_on_the_same_tcp_port_is_refused(
    free_tcp_endpoint: Callable[[], str],
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    control = free_tcp_endpoint()
    serve(control, {"status": CallLog()})
    with pytest.raises(EndpointInUse, match="already in use"):
        serve(control, {})
    assert client(control).status() == {"n": 1}


def test_connection_info_is_written_0600_and_round_trips(ipc_dir: Path) -> None:
    info = ConnectionInfo(
        control="ipc:///run/x.control",
        metrics="tcp://127.0.0.1:5556",
        run_id="run-1",
        session="abc123",
        protocol_version=1,
        server_public_key="pk",
        pid=1234,
    )
    path = ipc_dir / "nested" / "default.json"
    info.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ConnectionInfo.read(path) == info
    replaced = ConnectionInfo("ipc:///a", "ipc:///b", "run-2", "def", 1)
    replaced.write(path)
    assert ConnectionInfo.read(path) == replaced
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in path.parent.iterdir()] == ["default.json"]


def test_connection_info_ignores_unknown_keys(ipc_dir: Path) -> None:
    path = ipc_dir / "c.json"
    path.write_text(
        '{"control": "c", "metrics": "m", "run_id": "r", "session": "s", "protocol_version": 1, "new": 5}'
    )
    assert ConnectionInfo.read(path) == ConnectionInfo("c", "m", "r", "s", 1)


def test_default_runtime_dir_is_private(ipc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATTRAIN_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(ipc_dir))
    path = default_runtime_dir()
    assert path == ipc_dir / "chattrain"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    path.chmod(0o755)
    # An existing directory that is not private is refused, never chmod-ed behind the user's back.
    with pytest.raises(PermissionError, match="0700"):
        default_runtime_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_default_runtime_dir_without_xdg_is_per_user(monkeypatch: pytest.MonkeyPatch, ipc_dir: Path) -> None:
    monkeypatch.delenv("CHATTRAIN_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(ipc_dir))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = default_runtime_dir()
    assert path.name.startswith("chattrain-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_default_endpoints_and_connection_file_follow_the_instance_and_env(
    ipc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CHATTRAIN_CONTROL", "CHATTRAIN_METRICS", "CHATTRAIN_CONNECTION", "CHATTRAIN_INSTANCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(ipc_dir / "rt"))
    assert default_endpoints("exp1") == (
        f"ipc://{ipc_dir}/rt/exp1.control",
        f"ipc://{ipc_dir}/rt/exp1.metrics",
    )
    monkeypatch.setenv("CHATTRAIN_INSTANCE", "exp2")
    assert default_endpoints()[0].endswith("/exp2.control")
    assert default_connection_file() == ipc_dir / "rt" / "exp2.json"
    monkeypatch.setenv("CHATTRAIN_CONTROL", "tcp://127.0.0.1:7000")
    monkeypatch.setenv("CHATTRAIN_CONNECTION", "/elsewhere/c.json")
    assert default_endpoints()[0] == "tcp://127.0.0.1:7000"
    assert default_connection_file() == Path("/elsewhere/c.json")
