"""The sidecar's options for several runs: `--run` and `--discover` (sidecar/runs.py follows them).

Which runs: the configured one (`--control/--metrics/--connection/--instance`, as with one run),
each `--run [NAME=]FILE` or `--run [NAME=]CONTROL,METRICS`, and with `--discover` every connection
file of the runtime directory. A run that cannot be made (a corrupt file, a bad name, two runs of
one name) is a ConfigError: one line, exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from protocol import ConnectionConfigError, resolve_connection
from protocol.discovery import check_run_name
from protocol.endpoints import default_runtime_dir
from sidecar.runs import DEFAULT_RUN_NAME, RunSource, source_from_file

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


class ConfigError(ValueError):
    """A value that makes no usable configuration: one line, exit 2."""


def add_run_options(add: Callable[..., Any], env: Callable[[str, str | None], str | None]) -> None:
    add(
        "--run",
        action="append",
        metavar="[NAME=]FILE|CONTROL,METRICS",
        help="follow this trainer too: its connection file or its two endpoints, optionally named "
        "(chat: @NAME); repeatable (env CHATTRAIN_RUNS, space-separated)",
    )
    add(
        "--discover",
        action="store_true",
        default=(env("CHATTRAIN_DISCOVER", None) or "").lower() in TRUE_WORDS,
        help="follow every trainer whose connection file is in the runtime directory (every "
        "--instance), including those started later (env CHATTRAIN_DISCOVER)",
    )


def run_config(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """--run, --discover, and whether the configured (default instance) run is one of them."""
    specs = list(args.run or []) or (environ.get("CHATTRAIN_RUNS") or "").split()
    sources = tuple(_run_source(spec, args.insecure_no_curve) for spec in specs)
    explicit = any(environ.get(f"CHATTRAIN_{v}") for v in ("CONTROL", "METRICS", "CONNECTION"))
    explicit = explicit or any((args.control, args.metrics, args.connection))
    connection = args.connection or Path(environ.get("CHATTRAIN_CONNECTION") or ".json")
    name = args.instance or connection.name.removesuffix(".json") or DEFAULT_RUN_NAME
    try:
        runtime_dir = default_runtime_dir() if args.discover else None
        check_run_name(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    # The configured run is followed as with one run, unless only --run / --discover name runs:
    # then it is one of them only if given endpoints or a file (an instance's connection file is in
    # the runtime directory, where --discover finds it when it exists).
    primary = explicit or not (sources or args.discover) or (bool(args.instance) and not args.discover)
    names = [name] * primary + [source.name for source in sources]
    if len(set(names)) < len(names):
        raise ConfigError(f"two runs are named alike ({', '.join(names)}): name them, --run NAME=...")
    return {
        "name": name, "primary": primary, "runs": sources, "runtime_dir": runtime_dir,
        "insecure_no_curve": args.insecure_no_curve,
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
