"""trainctl's commands: one small function per operation, and the one place that maps outcomes to exit codes.

Each command sends one request and returns the reply's result; `run_command` prints it (rich for
people, one JSON document with `--json`) and turns what went wrong into an exit code:

    0 ok · 2 usage or configuration error · 3 trainer unavailable (no reply within the bounded retries)
    4 refused by the trainer (an error reply: code and message are printed) · 5 protocol error
    6 `watch --for` ended before `--until-state` was reached
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import zmq
from rich.console import Console, RenderableType

from protocol import ControlClient, ProtocolError, RemoteError, TrainerUnavailable
from trainctl import exit_codes, render
from trainctl.config import ConfigError, build_config, request_options
from trainctl.runs import run_ls, run_watch_all
from trainctl.watch import WatchOptions, run_watch

Result = dict[str, Any]
Request = Callable[[ControlClient, argparse.Namespace], Result]
Show = Callable[[Result, argparse.Namespace], list[RenderableType]]


def _describe(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.describe()


def _status(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.status()


def _start(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.start(dict(args.param or []) or None)


def _stop(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.stop()


def _pause(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.pause()


def _resume(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.resume()


def _params(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.get_params()


def _set(client: ControlClient, args: argparse.Namespace) -> Result:
    # Values travel as typed text; the trainer coerces them with its ParamSpecs (all or nothing).
    pairs = args.pairs
    return client.set_params({pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)})


def _checkpoint(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.checkpoint()


def _evaluate(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.evaluate()


def _history(client: ControlClient, args: argparse.Namespace) -> Result:
    return client.history(since=args.since, limit=args.limit)


def _show_action(op: str) -> Show:
    return lambda result, _args: [render.action_line(op, result)]


def _show_status(result: Result, args: argparse.Namespace) -> list[RenderableType]:
    return [render.status_table(result)]


def _show_describe(result: Result, args: argparse.Namespace) -> list[RenderableType]:
    return [render.describe_table(result), *render.describe_lines(result)]


def _show_params(result: Result, args: argparse.Namespace) -> list[RenderableType]:
    return [render.params_table(result.get("params") or {}, applies=result.get("applies"))]


def _show_history(result: Result, args: argparse.Namespace) -> list[RenderableType]:
    """Events and logs; the per-step and report metrics too with --with-metrics (--json: all)."""
    messages = result.get("messages") or []
    if not getattr(args, "with_metrics", False):
        messages = [m for m in messages if not str(m.get("topic", "")).startswith("metrics.")]
    summary = f"session {result.get('session')}, last seq {result.get('last_seq')}, {len(messages)} shown"
    return [render.history_table(messages), summary]


COMMANDS: Mapping[str, tuple[Request, Show]] = MappingProxyType(
    {
        "status": (_status, _show_status),
        "describe": (_describe, _show_describe),
        "start": (_start, _show_action("start")),
        "stop": (_stop, _show_action("stop")),
        "pause": (_pause, _show_action("pause")),
        "resume": (_resume, _show_action("resume")),
        "params": (_params, _show_params),
        "set": (_set, _show_params),
        "checkpoint": (_checkpoint, _show_action("checkpoint")),
        "eval": (_evaluate, _show_action("evaluate")),
        "history": (_history, _show_history),
    }
)


def run_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Run the parsed command; returns the exit code."""
    try:
        if args.command == "ls" or (args.command == "watch" and args.all):
            return _all_runs(args, out)
        config = build_config(args)
    except ConfigError as exc:
        return _fail(args, err, exit_codes.USAGE, "usage", str(exc))
    except OSError as exc:  # a refused runtime directory
        return _fail(args, err, exit_codes.USAGE, "usage", str(exc))
    try:
        if args.command == "watch":  # it prints as it goes; unavailable is said as for the rest
            return run_watch(config, _watch_options(args), out)
        request, show = COMMANDS[args.command]
        with config.client() as client:
            result = request(client, args)
    except TrainerUnavailable as exc:
        return _fail(args, err, exit_codes.UNAVAILABLE, "unavailable", f"{exc} ({config.source})")
    except RemoteError as exc:
        return _fail(args, err, exit_codes.REFUSED, exc.code, exc.message, exc.details)
    except ProtocolError as exc:
        return _fail(args, err, exit_codes.PROTOCOL, "protocol", f"protocol error: {exc}")
    except (zmq.ZMQError, ValueError, OSError) as exc:
        return _fail(args, err, exit_codes.USAGE, "usage", f"cannot use {config.control}: {exc}")
    if args.json:
        print(json.dumps(render.to_jsonable(result)), flush=True)
    else:
        for item in show(result, args):
            out.print(item)
    return exit_codes.OK


def _watch_options(args: argparse.Namespace) -> WatchOptions:
    states = frozenset(filter(None, (args.until_state or "").split(",")))
    return WatchOptions(
        json=args.json, for_s=args.for_s, until_states=states, down_timeout_s=args.down_timeout_s
    )


def _all_runs(args: argparse.Namespace, out: Console) -> int:
    """`ls` and `watch --all`: every run in the runtime directory (trainctl/runs.py)."""
    timeout_ms, retries = request_options(args)
    if args.command == "ls":
        return run_ls(args.json, timeout_ms, out)
    return run_watch_all(_watch_options(args), out, timeout_ms=timeout_ms, retries=retries)


def _fail(
    args: argparse.Namespace,
    err: Console,
    code: int,
    error_code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Say what went wrong on stderr; with --json also as a JSON document on stdout."""
    if getattr(args, "json", False):
        error = {"code": error_code, "message": message, **({"details": details} if details else {})}
        print(json.dumps(render.to_jsonable({"ok": False, "exit_code": code, "error": error})), flush=True)
    text = f"refused by the trainer: {error_code}: {message}" if code == exit_codes.REFUSED else message
    err.print(f"trainctl: {text}", markup=False, highlight=False, soft_wrap=True)
    return code
