"""`python -m supervise [options] -- COMMAND...`: the command line of the restart supervisor."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from supervise.supervisor import (
    INITIAL_BACKOFF_S,
    MAX_BACKOFF_S,
    STABLE_AFTER_S,
    STOP_TIMEOUT_S,
    RespawnConfig,
    Supervisor,
)

USAGE_ERROR = 2
# The longest wait any option may ask for. Past about 300 years select() and the clock overflow
# (a traceback), and anything near that is a typo: a week is already more than any restart needs.
MAX_DURATION_S = 7 * 24 * 3600.0
DURATIONS = ("initial_backoff", "max_backoff", "stable_after", "stop_timeout")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, as protocol.options.Parser in the other
    programs (not imported: supervise stays standard library only, and protocol needs zmq)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_args(argv: Sequence[str] | None = None) -> RespawnConfig:
    parser = Parser(
        prog="python -m supervise",
        description="Run COMMAND, restarting it with exponential backoff when it exits with an error.",
    )
    parser.add_argument("--name", help="label for log lines (default: the command's first word)")
    parser.add_argument(
        "--initial-backoff",
        type=float,
        default=INITIAL_BACKOFF_S,
        metavar="S",
        help="the first wait before a restart, > 0 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-backoff",
        type=float,
        default=MAX_BACKOFF_S,
        metavar="S",
        help="the longest wait; the Procfile passes CHATTRAIN_RESPAWN_MAX_BACKOFF (default: %(default)s)",
    )
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
    _check_durations(parser, args)
    for code in args.no_restart_on:
        if not 0 <= code <= 255:  # a code no process can exit with would never match
            parser.error(f"--no-restart-on must be an exit code 0..255, received {code}")
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


def _check_durations(parser: Parser, args: argparse.Namespace) -> None:
    """Each duration finite and in range: a nan backoff restarts in a hot loop, a nan cap is no cap,
    and an infinite or huge one overflows the clock. A zero first backoff never doubles (a hot loop)."""
    for name in DURATIONS:
        value = getattr(args, name)
        low = "> 0" if name == "initial_backoff" else ">= 0"
        fine = math.isfinite(value) and value <= MAX_DURATION_S
        if not fine or value < 0 or (value == 0 and name == "initial_backoff"):
            parser.error(
                f"--{name.replace('_', '-')} must be a finite number {low} and <= {MAX_DURATION_S:g},"
                f" received {value}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="respawn: %(message)s", stream=sys.stderr)
    return Supervisor(config).run()


if __name__ == "__main__":
    sys.exit(main())
