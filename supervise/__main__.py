"""`python -m supervise [options] -- COMMAND...`: the command line of the restart supervisor."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from supervise.supervisor import (
    INITIAL_BACKOFF_S,
    MAX_BACKOFF_S,
    STABLE_AFTER_S,
    STOP_TIMEOUT_S,
    RespawnConfig,
    Supervisor,
)


def parse_args(argv: Sequence[str] | None = None) -> RespawnConfig:
    parser = argparse.ArgumentParser(
        prog="python -m supervise",
        description="Run COMMAND, restarting it with exponential backoff when it exits with an error.",
    )
    parser.add_argument("--name", help="label for log lines (default: the command's first word)")
    parser.add_argument("--initial-backoff", type=float, default=INITIAL_BACKOFF_S, metavar="S")
    parser.add_argument("--max-backoff", type=float, default=MAX_BACKOFF_S, metavar="S")
    parser.add_argument(
        "--stable-after",
        type=float,
        default=STABLE_AFTER_S,
        metavar="S",
        help="a run this long resets the backoff (default: %(default)s)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        metavar="S",
        help="kill the child this long after forwarding a stop signal (default: %(default)s)",
    )
    parser.add_argument("--always", action="store_true", help="restart after a clean exit (code 0) too")
    parser.add_argument(
        "--no-restart-on",
        type=int,
        action="append",
        default=[],
        metavar="CODE",
        help="exit codes that end the supervisor, e.g. 2 for a usage error (repeatable)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: use `python -m supervise [options] -- COMMAND...`")
    for flag in ("initial_backoff", "max_backoff", "stable_after", "stop_timeout"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0, received {getattr(args, flag)}")
    return RespawnConfig(
        command=tuple(command),
        name=args.name or os.path.basename(command[0]),
        initial_backoff_s=args.initial_backoff,
        max_backoff_s=max(args.max_backoff, args.initial_backoff),
        stable_after_s=args.stable_after,
        stop_timeout_s=args.stop_timeout,
        always=args.always,
        final_codes=frozenset(args.no_restart_on),
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="respawn: %(message)s", stream=sys.stderr)
    return Supervisor(config).run()


if __name__ == "__main__":
    sys.exit(main())
