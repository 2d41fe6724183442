"""The sidecar's configuration: one dataclass, built once in __main__ from flags and environment.

Every option has an environment variable (shown in --help); a flag wins over its variable.
Endpoints and CurveZMQ keys come from protocol's connection factory (`resolve_connection`), by the
same rules as trainctl's: --control/--metrics (CHATTRAIN_CONTROL / CHATTRAIN_METRICS), else the
--connection file (CHATTRAIN_CONNECTION) or the instance's, else the instance's default ipc
endpoints; keys from --curve-secret-key/--curve-server-key, else the connection file, else the
instance's key file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protocol import ClientCurve, Connection, ConnectionConfigError, resolve_connection
from protocol.connect import CLIENT_OPTIONS, connection_from_options
from protocol.discovery import check_run_name
from protocol.endpoints import default_runtime_dir
from protocol.options import Option, Parser, add_options, parse_options
from sidecar.access import AccessPolicy
from sidecar.runs import DEFAULT_RUN_NAME, RunSource, source_from_file

DEFAULT_STATE_DIR = Path("state/sidecar")
DEFAULT_PROGRESS_INTERVAL_S = 60.0
BACKENDS = ("wechat", "console", "ilink")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


class ConfigError(ValueError):
    """A value that makes no usable configuration: one line, exit 2."""


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got one starting {text[:8]!r}")
    return text


OPTIONS: tuple[Option, ...] = (
    Option(
        "--backend",
        "BACKEND",
        "chat backend: ilink (official bot API), wechat (web WeChat via itchat) or console (default wechat)",
        choices=BACKENDS,
        default="wechat",
    ),
    *CLIENT_OPTIONS,
    Option(
        "--state-dir",
        "STATE_DIR",
        f"where the sidecar keeps its cursor and plots (default {DEFAULT_STATE_DIR})",
        type=Path,
        default=DEFAULT_STATE_DIR,
    ),
    Option(
        "--allow",
        "ALLOW",
        "a contact who may send commands: the remark name you gave them in WeChat (never a "
        "nickname, which anyone can choose), or id:ID; NAME=steer may also steer, NAME alone only "
        "read (status, params, history, plot); repeatable (the variable: comma-separated)",
        repeat=True,
        metavar="NAME",
    ),
    Option(
        "--progress-interval",
        "PROGRESS_INTERVAL",
        f"seconds between progress messages at most (default {DEFAULT_PROGRESS_INTERVAL_S:g})",
        type=float,
        minimum=0,
        default=DEFAULT_PROGRESS_INTERVAL_S,
    ),
    Option("--wechat-base-url", "WECHAT_BASE_URL", "web WeChat base URL, for a fake server in tests"),
    Option(
        "--request-timeout-ms",
        "REQUEST_TIMEOUT_MS",
        "control request timeout per attempt (default 1500)",
        type=int,
        minimum=1,
        default=1500,
    ),
    Option(
        "--language",
        "LANGUAGE",
        "reply language: auto follows each command's language",
        choices=("auto", "zh", "en"),
        default="auto",
    ),
    Option("--log-level", "LOG_LEVEL", "logging level", type=str.upper, choices=LOG_LEVELS, default="INFO"),
    Option(
        "--run",
        "RUNS",
        "follow this trainer too: its connection file or its two endpoints, optionally named "
        "(chat: @NAME); repeatable (the variable: space-separated)",
        repeat=True,
        separator=None,
        metavar="[NAME=]FILE|CONTROL,METRICS",
    ),
    Option(
        "--discover",
        "DISCOVER",
        "follow every trainer whose connection file is in the runtime directory (every --instance), "
        "including those started later",
        type=None,
        default=False,
    ),
    # -- the iLink backend and the push fallback --
    Option("--ilink-base-url", "ILINK_BASE_URL", "iLink bot API base URL, for a fake server in tests"),
    Option("--ilink-cdn-url", "ILINK_CDN_URL", "iLink media CDN base URL"),
    Option(
        "--ilink-window-hours",
        "ILINK_WINDOW_HOURS",
        "hours after your last message in which iLink delivers the bot's messages (default 12)",
        type=float,
        above=0,
        default=12.0,
    ),
    Option(
        "--ilink-per-inbound",
        "ILINK_PER_INBOUND",
        "messages iLink delivers per message of yours (default 10)",
        type=int,
        minimum=1,
        default=10,
    ),
    Option(
        "--push-url",
        "PUSH_URL",
        "push alerts here when the chat cannot deliver them: a WeCom group robot webhook or any "
        "JSON webhook (default off)",
        type=_http_url,
    ),
    Option(
        "--push-format",
        "PUSH_FORMAT",
        "push body: wecom, json, or auto (wecom for qyapi.weixin.qq.com)",
        choices=("auto", "wecom", "json"),
        default="auto",
    ),
)


def build_parser() -> Parser:
    parser = Parser(prog="sidecar", description="Supervise and steer a chattrain trainer from WeChat.")
    add_options(parser, OPTIONS)
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Flags > ``CHATTRAIN_*`` variables > defaults; a bad value exits 2 with one line."""
    parser = build_parser()
    values = parse_options(parser, OPTIONS, argv, environ)
    try:
        connection = connection_from_options(values, environ)
        AccessPolicy(values["allow"])  # a wrong role is a usage error now, not at login
        runs = _runs(values, environ)
    except (ConnectionConfigError, ValueError) as exc:  # ConfigError is a ValueError
        parser.error(str(exc))
    return Config(
        backend=values["backend"],
        control=connection.control,
        metrics=connection.metrics,
        state_dir=values["state_dir"],
        allow=values["allow"],
        progress_interval_s=values["progress_interval"],
        wechat_base_url=values["wechat_base_url"],
        request_timeout_ms=values["request_timeout_ms"],
        curve=connection.curve,
        log_level=values["log_level"],
        language=values["language"],
        ilink_base_url=values["ilink_base_url"],
        ilink_cdn_url=values["ilink_cdn_url"],
        ilink_window_s=values["ilink_window_hours"] * 3600.0,
        ilink_per_inbound=values["ilink_per_inbound"],
        push_url=values["push_url"],
        push_format=values["push_format"],
        **runs,
    )


def _runs(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """--run, --discover, and whether the configured (default instance) run is one of them."""
    insecure = bool(values["insecure_no_curve"])
    sources = tuple(_run_source(spec, insecure) for spec in values["run"])
    explicit = any(values[name] for name in ("control", "metrics", "connection"))
    connection = values["connection"] or Path(".json")
    name = values["instance"] or connection.name.removesuffix(".json") or DEFAULT_RUN_NAME
    try:
        runtime_dir = default_runtime_dir() if values["discover"] else None
        check_run_name(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    # The configured run is followed as with one run, unless only --run / --discover name runs:
    # then it is one of them only if given endpoints or a file (an instance's connection file is in
    # the runtime directory, where --discover finds it when it exists).
    discover = bool(values["discover"])
    primary = explicit or not (sources or discover) or (bool(values["instance"]) and not discover)
    names = [name] * primary + [source.name for source in sources]
    if len(set(names)) < len(names):
        raise ConfigError(f"two runs are named alike ({', '.join(names)}): name them, --run NAME=...")
    return {
        "name": name, "primary": primary, "runs": sources, "runtime_dir": runtime_dir,
        "insecure_no_curve": insecure,
    }  # fmt: skip


def _run_source(spec: str, insecure_no_curve: bool) -> RunSource:
    name, sep, target = spec.partition("=")
    if not sep or "://" in name:
        name, target = "", spec
    try:
        if name:
            check_run_name(name)
        if "://" in target:
            control, _, metrics = target.partition(",")
            if not metrics:
                raise ValueError(f"--run {spec[:60]!r}: endpoints are CONTROL,METRICS")
            connection = resolve_connection(
                control=control, metrics=metrics, insecure_no_curve=insecure_no_curve, environ={}
            )
            return RunSource(check_run_name(name or _endpoint_name(control)), connection)
        source = source_from_file(Path(target), name=name or None, insecure_no_curve=insecure_no_curve)
        check_run_name(source.name)
        return source
    except (ConnectionConfigError, OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _endpoint_name(control: str) -> str:
    """A name for an unnamed pair of endpoints: the port, or the ipc file's name."""
    tail = control.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return tail.removesuffix(".control") or "run"
