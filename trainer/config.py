"""The trainer's configuration: one frozen dataclass built once in ``__main__`` from flags and env.

Every option can also be set with an environment variable ``CHATTRAIN_<NAME>`` (listed in
``--help``); a flag beats the variable, which beats the default. ``--param`` repeats; its variable
``CHATTRAIN_PARAMS`` takes a comma-separated list (``lr=0.01,bs=64``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "CHATTRAIN_"
DEFAULT_RUN_DIR = "runs/default"
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
# A kill -9 loses at most about a minute (saves are asynchronous: see trainer.checkpointing).
DEFAULT_CHECKPOINT_EVERY_S = 60.0
DEFAULT_CHECKPOINT_EVERY_STEPS = 1000
NONFINITE_POLICIES = ("stop", "skip", "rollback")
JIT_CHOICES = ("auto", "on", "off")
STRATEGIES = ("default", "mirrored", "multiworker")
# A peer that does not answer a collective within this long fails the run (trainer.distribute).
DEFAULT_COLLECTIVE_TIMEOUT_S = 120.0
DEFAULT_HISTORY_SIZE = 10_000
_TRUE_WORDS = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    control: str | None = None
    metrics: str | None = None
    connection_file: Path | None = None
    instance: str | None = None
    run_dir: Path = Path(DEFAULT_RUN_DIR)
    task: str | None = None
    module: str | None = None
    data: str | None = None
    params: tuple[str, ...] = ()
    autostart: bool = False
    max_steps: int | None = None
    exit_when_done: bool = False
    data_limit: int | None = None
    synthetic_data: int | None = None
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    on_nonfinite: str = "stop"
    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S
    checkpoint_every_steps: int = DEFAULT_CHECKPOINT_EVERY_STEPS
    quiet: bool = False
    log_level: str = "INFO"
    allow_remote: bool = False
    curve_secret: Path | None = None
    curve_clients: Path | None = None
    insecure_no_curve: bool = False
    history_size: int = DEFAULT_HISTORY_SIZE
    steps_per_execution: int | None = None  # None: auto
    jit_compile: str = "auto"
    strategy: str = "default"
    logical_devices: int | None = None
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S


# (flag, dest, env name, type, help); type "flag" is a boolean switch, "list" repeats.
OPTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("--control", "control", "CONTROL", "str", "control endpoint (default: ipc in the runtime dir)"),
    ("--metrics", "metrics", "METRICS", "str", "metrics endpoint (default: ipc in the runtime dir)"),
    (
        "--connection-file",
        "connection_file",
        "CONNECTION",
        "path",
        "where to write the connection file (0600)",
    ),
    ("--instance", "instance", "INSTANCE", "str", "instance name for default endpoints"),
    ("--run-dir", "run_dir", "RUN_DIR", "path", f"checkpoints and logs (default {DEFAULT_RUN_DIR})"),
    ("--task", "task", "TASK", "str", "built-in task (mnist_cnn)"),
    ("--module", "module", "MODULE", "str", "user Module as pkg.mod:Class"),
    ("--data", "data", "DATA", "str", "path of mnist.npz (default: keras.datasets)"),
    ("--param", "params", "PARAMS", "list", "initial param NAME=VALUE (repeatable)"),
    ("--autostart", "autostart", "AUTOSTART", "flag", "start training once loaded"),
    ("--max-steps", "max_steps", "MAX_STEPS", "int", "step budget (global step)"),
    (
        "--exit-when-done",
        "exit_when_done",
        "EXIT_WHEN_DONE",
        "flag",
        "exit when the run finishes, stops or fails",
    ),
    ("--data-limit", "data_limit", "DATA_LIMIT", "int", "use the first N train and test samples"),
    (
        "--synthetic-data",
        "synthetic_data",
        "SYNTHETIC_DATA",
        "int",
        "use N random samples instead of MNIST (tests)",
    ),
    (
        "--heartbeat-interval",
        "heartbeat_interval_s",
        "HEARTBEAT_INTERVAL",
        "float",
        "seconds between heartbeats",
    ),
    (
        "--on-nonfinite",
        "on_nonfinite",
        "ON_NONFINITE",
        "str",
        f"non-finite loss policy: {'|'.join(NONFINITE_POLICIES)}",
    ),
    (
        "--checkpoint-every-s",
        "checkpoint_every_s",
        "CHECKPOINT_EVERY_S",
        "float",
        f"seconds between periodic checkpoints (0: off; default {DEFAULT_CHECKPOINT_EVERY_S:g})",
    ),
    (
        "--checkpoint-every-steps",
        "checkpoint_every_steps",
        "CHECKPOINT_EVERY_STEPS",
        "int",
        f"steps between periodic checkpoints (0: off; default {DEFAULT_CHECKPOINT_EVERY_STEPS})",
    ),
    ("--quiet", "quiet", "QUIET", "flag", "no progress bar"),
    (
        "--allow-remote",
        "allow_remote",
        "ALLOW_REMOTE",
        "flag",
        "allow non-loopback tcp endpoints (CurveZMQ protects them, as every endpoint)",
    ),
    (
        "--curve-server-secret",
        "curve_secret",
        "CURVE_SERVER_SECRET",
        "path",
        "CurveZMQ: the server's secret key file (default: the instance's generated key)",
    ),
    (
        "--curve-clients",
        "curve_clients",
        "CURVE_CLIENTS",
        "path",
        "CurveZMQ: directory of public key files of clients admitted besides the connection file's",
    ),
    (
        "--insecure-no-curve",
        "insecure_no_curve",
        "INSECURE_NO_CURVE",
        "flag",
        "INSECURE: no CurveZMQ; whoever can reach an endpoint can steer the run",
    ),
    ("--history-size", "history_size", "HISTORY_SIZE", "int", "data messages kept for `history`"),
    (
        "--steps-per-execution",
        "steps_per_execution",
        "STEPS_PER_EXECUTION",
        "spe",
        "training steps per compiled call: N >= 1 or auto (default auto)",
    ),
    (
        "--jit-compile",
        "jit_compile",
        "JIT_COMPILE",
        "str",
        "XLA for the train step: auto (on when a GPU is visible), on, off",
    ),
    (
        "--strategy",
        "strategy",
        "STRATEGY",
        "str",
        f"tf.distribute strategy: {'|'.join(STRATEGIES)} (multiworker reads TF_CONFIG)",
    ),
    (
        "--logical-devices",
        "logical_devices",
        "LOGICAL_DEVICES",
        "int",
        "split the CPU into N logical devices (mirrored on a CPU-only machine)",
    ),
    (
        "--collective-timeout",
        "collective_timeout_s",
        "COLLECTIVE_TIMEOUT",
        "float",
        f"multiworker: seconds to wait for a peer in a collective (default {DEFAULT_COLLECTIVE_TIMEOUT_S:g})",
    ),
    ("--log-level", "log_level", "LOG_LEVEL", "str", "logging level"),
)


def steps_per_execution(raw: str) -> int | None:
    """``auto`` (None) or a positive count."""
    if raw.strip().lower() == "auto":
        return None
    value = int(raw)
    if value < 1:
        raise ValueError(f"steps per execution must be >= 1 or auto, got {raw!r}")
    return value


steps_per_execution.__name__ = "steps-per-execution"  # argparse: "invalid steps-per-execution value"
_CONVERT: dict[str, Any] = {
    "str": str,
    "path": Path,
    "int": int,
    "float": float,
    "spe": steps_per_execution,
}
_CHOICES = {"on_nonfinite": NONFINITE_POLICIES, "jit_compile": JIT_CHOICES, "strategy": STRATEGIES}


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainer", description="Train a TensorFlow module under chattrain control."
    )
    for flag, dest, env, kind, text in OPTIONS:
        env_name = ENV_PREFIX + env
        raw = environ.get(env_name)
        help_text = f"{text} [env {env_name}]"
        if kind == "flag":
            enabled = raw is not None and raw.strip().lower() in _TRUE_WORDS
            parser.add_argument(flag, dest=dest, action="store_true", default=enabled, help=help_text)
        elif kind == "list":
            items = [item for item in (raw or "").split(",") if item.strip()]
            parser.add_argument(flag, dest=dest, action="append", default=None, help=help_text)
            parser.set_defaults(**{f"_env_{dest}": items})
        else:
            convert = _CONVERT[kind]
            choices = _CHOICES.get(dest)
            parser.add_argument(
                flag,
                dest=dest,
                type=convert,
                choices=choices,
                default=_from_env(convert, env_name, raw),
                help=help_text,
            )
    return parser


def _from_env(convert: Any, name: str, raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {convert.__name__}") from None


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Flags > ``CHATTRAIN_*`` variables > defaults; a bad value exits 2 with argparse's message.

    ``--module`` wins over ``--task`` (a ``.env`` may name a task by default). Initial params of
    the built-in tasks are checked here against their declarations; a user module's are checked
    once it is loaded.
    """
    try:
        parser = build_parser(environ)
    except ValueError as exc:
        build_parser({}).error(str(exc))
    namespace = vars(parser.parse_args(argv))
    namespace["params"] = tuple(namespace["params"] or namespace.pop("_env_params"))
    namespace.pop("_env_params", None)
    if namespace["module"]:
        namespace["task"] = None
    policy = namespace["on_nonfinite"]
    if policy is not None and policy not in NONFINITE_POLICIES:
        parser.error(f"--on-nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {policy!r}")
    interval = namespace["heartbeat_interval_s"]
    if interval is not None and not 0 < interval < float("inf"):  # 0 would spin; nan compares false
        parser.error(f"--heartbeat-interval must be a positive number of seconds, got {interval!r}")
    _check_curve(parser, namespace)
    _check_strategy(parser, namespace)
    if not namespace["module"] and namespace["params"]:
        _check_params(parser, namespace["params"])
    values = {key: value for key, value in namespace.items() if value is not None}
    return Config(**values)


def _check_curve(parser: argparse.ArgumentParser, namespace: dict[str, Any]) -> None:
    clients = namespace["curve_clients"]
    if clients is not None and str(clients).strip() == "*":
        parser.error("--curve-clients '*' would admit any key: name a directory of public key files")
    if namespace["insecure_no_curve"] and (clients is not None or namespace["curve_secret"] is not None):
        parser.error("--insecure-no-curve contradicts --curve-server-secret / --curve-clients")


def _check_strategy(parser: argparse.ArgumentParser, namespace: dict[str, Any]) -> None:
    strategy = namespace["strategy"]
    if strategy is not None and strategy not in STRATEGIES:  # from the environment: not checked yet
        parser.error(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    devices = namespace["logical_devices"]
    if devices is not None and devices < 1:
        parser.error(f"--logical-devices must be >= 1, got {devices!r}")
    timeout = namespace["collective_timeout_s"]
    if timeout is not None and not 0 < timeout < float("inf"):
        parser.error(f"--collective-timeout must be a positive number of seconds, got {timeout!r}")
    if strategy not in (None, "default") and namespace["jit_compile"] == "on":
        parser.error(f"--jit-compile on is not supported with --strategy {strategy}")


def _check_params(parser: argparse.ArgumentParser, items: Sequence[str]) -> None:
    from protocol import RequestError
    from trainer.params import PARAM_SPECS, parse_assignments, validate_updates

    try:
        validate_updates(PARAM_SPECS, parse_assignments(items))
    except (ValueError, RequestError) as exc:
        parser.error(f"--param: {exc}")
