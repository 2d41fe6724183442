"""`trainctl`: supervise and steer a chattrain trainer from the command line.

    trainctl status                       trainctl set lr 0.01 bs 256
    trainctl start --param lr=0.002       trainctl watch                (Ctrl-C detaches)
    trainctl history                      trainctl history --with-metrics --since 100
    trainctl --json status                trainctl watch --json --until-state stopped,finished,failed
    trainctl ls                           trainctl --instance exp2 set lr 0.01     trainctl watch --all

Exit codes: 0 ok, 2 usage, 3 trainer unavailable, 4 refused by the trainer, 5 protocol error,
6 `watch --for` ended before `--until-state` was reached.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

from rich.console import Console

from protocol.options import Parser, argument_type
from protocol.params import split_assignment
from trainctl import exit_codes
from trainctl.commands import run_command
from trainctl.config import add_connection_options
from trainctl.watch import DOWN_TIMEOUT_S


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="trainctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, **kwargs: object) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=text, description=text, **kwargs)  # type: ignore[arg-type]
        add_connection_options(child, suppress=True)
        return child

    command("ls", "the runs on this machine (connection files in the runtime directory): state, step")
    command("status", "the trainer's state, progress, last metrics and parameters")
    command("describe", "operations, states, topics and the declared parameters")
    start = command("start", "start training (optionally with initial parameter values)")
    start.add_argument("--param", action="append", type=argument_type(split_assignment), metavar="NAME=VALUE")
    for name, text in (("stop", "stop training"), ("pause", "pause training"), ("resume", "resume training")):
        command(name, text)
    command("params", "current parameter values")
    set_ = command("set", "change parameters (names or aliases); all or nothing")
    set_.add_argument("pairs", nargs="+", metavar="NAME VALUE")
    command("checkpoint", "save a checkpoint at the next step")
    command("eval", "evaluate at the next step", aliases=["evaluate"])
    history = command("history", "recent events (with --with-metrics: every published message)")
    history.add_argument(
        "--with-metrics", action="store_true", help="include the per-step and report metrics"
    )
    history.add_argument("--since", type=int, default=0, metavar="N", help="after this seq (default 0)")
    history.add_argument("--limit", type=int, default=None, metavar="N")
    watch = command("watch", "live view of progress and events (Ctrl-C detaches)")
    watch.add_argument("--for", dest="for_s", type=float, default=None, metavar="SECONDS",
                       help="end after this long")  # fmt: skip
    watch.add_argument("--until-state", default=None, metavar="STATE[,STATE...]",
                       help="end on reaching one of these states (exit 6 if --for ends first)")  # fmt: skip
    watch.add_argument("--down-timeout", dest="down_timeout_s", type=float, default=DOWN_TIMEOUT_S,
                       metavar="SECONDS", help="with --until-state: exit 3 once the trainer has been down "
                       "this long (default %(default)g; shorter restarts are ridden out)")  # fmt: skip
    watch.add_argument("--all", action="store_true",
                       help="follow every run on this machine in one view")  # fmt: skip
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        args.command = "eval"
    if args.command == "set" and len(args.pairs) % 2:
        parser.error(f"set takes NAME VALUE pairs, received an odd number of words: {' '.join(args.pairs)}")
    if args.command == "watch":
        # nan would end the loop at once and inf overflows the poll timeout (a traceback).
        for flag, value in (("--for", args.for_s), ("--down-timeout", args.down_timeout_s)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                parser.error(f"{flag} must be a finite number >= 0, received {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else exit_codes.USAGE
    logging.basicConfig(level=logging.WARNING, format="trainctl: %(levelname)s %(name)s: %(message)s")
    return run_command(args, Console(), Console(stderr=True))


if __name__ == "__main__":
    sys.exit(main())
