"""Where trainctl connects, and with which keys: its options, handed to protocol's connection factory.

`protocol.connect.resolve_connection` applies the rules (explicit endpoints, then CHATTRAIN_CONTROL /
CHATTRAIN_METRICS, then the trainer's connection file, then the instance's defaults; CurveZMQ keys
from explicit key files, else the connection file, else the instance's key file), the same rules for
the control client and the feed subscriber, and the same as the sidecar's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from protocol import Connection, ConnectionConfigError, ControlClient, Subscriber
from protocol.connect import CLIENT_OPTIONS, connection_from_options
from protocol.options import Option, add_options, resolve_options

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


OPTIONS: tuple[Option, ...] = (
    *CLIENT_OPTIONS,
    Option(
        "--timeout-ms",
        "REQUEST_TIMEOUT_MS",
        f"per-attempt reply timeout (default {DEFAULT_TIMEOUT_MS})",
        type=int,
        minimum=1,
        default=DEFAULT_TIMEOUT_MS,
    ),
    Option(
        "--retries",
        "RETRIES",
        f"attempts after the first (default {DEFAULT_RETRIES})",
        type=int,
        minimum=0,
        default=DEFAULT_RETRIES,
    ),
)


def add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options; on subcommands (`suppress`) they only override what was given before."""
    add_options(parser.add_argument_group("connection"), OPTIONS, suppress=suppress)
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output: one JSON document (watch: one JSON line per event)",
    )


def request_options(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(timeout_ms, retries) from the options and environment; raises ConfigError."""
    values = resolve_options(OPTIONS, args, environ, _fail)
    return values["timeout_ms"], values["retries"]


def build_config(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ClientConfig:
    """Resolve the connection options through protocol's connection factory; raises ConfigError."""
    values = resolve_options(OPTIONS, args, environ, _fail)
    try:
        connection = connection_from_options(values, environ)
    except ConnectionConfigError as exc:
        raise ConfigError(str(exc)) from None
    return ClientConfig(connection, values["timeout_ms"], values["retries"])


def _fail(message: str) -> NoReturn:
    raise ConfigError(message)
