"""CurveZMQ: a server admits only the client keys it lists; key files are private."""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol import (
    ClientCurve,
    ControlClient,
    ControlServer,
    CurveKeyError,
    KeyPair,
    ServerCurve,
    TrainerUnavailable,
    generate_keypair,
)
from tests.protocol.support import CallLog


@pytest.fixture
def keys(ipc_dir: Path) -> dict[str, Path]:
    """Server, allowed client and stranger keypairs; only the allowed public key is listed."""
    server_public, server_secret = generate_keypair(ipc_dir / "server", "server")
    allowed_public, allowed_secret = generate_keypair(ipc_dir / "clients", "allowed")
    _, stranger_secret = generate_keypair(ipc_dir / "strangers", "stranger")
    listed = ipc_dir / "authorized"
    listed.mkdir(mode=0o700)
    shutil.copy(allowed_public, listed / allowed_public.name)
    return {
        "server_public": server_public,
        "server_secret": server_secret,
        "allowed_secret": allowed_secret,
        "stranger_secret": stranger_secret,
        "authorized": listed,
    }


def test_generated_secret_key_is_0600(keys: dict[str, Path]) -> None:
    for name in ("server_secret", "allowed_secret", "stranger_secret"):
        assert stat.S_IMODE(keys[name].stat().st_mode) == 0o600


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_curve_server_admits_a_listed_key_and_refuses_an_unknown_one(
    transport: str,
    keys: dict[str, Path],
    endpoint: Callable[[str], str],
    free_tcp_endpoint: Callable[[], str],
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    control = endpoint("control") if transport == "ipc" else free_tcp_endpoint()
    status = CallLog()
    server_curve = ServerCurve.from_files(keys["server_secret"], clients_dir=keys["authorized"])
    serve(control, {"status": status}, curve=server_curve)
    assert server_curve.public_key() == keys["server_public"].read_text().split('"')[1]

    allowed = ClientCurve.from_files(keys["allowed_secret"], keys["server_public"])
    assert client(control, curve=allowed, timeout_ms=2000).status() == {"n": 1}

    stranger = ClientCurve.from_files(keys["stranger_secret"], keys["server_public"])
    with pytest.raises(TrainerUnavailable):
        client(control, curve=stranger, timeout_ms=300, retries=1).status()

    plain = client(control, timeout_ms=300, retries=0)
    with pytest.raises(TrainerUnavailable):
        plain.status()
    assert status.count == 1
    # The server key as the connection file carries it (Z85 text) works like the key file.
    from_text = ClientCurve(allowed.keys, server_public_key=server_curve.public_key())
    assert client(control, curve=from_text, timeout_ms=2000).status() == {"n": 2}


def test_a_server_admits_the_keys_it_is_given_besides_its_clients_directory(
    keys: dict[str, Path],
    endpoint: Callable[[str], str],
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    local = KeyPair.generate()
    server = ServerCurve(KeyPair.generate(), frozenset({local.public}), clients_dir=keys["authorized"])
    serve(endpoint("control"), {"status": CallLog()}, curve=server)
    for pair in (local, KeyPair.from_secret_file(keys["allowed_secret"])):
        curve = ClientCurve(pair, server.public_key())
        assert "n" in client(endpoint("control"), curve=curve, timeout_ms=2000).status()
    stranger = ClientCurve(KeyPair.generate(), server.public_key())
    with pytest.raises(TrainerUnavailable):
        client(endpoint("control"), curve=stranger, timeout_ms=300, retries=0).status()


def test_a_public_key_file_given_as_the_secret_key_is_refused_before_any_socket(
    keys: dict[str, Path],
) -> None:
    with pytest.raises(CurveKeyError, match="holds no secret key"):
        ClientCurve.from_files(keys["server_public"], keys["server_public"])
    with pytest.raises(CurveKeyError, match="cannot read"):
        KeyPair.from_secret_file(keys["authorized"] / "missing.key_secret")
    with pytest.raises(CurveKeyError, match="not a CurveZMQ key"):
        ClientCurve(KeyPair.generate(), server_public_key="too short")
    with pytest.raises(CurveKeyError, match="does not belong"):
        KeyPair(KeyPair.generate().public, KeyPair.generate().secret)


def test_allow_any_client_key_is_refused(keys: dict[str, Path]) -> None:
    with pytest.raises(CurveKeyError, match="admits any key"):
        ServerCurve(KeyPair.generate(), clients_dir=Path("*"))


def test_a_refused_key_or_a_client_without_curve_is_told_at_once_not_after_its_budget(
    endpoint: Callable[[str], str],
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    server = ServerCurve(KeyPair.generate(), frozenset({KeyPair.generate().public}))
    serve(endpoint("control"), {"status": CallLog()}, curve=server)
    stranger = ClientCurve(KeyPair.generate(), server.public_key())
    for curve, reason in ((stranger, "refused this client's CurveZMQ key"), (None, "CurveZMQ")):
        began = time.monotonic()
        with pytest.raises(TrainerUnavailable, match=reason):
            client(endpoint("control"), curve=curve, timeout_ms=20_000, retries=2).status()
        # Within the first attempt of a 60 s budget (attempts are long so that a loaded machine's
        # slow ZAP answer still lands in the first one: 5.4 s was seen beside 4 CPU burners).
        assert time.monotonic() - began < 20.0


def test_a_wrong_server_key_is_named_as_a_likely_cause_when_the_request_times_out(
    endpoint: Callable[[str], str],
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    admitted = KeyPair.generate()
    serve(
        endpoint("control"),
        {"status": CallLog()},
        curve=ServerCurve(KeyPair.generate(), frozenset({admitted.public})),
    )
    wrong = ClientCurve(admitted, KeyPair.generate().public)
    with pytest.raises(TrainerUnavailable, match="a wrong server key"):
        # The budget must cover the failed handshake's report on a loaded machine.
        client(endpoint("control"), curve=wrong, timeout_ms=3000, retries=0).status()
