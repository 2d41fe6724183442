"""The sidecar's configuration: one dataclass, built once in __main__ from flags and environment.

Every option has an environment variable (shown in --help); a flag wins over its variable.
Endpoints and CurveZMQ keys come from protocol's connection factory (`resolve_connection`), by the
same rules as trainctl's: --control/--metrics (CHATTRAIN_CONTROL / CHATTRAIN_METRICS), else the
--connection file (CHATTRAIN_CONNECTION) or the instance's, else the instance's default ipc
endpoints; keys from --curve-secret-key/--curve-server-key, else the connection file, else the
instance's key file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protocol import ClientCurve, Connection, ConnectionConfigError, resolve_connection
from sidecar.access import AccessPolicy
from sidecar.run_options import TRUE_WORDS, ConfigError, add_run_options, run_config
from sidecar.runs import DEFAULT_RUN_NAME, RunSource

DEFAULT_STATE_DIR = Path("state/sidecar")
DEFAULT_PROGRESS_INTERVAL_S = 60.0
BACKENDS = ("wechat", "console", "ilink")
EXIT_USAGE = 2


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
    curve: ClientCurve | None = None  # from protocol's connection factory, like the endpoints
    log_level: str = "INFO"
    # -- the iLink backend and the push fallback --
    ilink_base_url: str | None = None  # None: iLink's public API (sidecar/ilink_api.py)
    ilink_cdn_url: str | None = None
    ilink_window_s: float = 12 * 3600.0
    ilink_per_inbound: int = 10
    push_url: str | None = None
    push_format: str = "auto"
    language: str = "auto"
    # -- several runs (sidecar/runs.py) --
    name: str = DEFAULT_RUN_NAME  # the configured run's short name
    primary: bool = True  # False: only --run / --discover runs (no default instance)
    runs: tuple[RunSource, ...] = ()
    runtime_dir: Path | None = None  # set: follow every connection file in it (--discover)
    insecure_no_curve: bool = False  # for the runs discovered later

    def connection(self) -> Connection:
        """What the control client and the feed subscriber are both made from."""
        return Connection(self.control, self.metrics, self.curve)

    def sources(self) -> list[RunSource]:
        """The runs configured: the primary one (as with one run), then every --run."""
        primary = [RunSource(self.name, self.connection(), primary=True)] if self.primary else []
        return primary + list(self.runs)


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
        help="chat backend: ilink (official bot API), wechat (web WeChat via itchat) or console "
        "(env CHATTRAIN_BACKEND; default wechat)",
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
        help="a contact who may send commands: the remark name you gave them in WeChat (never a "
        "nickname, which anyone can choose), or id:ID; NAME=steer may also steer, NAME alone only "
        "read (status, params, history, plot); repeatable (env CHATTRAIN_ALLOW, comma-separated)",
    )
    add(
        "--progress-interval",
        type=float,
        # A string default goes through `type` too: a bad variable is a usage error (exit 2).
        default=env("CHATTRAIN_PROGRESS_INTERVAL", str(DEFAULT_PROGRESS_INTERVAL_S)),
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
        default=env("CHATTRAIN_REQUEST_TIMEOUT_MS", "1500"),
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
        "--insecure-no-curve",
        action="store_true",
        default=(env("CHATTRAIN_INSECURE_NO_CURVE") or "").lower() in TRUE_WORDS,
        help="INSECURE: connect without CurveZMQ, to a trainer started so (env CHATTRAIN_INSECURE_NO_CURVE)",
    )
    add(
        "--log-level",
        default=env("CHATTRAIN_LOG_LEVEL", "INFO"),
        help="logging level (env CHATTRAIN_LOG_LEVEL)",
    )
    add_run_options(add, env)
    _add_ilink_options(add, env)
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """The configuration; a bad value exits 2: argparse's usage error for a malformed option, one
    line (as trainctl's) for a connection that cannot be made."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    try:
        return _config(parser, args, environ)
    except ConfigError as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    if args.progress_interval < 0:
        parser.error(f"--progress-interval must be >= 0, got {args.progress_interval}")
    if args.request_timeout_ms < 1:
        parser.error(f"--request-timeout-ms must be >= 1, got {args.request_timeout_ms}")
    try:
        connection = resolve_connection(
            control=args.control,
            metrics=args.metrics,
            connection_file=args.connection,
            instance=args.instance,
            curve_secret_key=args.curve_secret_key,
            curve_server_key=args.curve_server_key,
            insecure_no_curve=args.insecure_no_curve,
            environ=environ,
        )
    except (ConnectionConfigError, OSError) as exc:  # OSError: a refused runtime directory
        raise ConfigError(str(exc)) from None
    allow = _allow_list(parser, args, environ)
    runs = run_config(args, environ)
    return Config(
        backend=args.backend,
        control=connection.control,
        metrics=connection.metrics,
        state_dir=args.state_dir,
        allow=allow,
        progress_interval_s=args.progress_interval,
        wechat_base_url=args.wechat_base_url,
        request_timeout_ms=args.request_timeout_ms,
        curve=connection.curve,
        log_level=args.log_level.upper(),
        language=args.language,
        **_ilink_config(args, parser),
        **runs,
    )


def _allow_list(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[str, ...]:
    allow = list(args.allow or [])
    if not args.allow and environ.get("CHATTRAIN_ALLOW"):
        allow = environ["CHATTRAIN_ALLOW"].split(",")
    try:
        AccessPolicy(allow)  # a wrong role is a usage error now, not at login
    except ValueError as exc:
        parser.error(str(exc))
    return tuple(name.strip() for name in allow if name.strip())


# -- the iLink backend and the push fallback ---------------------------------------------------


def _add_ilink_options(add: Callable[..., Any], env: Callable[[str, str | None], str | None]) -> None:
    add(
        "--ilink-base-url",
        default=env("CHATTRAIN_ILINK_BASE_URL", None),
        help="iLink bot API base URL, for a fake server in tests (env CHATTRAIN_ILINK_BASE_URL)",
    )
    add(
        "--ilink-cdn-url",
        default=env("CHATTRAIN_ILINK_CDN_URL", None),
        help="iLink media CDN base URL (env CHATTRAIN_ILINK_CDN_URL)",
    )
    add(
        "--ilink-window-hours",
        type=float,
        default=float(env("CHATTRAIN_ILINK_WINDOW_HOURS", "12") or 0),
        help="hours after your last message in which iLink delivers the bot's messages "
        "(env CHATTRAIN_ILINK_WINDOW_HOURS; default 12)",
    )
    add(
        "--ilink-per-inbound",
        type=int,
        default=int(env("CHATTRAIN_ILINK_PER_INBOUND", "10") or 0),
        help="messages iLink delivers per message of yours (env CHATTRAIN_ILINK_PER_INBOUND; default 10)",
    )
    add(
        "--push-url",
        default=env("CHATTRAIN_PUSH_URL", None),
        help="push alerts here when the chat cannot deliver them: a WeCom group robot webhook or "
        "any JSON webhook (env CHATTRAIN_PUSH_URL; default off)",
    )
    add(
        "--push-format",
        choices=("auto", "wecom", "json"),
        default=env("CHATTRAIN_PUSH_FORMAT", "auto"),
        help="push body: wecom, json, or auto (wecom for qyapi.weixin.qq.com) (env CHATTRAIN_PUSH_FORMAT)",
    )


def _ilink_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.ilink_window_hours <= 0:
        parser.error(f"--ilink-window-hours must be > 0, got {args.ilink_window_hours}")
    if args.ilink_per_inbound < 1:
        parser.error(f"--ilink-per-inbound must be >= 1, got {args.ilink_per_inbound}")
    push = urlsplit(args.push_url) if args.push_url else None
    if push is not None and (push.scheme not in ("http", "https") or not push.hostname):
        parser.error(f"--push-url must be an http(s) URL, got one starting {args.push_url[:8]!r}")
    return {
        "ilink_base_url": args.ilink_base_url,
        "ilink_cdn_url": args.ilink_cdn_url,
        "ilink_window_s": args.ilink_window_hours * 3600.0,
        "ilink_per_inbound": args.ilink_per_inbound,
        "push_url": args.push_url,
        "push_format": args.push_format,
    }
