"""Where a client connects and with which keys: the one connection factory of every client.

CurveZMQ is on by default with no configuration, as jupyter_client protects its kernels with the
key in a 0600 connection file. The keys of an instance live in `<connection file>.keys` (0600
JSON beside the connection file, in the private runtime directory): a server key pair and one
client key pair. Whichever process of the instance needs them first creates them (the trainer,
or a sidecar started before it), and they stay, so a client keeps working across trainer
restarts. The trainer admits only that client key (plus an explicit clients directory) and
writes both into its connection file, which is what a client elsewhere is handed.

Resolution, the same for the control client and the feed subscriber (`Connection`):
endpoints: explicit > CHATTRAIN_CONTROL / CHATTRAIN_METRICS > connection file > defaults;
keys: explicit key files > the connection file's keys (none there: the trainer runs without
CurveZMQ) > the instance's key file; `insecure_no_curve` turns CurveZMQ off on both sides.
The connection file is read when it is named (flag or CHATTRAIN_CONNECTION) or when an endpoint
is missing; with both endpoints explicit, the keys are the instance's (beside the file's path).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from protocol.client import ControlClient
from protocol.endpoints import (
    ENV_CONNECTION,
    ENV_CONTROL,
    ENV_METRICS,
    ConnectionInfo,
    check_private_dir,
    check_private_file,
    default_connection_file,
    default_endpoints,
)
from protocol.options import Option
from protocol.security import ClientCurve, CurveKeyError, KeyPair, ServerCurve, load_public_key
from protocol.subscriber import Subscriber

KEYS_SUFFIX = ".keys"


class ConnectionConfigError(ValueError):
    """The options, a key file or the connection file make no usable connection (exit code 2)."""


@dataclass(frozen=True)
class InstanceKeys:
    """The keys of one trainer instance: the server's pair and the pair of its local clients."""

    server: KeyPair
    client: KeyPair


def keys_path(connection_file: Path) -> Path:
    return connection_file.with_name(connection_file.name.removesuffix(".json") + KEYS_SUFFIX)


def instance_keys(connection_file: Path) -> InstanceKeys:
    """The instance's keys beside `connection_file`, created (atomically, 0600) if missing."""
    path = keys_path(connection_file)
    check_private_dir(path.parent, "key directory")
    if not path.exists():
        _create_keys(path)
    check_private_file(path, "CurveZMQ key file")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return InstanceKeys(
            KeyPair(data["server_public_key"], data["server_secret_key"]),
            KeyPair(data["client_public_key"], data["client_secret_key"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectionConfigError(f"unusable CurveZMQ key file {path}: {exc}; delete it") from None


def _create_keys(path: Path) -> None:
    server, client = KeyPair.generate(), KeyPair.generate()
    data = {
        "server_public_key": server.public,
        "server_secret_key": server.secret,
        "client_public_key": client.public,
        "client_secret_key": client.secret,
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)
    try:
        os.link(temporary, path)  # fails if another process made them first: theirs win
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def server_curve(
    connection_file: Path, *, secret_key_file: Path | None = None, clients_dir: Path | None = None
) -> tuple[ServerCurve, KeyPair]:
    """The trainer's CurveZMQ setting and the client pair its connection file carries."""
    try:
        keys = instance_keys(connection_file)
        server = KeyPair.from_secret_file(secret_key_file) if secret_key_file else keys.server
        return ServerCurve(server, frozenset({keys.client.public}), clients_dir), keys.client
    except (CurveKeyError, OSError) as exc:
        raise ConnectionConfigError(str(exc)) from None


@dataclass(frozen=True)
class Connection:
    """One trainer's endpoints and the client keys for them; makes the clients of both."""

    control: str
    metrics: str
    curve: ClientCurve | None
    source: str = "explicit endpoints"  # where the endpoints came from, for messages

    def control_client(
        self,
        *,
        timeout_ms: int | None = None,
        retries: int | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> ControlClient:
        options: dict[str, Any] = {"curve": self.curve, "context": context}
        options.update({k: v for k, v in (("timeout_ms", timeout_ms), ("retries", retries)) if v is not None})
        return ControlClient(self.control, **options)

    def subscriber(self, control: ControlClient, **options: Any) -> Subscriber:
        """The feed, with the same keys as the control client (`options`: Subscriber's)."""
        return Subscriber(self.metrics, control, curve=self.curve, **options)


def resolve_connection(
    *,
    control: str | None = None,
    metrics: str | None = None,
    connection_file: Path | None = None,
    instance: str | None = None,
    curve_secret_key: Path | None = None,
    curve_server_key: Path | None = None,
    insecure_no_curve: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> Connection:
    """Apply the rules of the module docstring; raises ConnectionConfigError."""
    control = control or environ.get(ENV_CONTROL) or None
    metrics = metrics or environ.get(ENV_METRICS) or None
    explicit = connection_file or (Path(environ[ENV_CONNECTION]) if environ.get(ENV_CONNECTION) else None)
    path = explicit or default_connection_file(instance)
    info, source = None, "explicit endpoints"
    if explicit is not None or not (control and metrics):  # as for endpoints: the file only if needed
        info, source = _read_connection(path, must_exist=explicit is not None and not (control and metrics))
    if info is not None:
        control, metrics = control or info.control, metrics or info.metrics
    elif not (control and metrics):
        default_control, default_metrics = default_endpoints(instance)
        control, metrics = control or default_control, metrics or default_metrics
        source = f"default endpoints of instance {instance or 'default'}"
    try:
        curve = None if insecure_no_curve else _client_curve(path, info, curve_secret_key, curve_server_key)
    except (CurveKeyError, OSError) as exc:
        raise ConnectionConfigError(str(exc)) from None
    return Connection(control, metrics, curve, source)


def _read_connection(path: Path, *, must_exist: bool) -> tuple[ConnectionInfo | None, str]:
    if not path.exists():
        if must_exist:
            raise ConnectionConfigError(f"connection file {path} does not exist")
        return None, "explicit endpoints"
    try:
        return ConnectionInfo.read(path), f"connection file {path}"
    except (OSError, ValueError, TypeError) as exc:
        raise ConnectionConfigError(f"cannot read connection file {path}: {exc}") from None


def _client_curve(
    path: Path, info: ConnectionInfo | None, secret_file: Path | None, server_file: Path | None
) -> ClientCurve | None:
    if secret_file is not None:
        keys = KeyPair.from_secret_file(secret_file)
        if server_file is not None:
            return ClientCurve(keys, load_public_key(server_file))
        if info is None or not info.server_public_key:
            raise ConnectionConfigError(
                "--curve-secret-key needs --curve-server-key (or a connection file with the server key)"
            )
        return ClientCurve(keys, info.server_public_key)
    if server_file is not None:
        raise ConnectionConfigError("--curve-server-key needs --curve-secret-key (this client's secret key)")
    if info is not None:
        if not info.server_public_key:
            return None  # this trainer runs without CurveZMQ (--insecure-no-curve)
        if not (info.client_public_key and info.client_secret_key):
            raise ConnectionConfigError(f"connection file {path} has no client key: pass --curve-secret-key")
        return ClientCurve(KeyPair(info.client_public_key, info.client_secret_key), info.server_public_key)
    instance = instance_keys(path)
    return ClientCurve(instance.client, instance.server.public)


# The options by which a client (the sidecar, trainctl) says where its trainer is: one table, so
# both programs take the same flags and variables and apply the same rules.
CLIENT_OPTIONS: tuple[Option, ...] = (
    Option("--control", "CONTROL", "control endpoint", metavar="ENDPOINT"),
    Option("--metrics", "METRICS", "metrics endpoint", metavar="ENDPOINT"),
    Option("--connection", "CONNECTION", "the trainer's connection file", type=Path, metavar="FILE"),
    Option("--instance", "INSTANCE", "instance name (default endpoints and connection file)"),
    Option(
        "--curve-secret-key",
        "CURVE_SECRET_KEY",
        "CurveZMQ: this client's secret key file",
        type=Path,
        metavar="FILE",
    ),
    Option(
        "--curve-server-key",
        "CURVE_SERVER_KEY",
        "CurveZMQ: the trainer's public key file",
        type=Path,
        metavar="FILE",
    ),
    Option(
        "--insecure-no-curve",
        "INSECURE_NO_CURVE",
        "INSECURE: connect without CurveZMQ, to a trainer started so",
        type=None,
        default=False,
    ),
)


def connection_from_options(values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Connection:
    """The connection the resolved CLIENT_OPTIONS name; raises ConnectionConfigError.

    The variables were already applied by the option layer; `environ` only locates the runtime
    directory for the instance's defaults.
    """
    try:
        return resolve_connection(
            control=values["control"],
            metrics=values["metrics"],
            connection_file=values["connection"],
            instance=values["instance"],
            curve_secret_key=values["curve_secret_key"],
            curve_server_key=values["curve_server_key"],
            insecure_no_curve=bool(values["insecure_no_curve"]),
            environ=environ,
        )
    except OSError as exc:  # a refused runtime directory
        raise ConnectionConfigError(str(exc)) from None
