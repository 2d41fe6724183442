"""Where trainctl connects: flags, then environment variables, then the connection file, then defaults.

Explicit endpoints (`--control` / `--metrics`, or CHATTRAIN_CONTROL / CHATTRAIN_METRICS) win; without
them the trainer's connection file is used when it exists (`--connection`, CHATTRAIN_CONNECTION, or the
instance's default path); otherwise the instance's default ipc endpoints.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from protocol import (
    ClientCurve,
    ConnectionInfo,
    ControlClient,
    default_connection_file,
    default_endpoints,
)

ENV_TIMEOUT_MS = "CHATTRAIN_REQUEST_TIMEOUT_MS"
ENV_RETRIES = "CHATTRAIN_RETRIES"
ENV_CURVE_SECRET = "CHATTRAIN_CURVE_SECRET_KEY"
ENV_CURVE_SERVER_KEY = "CHATTRAIN_CURVE_SERVER_KEY"
DEFAULT_TIMEOUT_MS = 1500
DEFAULT_RETRIES = 2


class ConfigError(ValueError):
    """The options or the connection file do not make a usable configuration (exit code 2)."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything a command needs to reach one trainer."""

    control: str
    metrics: str
    timeout_ms: int
    retries: int
    curve: ClientCurve | None
    source: str  # where the endpoints came from, for messages

    def client(self) -> ControlClient:
        return ControlClient(self.control, timeout_ms=self.timeout_ms, retries=self.retries, curve=self.curve)


def add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options; on subcommands (`suppress`) they only override what was given before."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--control",
        default=default(None),
        metavar="ENDPOINT",
        help="control endpoint (env CHATTRAIN_CONTROL)",
    )
    group.add_argument(
        "--metrics",
        default=default(None),
        metavar="ENDPOINT",
        help="metrics endpoint (env CHATTRAIN_METRICS)",
    )
    group.add_argument(
        "--connection",
        default=default(None),
        metavar="FILE",
        help="the trainer's connection file (env CHATTRAIN_CONNECTION)",
    )
    group.add_argument("--instance", default=default(None), help="instance name (env CHATTRAIN_INSTANCE)")
    group.add_argument(
        "--timeout-ms",
        type=int,
        default=default(None),
        help=f"per-attempt reply timeout (env {ENV_TIMEOUT_MS}, default {DEFAULT_TIMEOUT_MS})",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=default(None),
        help=f"attempts after the first (env {ENV_RETRIES}, default {DEFAULT_RETRIES})",
    )
    group.add_argument(
        "--curve-secret-key",
        default=default(None),
        metavar="FILE",
        help=f"this client's CurveZMQ secret key file (env {ENV_CURVE_SECRET})",
    )
    group.add_argument(
        "--curve-server-key",
        default=default(None),
        metavar="FILE",
        help=f"the trainer's CurveZMQ public key file (env {ENV_CURVE_SERVER_KEY})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON document (watch: one JSON line per event)",
    )


def build_config(args: argparse.Namespace) -> ClientConfig:
    """Resolve the connection options; raises ConfigError."""
    timeout_ms = _int_option(args.timeout_ms, ENV_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, minimum=1)
    retries = _int_option(args.retries, ENV_RETRIES, DEFAULT_RETRIES, minimum=0)
    control = args.control or os.environ.get("CHATTRAIN_CONTROL")
    metrics = args.metrics or os.environ.get("CHATTRAIN_METRICS")
    info, source = None, "explicit endpoints"
    if not (control and metrics):
        info, source = _read_connection(args)
    if info is not None:
        control, metrics = control or info.control, metrics or info.metrics
    else:
        default_control, default_metrics = default_endpoints(args.instance)
        control, metrics = control or default_control, metrics or default_metrics
    curve = _curve(args, info)
    return ClientConfig(control, metrics, timeout_ms, retries, curve, source)


def _read_connection(args: argparse.Namespace) -> tuple[ConnectionInfo | None, str]:
    explicit = args.connection or os.environ.get("CHATTRAIN_CONNECTION")
    path = Path(explicit) if explicit else default_connection_file(args.instance)
    if not path.exists():
        if explicit:
            raise ConfigError(f"connection file {path} does not exist")
        return None, f"default endpoints of instance {args.instance or 'default'}"
    try:
        return ConnectionInfo.read(path), f"connection file {path}"
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read connection file {path}: {exc}") from exc


def _curve(args: argparse.Namespace, info: ConnectionInfo | None) -> ClientCurve | None:
    secret = args.curve_secret_key or os.environ.get(ENV_CURVE_SECRET)
    server_key = args.curve_server_key or os.environ.get(ENV_CURVE_SERVER_KEY)
    if not secret:
        if server_key:
            raise ConfigError("--curve-server-key needs --curve-secret-key (this client's secret key file)")
        return None
    if not Path(secret).is_file():
        raise ConfigError(f"--curve-secret-key: no such key file {secret}")
    if server_key:
        if not Path(server_key).is_file():
            raise ConfigError(f"--curve-server-key: no such key file {server_key}")
        return ClientCurve(Path(secret), server_public_key_file=Path(server_key))
    if info is None or not info.server_public_key:
        raise ConfigError("--curve-secret-key needs --curve-server-key (or a connection file with the key)")
    return ClientCurve(Path(secret), server_public_key=info.server_public_key)


def _int_option(value: int | None, env: str, default: int, *, minimum: int) -> int:
    if value is None:
        text = os.environ.get(env)
        try:
            value = int(text) if text else default
        except ValueError:
            raise ConfigError(f"{env} must be a whole number, received {text!r}") from None
    if value < minimum:
        raise ConfigError(f"timeouts and retries must be >= {minimum}, received {value}")
    return value
