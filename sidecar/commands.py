"""The chat commands: small registered functions, one per command.

Each function takes the `CommandContext` and the argument words and returns the reply (text,
or a `Reply` with an image). An expected refusal is raised as `CommandError(reason)` and shown
verbatim; the dispatcher turns anything else into a generic reply (see dispatch.py).
Parameter names, ranges and help come from the trainer's `describe`, never from here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import ErrorCode, ParamSpec, RemoteError, resolve_param
from sidecar import render
from sidecar.grammar import parse_assignments
from sidecar.link import TrainerLink, fetch_history
from sidecar.plot import plot_png
from sidecar.series import MetricSeries

DEFAULT_HISTORY_EVENTS = 10
MAX_HISTORY_EVENTS = 50


class CommandError(Exception):
    """An expected problem; its text is the reply."""


@dataclass(frozen=True)
class Reply:
    text: str = ""
    image: Path | None = None


@dataclass
class CommandContext:
    """What a command may use: the trainer link, the metric series, the state dir."""

    link: TrainerLink
    series: MetricSeries
    state_dir: Path
    commands: Sequence[CommandSpec] = field(default_factory=tuple)


CommandFunc = Callable[[CommandContext, tuple[str, ...]], "str | Reply"]


@dataclass(frozen=True)
class CommandSpec:
    """A registered command: name, aliases, one line of help, arity, the trainer op it needs."""

    name: str
    aliases: tuple[str, ...]
    help: str
    usage: str
    max_args: int | None
    op: str | None
    func: CommandFunc

    def __call__(self, context: CommandContext, args: tuple[str, ...]) -> str | Reply:
        return self.func(context, args)


def command(
    name: str,
    *aliases: str,
    help: str,
    usage: str = "",
    max_args: int | None = 0,
    op: str | None = None,
) -> Callable[[CommandFunc], CommandSpec]:
    """Register a function as the command `name` (collected into COMMANDS below)."""

    def register(func: CommandFunc) -> CommandSpec:
        return CommandSpec(name, aliases, help, usage or name, max_args, op, func)

    return register


@command(
    "start",
    "开始",
    help="start training (optionally with parameters)",
    usage="start [lr=0.01 ...]",
    max_args=None,
    op="start",
)
def start(context: CommandContext, args: tuple[str, ...]) -> str:
    if not args:
        return render.action("start", context.link.request("start"))
    params = validated(context.link.specs(), args)
    return render.action("start", context.link.request("start", params=params))


def _simple(op: str) -> CommandFunc:
    def run(context: CommandContext, args: tuple[str, ...]) -> str:
        return render.action(op, context.link.request(op))

    return run


stop = command("stop", "停止", "结束", help="stop training (saves a checkpoint)", op="stop")(_simple("stop"))
pause = command("pause", "暂停", help="pause training", op="pause")(_simple("pause"))
resume = command("resume", "继续", "恢复", help="resume paused training", op="resume")(_simple("resume"))


@command("status", "状态", "st", help="state, step, metrics, speed, ETA", op="status")
def status(context: CommandContext, args: tuple[str, ...]) -> str:
    return render.status(context.link.request("status"))


@command("params", "参数", "param", help="parameters, current values and ranges", op="describe")
def params(context: CommandContext, args: tuple[str, ...]) -> str:
    return render.params(context.link.describe().get("params", ()))


@command(
    "set",
    "设置",
    help="change parameters, e.g. 'set lr 0.01' or 'lr=0.01 bs=64'",
    usage="set <name> <value> [...]  (or just: lr 0.01)",
    max_args=None,
    op="set_params",
)
def set_params(context: CommandContext, args: tuple[str, ...]) -> str:
    changes = validated(context.link.specs(), args)
    try:
        result = context.link.request("set_params", params=changes)
    except RemoteError as error:
        if error.code == ErrorCode.INVALID_PARAMS:
            raise CommandError(f"Not changed: {error.message}") from error
        raise
    return render.params_set(result)


def validated(specs: Sequence[ParamSpec], args: tuple[str, ...]) -> dict[str, Any]:
    """'lr 0.01 bs=64' -> {canonical name: coerced value}, or CommandError saying why not."""
    try:
        pairs = parse_assignments(args)
    except ValueError as error:
        raise CommandError(f"{error}. Usage: <name> <value>, e.g. lr 0.01") from error
    changes: dict[str, Any] = {}
    for name, text in pairs.items():
        spec = _resolve(specs, name)
        try:
            changes[spec.name] = spec.coerce(text)
        except ValueError as error:
            allowed = render.allowed_range(spec.to_dict()).strip()
            hint = f" (allowed: {spec.type} {allowed})" if allowed else f" (a {spec.type})"
            raise CommandError(f"Invalid value: {error}{hint}. Nothing changed.") from error
    return changes


def _resolve(specs: Sequence[ParamSpec], name: str) -> ParamSpec:
    try:
        return resolve_param(specs, name)
    except KeyError as error:
        words = sorted({w for s in specs for w in (s.name, *s.aliases)})
        close = difflib.get_close_matches(name, words, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CommandError(
            f"Unknown parameter {render.quote(name)}.{hint} Known: {', '.join(s.name for s in specs)}."
        ) from error


@command("history", "历史", help="recent training events", usage="history [count]", max_args=1, op="history")
def history(context: CommandContext, args: tuple[str, ...]) -> str:
    count = _count(args[0]) if args else DEFAULT_HISTORY_EVENTS
    last_seq = int(context.link.request("status").get("last_seq") or 0)
    # From the oldest the trainer still holds: events are rare among per-step metrics, so a fixed
    # look-back of N seqs would miss them ("no events" while the ring holds some).
    messages, _ = fetch_history(context.link.request, 0, last_seq)
    events = [m["body"] for m in messages if str(m.get("topic", "")).startswith("event.")]
    return render.history([e for e in events if e.get("event") not in render.QUIET_EVENTS][-count:])


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY_EVENTS:
        raise CommandError(f"history takes a count from 1 to {MAX_HISTORY_EVENTS}, got {render.quote(text)}")
    return int(text)


@command("plot", "曲线", "画图", "chart", help="a picture of the loss and accuracy curves")
def plot(context: CommandContext, args: tuple[str, ...]) -> Reply:
    series = context.series.snapshot()
    if series.empty():
        raise CommandError("No metrics yet: nothing to plot.")
    last = series.loss[-1][0] if series.loss else "?"
    return Reply(
        f"Loss and accuracy up to step {last}",
        plot_png(series, context.state_dir, title=f"chattrain, step {last}"),
    )


@command("checkpoint", "保存", "ckpt", help="save a checkpoint now", op="checkpoint")
def checkpoint(context: CommandContext, args: tuple[str, ...]) -> str:
    at = context.link.request("checkpoint").get("scheduled_at_step", "?")
    return f"Checkpoint scheduled at step {at}; I'll tell you when it is saved."


@command("eval", "评估", "evaluate", help="evaluate on the validation set now", op="evaluate")
def evaluate(context: CommandContext, args: tuple[str, ...]) -> str:
    at = context.link.request("evaluate").get("scheduled_at_step", "?")
    return f"Evaluation scheduled at step {at}; the result follows when done."


@command("help", "帮助", "?", "h", help="this list, or help <command>", usage="help [command]", max_args=1)
def help_(context: CommandContext, args: tuple[str, ...]) -> str:
    if args:
        word = args[0].lower()
        for spec in context.commands:
            if word in (spec.name, *spec.aliases):
                return f"{spec.usage}\n{spec.help}" + (
                    f"\nAliases: {', '.join(spec.aliases)}" if spec.aliases else ""
                )
        raise CommandError(f"No command {render.quote(args[0])}. Send 'help' for the list.")
    ops = context.link.catalog.ops()
    lines = ["Commands:"] + [
        f"{spec.usage} ({'/'.join(spec.aliases)}): {spec.help}"
        if spec.aliases
        else f"{spec.usage}: {spec.help}"
        for spec in context.commands
        if ops is None or spec.op is None or spec.op in ops
    ]
    param_dicts = context.link.catalog.param_dicts()
    if param_dicts:
        lines += ["", render.params(param_dicts, with_values=False), "Current values: params"]
    return "\n".join(lines)


COMMANDS: tuple[CommandSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, CommandSpec))
