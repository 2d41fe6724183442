"""The trainer's configuration: one frozen dataclass built once in ``__main__`` from flags and env.

Every option can also be set with an environment variable ``CHATTRAIN_<NAME>`` (listed in
``--help``); a flag beats the variable, which beats the default. ``--param`` repeats; its variable
``CHATTRAIN_PARAMS`` takes a comma-separated list (``lr=0.01,bs=64``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.options import Option, Parser, add_options, parse_options
from protocol.publisher import DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_HISTORY_SIZE
from trainer.tasks import TASKS

DEFAULT_RUN_DIR = "runs/default"
# A kill -9 loses at most about a minute (saves are asynchronous: see trainer.checkpointing).
DEFAULT_CHECKPOINT_EVERY_S = 60.0
# Off: what a kill loses is time, and a step cadence saved a fast model (2,400 steps/s) every
# 0.4 s, at ~65 ms of host time a save (python -m bench overhead).
DEFAULT_CHECKPOINT_EVERY_STEPS = 0
NONFINITE_POLICIES = ("stop", "skip", "rollback")
JIT_CHOICES = ("auto", "on", "off")
STRATEGIES = ("default", "mirrored", "multiworker")
# A peer that does not answer a collective within this long fails the run (trainer.distribute).
DEFAULT_COLLECTIVE_TIMEOUT_S = 120.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


AUTO = "auto"  # what --steps-per-execution auto resolves to before Config turns it into None


def module_path(raw: str) -> str:
    """``--module``: its shape checked here, so a typo exits 2 at once (imported once loading)."""
    path, sep, attr = raw.partition(":")
    if not (sep and attr.isidentifier() and all(part.isidentifier() for part in path.split("."))):
        raise ValueError("must look like pkg.mod:Class")
    return raw


def steps_per_execution(raw: str) -> int | str:
    """``auto`` or a positive count (``Config`` holds auto as None)."""
    if raw.strip().lower() == AUTO:
        return AUTO
    value = int(raw)
    if value < 1:
        raise ValueError(f"steps per execution must be >= 1 or auto, got {raw!r}")
    return value


OPTIONS: tuple[Option, ...] = (
    Option("--control", "CONTROL", "control endpoint (default: ipc in the runtime dir)"),
    Option("--metrics", "METRICS", "metrics endpoint (default: ipc in the runtime dir)"),
    Option("--connection-file", "CONNECTION", "where to write the connection file (0600)", type=Path),
    Option("--instance", "INSTANCE", "instance name for default endpoints"),
    Option("--run-dir", "RUN_DIR", f"checkpoints and logs (default {DEFAULT_RUN_DIR})", type=Path),
    Option("--task", "TASK", "built-in task", choices=tuple(sorted(TASKS))),
    Option("--module", "MODULE", "user Module as pkg.mod:Class", type=module_path),
    Option("--data", "DATA", "path of mnist.npz (default: keras.datasets)"),
    Option(
        "--param", "PARAMS", "initial param (repeatable)", repeat=True, metavar="NAME=VALUE", dest="params"
    ),
    Option("--autostart", "AUTOSTART", "start training once loaded", type=None, default=False),
    Option("--max-steps", "MAX_STEPS", "step budget (global step)", type=int, minimum=1),
    Option(
        "--exit-when-done",
        "EXIT_WHEN_DONE",
        "exit when the run finishes, stops or fails",
        type=None,
        default=False,
    ),
    Option("--data-limit", "DATA_LIMIT", "use the first N train and test samples", type=int, minimum=1),
    Option(
        "--synthetic-data",
        "SYNTHETIC_DATA",
        "use N random samples instead of MNIST (tests)",
        type=int,
        minimum=1,
    ),
    Option(
        "--heartbeat-interval",
        "HEARTBEAT_INTERVAL",
        "seconds between heartbeats",
        type=float,
        above=0,  # 0 would spin
        dest="heartbeat_interval_s",
    ),
    Option("--on-nonfinite", "ON_NONFINITE", "non-finite loss policy", choices=NONFINITE_POLICIES),
    Option(
        "--checkpoint-every-s",
        "CHECKPOINT_EVERY_S",
        f"seconds between periodic checkpoints (0: off; default {DEFAULT_CHECKPOINT_EVERY_S:g})",
        type=float,
        minimum=0,
    ),
    Option(
        "--checkpoint-every-steps",
        "CHECKPOINT_EVERY_STEPS",
        f"steps between periodic checkpoints (0: off; default {DEFAULT_CHECKPOINT_EVERY_STEPS})",
        type=int,
        minimum=0,
    ),
    Option("--quiet", "QUIET", "no progress bar", type=None, default=False),
    Option(
        "--allow-remote",
        "ALLOW_REMOTE",
        "allow non-loopback tcp endpoints (CurveZMQ protects them, as every endpoint)",
        type=None,
        default=False,
    ),
    Option(
        "--curve-server-secret",
        "CURVE_SERVER_SECRET",
        "CurveZMQ: the server's secret key file (default: the instance's generated key)",
        type=Path,
        dest="curve_secret",
    ),
    Option(
        "--curve-clients",
        "CURVE_CLIENTS",
        "CurveZMQ: directory of public key files of clients admitted besides the connection file's",
        type=Path,
    ),
    Option(
        "--insecure-no-curve",
        "INSECURE_NO_CURVE",
        "INSECURE: no CurveZMQ; whoever can reach an endpoint can steer the run",
        type=None,
        default=False,
    ),
    Option("--history-size", "HISTORY_SIZE", "data messages kept for `history`", type=int, minimum=1),
    Option(
        "--steps-per-execution",
        "STEPS_PER_EXECUTION",
        "training steps per compiled call: N >= 1 or auto (default auto)",
        type=steps_per_execution,
    ),
    Option(
        "--jit-compile",
        "JIT_COMPILE",
        "XLA for the train step: auto (on when a GPU is visible), on, off",
        choices=JIT_CHOICES,
    ),
    Option(
        "--strategy",
        "STRATEGY",
        "tf.distribute strategy (multiworker reads TF_CONFIG)",
        choices=STRATEGIES,
    ),
    Option(
        "--logical-devices",
        "LOGICAL_DEVICES",
        "split the CPU into N logical devices (mirrored on a CPU-only machine)",
        type=int,
        minimum=1,
    ),
    Option(
        "--collective-timeout",
        "COLLECTIVE_TIMEOUT",
        f"multiworker: seconds to wait for a peer in a collective (default {DEFAULT_COLLECTIVE_TIMEOUT_S:g})",
        type=float,
        above=0,
        dest="collective_timeout_s",
    ),
    Option("--log-level", "LOG_LEVEL", "logging level", type=str.upper, choices=LOG_LEVELS),
)


def build_parser() -> Parser:
    parser = Parser(prog="trainer", description="Train a TensorFlow module under chattrain control.")
    add_options(parser, OPTIONS)
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Flags > ``CHATTRAIN_*`` variables > defaults; a bad value exits 2 with one line.

    ``--module`` wins over ``--task`` (a ``.env`` may name a task by default). Initial params of
    the built-in tasks are checked here against their declarations; a user module's are checked
    once it is loaded.
    """
    parser = build_parser()
    namespace = parse_options(parser, OPTIONS, argv, environ)
    if namespace["module"]:
        namespace["task"] = None
    if namespace["steps_per_execution"] == AUTO:
        namespace["steps_per_execution"] = None
    _check_curve(parser, namespace)
    strategy = namespace["strategy"]
    if strategy not in (None, "default") and namespace["jit_compile"] == "on":
        parser.error(f"--jit-compile on is not supported with --strategy {strategy}")
    if not namespace["module"] and namespace["params"]:
        _check_params(parser, namespace["params"])
    values = {key: value for key, value in namespace.items() if value is not None}
    return Config(**values)


def _check_curve(parser: Parser, namespace: dict[str, Any]) -> None:
    clients = namespace["curve_clients"]
    if clients is not None and str(clients).strip() == "*":
        parser.error("--curve-clients '*' would admit any key: name a directory of public key files")
    if namespace["insecure_no_curve"] and (clients is not None or namespace["curve_secret"] is not None):
        parser.error("--insecure-no-curve contradicts --curve-server-secret / --curve-clients")


def _check_params(parser: Parser, items: Sequence[str]) -> None:
    from protocol import RequestError
    from trainer.params import PARAM_SPECS, parse_assignments, validate_updates

    try:
        validate_updates(PARAM_SPECS, parse_assignments(items))
    except (ValueError, RequestError) as exc:
        parser.error(f"--param: {exc}")
