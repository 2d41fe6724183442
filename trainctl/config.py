"""Where trainctl connects, and with which keys: its options, handed to protocol's connection factory.

`protocol.connect.resolve_connection` applies the rules (explicit endpoints, then CHATTRAIN_CONTROL /
CHATTRAIN_METRICS, then the trainer's connection file, then the instance's defaults; CurveZMQ keys
from explicit key files, else the connection file, else the instance's key file), the same rules for
the control client and the feed subscriber, and the same as the sidecar's.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from protocol import Connection, ConnectionConfigError, ControlClient, Subscriber, resolve_connection

ENV_TIMEOUT_MS = "CHATTRAIN_REQUEST_TIMEOUT_MS"
ENV_RETRIES = "CHATTRAIN_RETRIES"
ENV_CURVE_SECRET = "CHATTRAIN_CURVE_SECRET_KEY"
ENV_CURVE_SERVER_KEY = "CHATTRAIN_CURVE_SERVER_KEY"
ENV_INSECURE = "CHATTRAIN_INSECURE_NO_CURVE"
DEFAULT_TIMEOUT_MS = 1500
DEFAULT_RETRIES = 2


class ConfigError(ValueError):
    """The options or the connection file do not make a usable configuration (exit code 2)."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything a command needs to reach one trainer."""

    connection: Connection
    timeout_ms: int
    retries: int

    @property
    def control(self) -> str:
        return self.connection.control

    @property
    def metrics(self) -> str:
        return self.connection.metrics

    @property
    def source(self) -> str:  # where the endpoints came from, for messages
        return self.connection.source

    def client(self) -> ControlClient:
        return self.connection.control_client(timeout_ms=self.timeout_ms, retries=self.retries)

    def subscriber(self, client: ControlClient) -> Subscriber:
        return self.connection.subscriber(client)


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
    group.add_argument(
        "--insecure-no-curve",
        action="store_true",
        default=default(False),
        help=f"INSECURE: connect without CurveZMQ, to a trainer started so (env {ENV_INSECURE})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON document (watch: one JSON line per event)",
    )


def request_options(args: argparse.Namespace) -> tuple[int, int]:
    """(timeout_ms, retries) from the options and environment; raises ConfigError."""
    timeout_ms = _int_option(args.timeout_ms, ENV_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, minimum=1)
    return timeout_ms, _int_option(args.retries, ENV_RETRIES, DEFAULT_RETRIES, minimum=0)


def build_config(args: argparse.Namespace) -> ClientConfig:
    """Resolve the connection options through protocol's connection factory; raises ConfigError."""
    timeout_ms, retries = request_options(args)
    secret = args.curve_secret_key or os.environ.get(ENV_CURVE_SECRET)
    server_key = args.curve_server_key or os.environ.get(ENV_CURVE_SERVER_KEY)
    try:
        connection = resolve_connection(
            control=args.control,
            metrics=args.metrics,
            connection_file=Path(args.connection) if args.connection else None,
            instance=args.instance,
            curve_secret_key=Path(secret) if secret else None,
            curve_server_key=Path(server_key) if server_key else None,
            insecure_no_curve=args.insecure_no_curve or _true(os.environ.get(ENV_INSECURE)),
        )
    except (ConnectionConfigError, OSError) as exc:  # OSError: a refused runtime directory
        raise ConfigError(str(exc)) from None
    return ClientConfig(connection, timeout_ms, retries)


def _true(text: str | None) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes", "on"}


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
