"""The sidecar's configuration: one dataclass, built once in __main__ from flags and environment.

Every option has an environment variable (shown in --help); a flag wins over its variable.
Endpoints: --control/--metrics (CHATTRAIN_CONTROL / CHATTRAIN_METRICS), else the --connection
file (CHATTRAIN_CONNECTION), else the trainer's connection file for the instance when it
exists, else protocol's default ipc endpoints for the instance.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol import ConnectionInfo, default_connection_file, default_endpoints

DEFAULT_STATE_DIR = Path("state/sidecar")
DEFAULT_PROGRESS_INTERVAL_S = 60.0
BACKENDS = ("wechat", "console")


@dataclass(frozen=True)
class Config:
    backend: str
    control: str
    metrics: str
    state_dir: Path
    allow: tuple[str, ...] = ()
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S
    wechat_base_url: str | None = None
    request_timeout_ms: int = 1500
    request_retries: int = 2
    curve_secret_key: Path | None = None
    curve_server_key: Path | None = None
    log_level: str = "INFO"
    language: str = "auto"


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    def env(name: str, default: str | None = None) -> str | None:
        return environ.get(name) or default

    parser = argparse.ArgumentParser(
        prog="sidecar", description="Supervise and steer a chattrain trainer from WeChat."
    )
    add = parser.add_argument
    add(
        "--backend",
        choices=BACKENDS,
        default=env("CHATTRAIN_BACKEND", "wechat"),
        help="chat backend (env CHATTRAIN_BACKEND; default wechat)",
    )
    add("--control", default=env("CHATTRAIN_CONTROL"), help="control endpoint (env CHATTRAIN_CONTROL)")
    add("--metrics", default=env("CHATTRAIN_METRICS"), help="metrics endpoint (env CHATTRAIN_METRICS)")
    add(
        "--connection",
        type=Path,
        default=env("CHATTRAIN_CONNECTION"),
        help="trainer's connection file (env CHATTRAIN_CONNECTION)",
    )
    add("--instance", default=env("CHATTRAIN_INSTANCE"), help="instance name (env CHATTRAIN_INSTANCE)")
    add(
        "--state-dir",
        type=Path,
        default=env("CHATTRAIN_STATE_DIR", str(DEFAULT_STATE_DIR)),
        help="where the sidecar keeps its cursor and plots (env CHATTRAIN_STATE_DIR)",
    )
    add(
        "--allow",
        action="append",
        metavar="NAME",
        help="a contact (remark or nickname) who may send commands; repeatable "
        "(env CHATTRAIN_ALLOW, comma-separated)",
    )
    add(
        "--progress-interval",
        type=float,
        default=float(env("CHATTRAIN_PROGRESS_INTERVAL", str(DEFAULT_PROGRESS_INTERVAL_S)) or 0),
        help="seconds between progress messages at most (env CHATTRAIN_PROGRESS_INTERVAL)",
    )
    add(
        "--wechat-base-url",
        default=env("CHATTRAIN_WECHAT_BASE_URL"),
        help="web WeChat base URL, for a fake server in tests (env CHATTRAIN_WECHAT_BASE_URL)",
    )
    add(
        "--request-timeout-ms",
        type=int,
        default=int(env("CHATTRAIN_REQUEST_TIMEOUT_MS", "1500") or 0),
        help="control request timeout per attempt (env CHATTRAIN_REQUEST_TIMEOUT_MS)",
    )
    add(
        "--curve-secret-key",
        type=Path,
        default=env("CHATTRAIN_CURVE_SECRET_KEY"),
        help="CurveZMQ: this client's secret key file (env CHATTRAIN_CURVE_SECRET_KEY)",
    )
    add(
        "--curve-server-key",
        type=Path,
        default=env("CHATTRAIN_CURVE_SERVER_KEY"),
        help="CurveZMQ: the trainer's public key file (env CHATTRAIN_CURVE_SERVER_KEY)",
    )
    add(
        "--language",
        choices=("auto", "zh", "en"),
        default=env("CHATTRAIN_LANGUAGE", "auto"),
        help="reply language: auto follows each command's language (env CHATTRAIN_LANGUAGE)",
    )
    add(
        "--log-level",
        default=env("CHATTRAIN_LOG_LEVEL", "INFO"),
        help="logging level (env CHATTRAIN_LOG_LEVEL)",
    )
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if args.progress_interval < 0:
        parser.error(f"--progress-interval must be >= 0, got {args.progress_interval}")
    if (args.curve_secret_key is None) != (args.curve_server_key is None):
        parser.error("--curve-secret-key and --curve-server-key go together")
    control, metrics = _endpoints(args)
    allow = list(args.allow or [])
    if not args.allow and environ.get("CHATTRAIN_ALLOW"):
        allow = environ["CHATTRAIN_ALLOW"].split(",")
    return Config(
        backend=args.backend,
        control=control,
        metrics=metrics,
        state_dir=args.state_dir,
        allow=tuple(name.strip() for name in allow if name.strip()),
        progress_interval_s=args.progress_interval,
        wechat_base_url=args.wechat_base_url,
        request_timeout_ms=args.request_timeout_ms,
        curve_secret_key=args.curve_secret_key,
        curve_server_key=args.curve_server_key,
        log_level=args.log_level.upper(),
        language=args.language,
    )


def _endpoints(args: argparse.Namespace) -> tuple[str, str]:
    connection: Path | None = args.connection
    if connection is None and not (args.control and args.metrics):
        candidate = default_connection_file(args.instance)
        connection = candidate if candidate.exists() else None
    if connection is not None and not (args.control and args.metrics):
        info = ConnectionInfo.read(connection)
        return args.control or info.control, args.metrics or info.metrics
    control, metrics = default_endpoints(args.instance)
    return args.control or control, args.metrics or metrics
