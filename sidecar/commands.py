"""The chat commands: small registered functions, one per command.

Each function takes the `CommandContext` and the argument words and returns the reply (text,
or a `Reply` with an image), in the context's language (`context.lang`, see i18n.py). An
expected refusal is raised as `CommandError(reason)` and shown verbatim; the dispatcher turns
anything else into a generic reply (see dispatch.py).
Parameter names, ranges and help come from the trainer's `describe`, never from here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocol import ErrorCode, ParamSpec, RemoteError, resolve_param
from sidecar import render
from sidecar.grammar import parse_assignments
from sidecar.i18n import EN, ZH, tr
from sidecar.link import OwnChanges, TrainerLink, fetch_history
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
    """What a command may use: the trainer link, the metric series, the state dir, the reply
    language, and where the chat's own parameter changes are noted (so the feed skips them)."""

    link: TrainerLink
    series: MetricSeries
    state_dir: Path
    commands: Sequence[CommandSpec] = field(default_factory=tuple)
    lang: str = EN
    own_changes: OwnChanges = field(default_factory=OwnChanges)

    def in_language(self, lang: str) -> CommandContext:
        return replace(self, lang=lang)

    def error(self, key: str, **fields: Any) -> CommandError:
        """A CommandError with the catalog's text `key` in the reply language."""
        return CommandError(tr(self.lang, key, **fields))


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
    help_zh: str = ""

    def __call__(self, context: CommandContext, args: tuple[str, ...]) -> str | Reply:
        return self.func(context, args)


def command(
    name: str,
    *aliases: str,
    help: str,
    usage: str = "",
    max_args: int | None = 0,
    op: str | None = None,
    zh: str = "",
) -> Callable[[CommandFunc], CommandSpec]:
    """Register a function as the command `name` (collected into COMMANDS below); `zh` is the
    help line in Chinese."""

    def register(func: CommandFunc) -> CommandSpec:
        return CommandSpec(name, aliases, help, usage or name, max_args, op, func, zh or help)

    return register


@command(
    "start",
    "开始",
    help="start training (optionally with parameters)",
    usage="start [lr=0.01 ...]",
    max_args=None,
    op="start",
    zh="开始训练（可带参数，如 开始 lr=0.01）",
)
def start(context: CommandContext, args: tuple[str, ...]) -> str:
    if not args:
        return render.action("start", context.link.request("start"), lang=context.lang)
    params = validated(context, args)
    return render.action("start", context.link.request("start", params=params), lang=context.lang)


def _simple(op: str) -> CommandFunc:
    def run(context: CommandContext, args: tuple[str, ...]) -> str:
        return render.action(op, context.link.request(op), lang=context.lang)

    return run


stop = command(
    "stop",
    "停止",
    "结束",
    help="stop training (saves a checkpoint)",
    op="stop",
    zh="停止训练（先保存检查点）",
)(_simple("stop"))
pause = command("pause", "暂停", help="pause training", op="pause", zh="暂停训练")(_simple("pause"))
resume = command("resume", "继续", "恢复", help="resume paused training", op="resume", zh="继续已暂停的训练")(
    _simple("resume")
)


@command(
    "status",
    "状态",
    "st",
    help="state, step, metrics, speed, ETA",
    op="status",
    zh="状态、步数、指标、速度、剩余时间",
)
def status(context: CommandContext, args: tuple[str, ...]) -> str:
    return render.status(context.link.request("status"), lang=context.lang)


@command(
    "params",
    "参数",
    "param",
    help="parameters, current values and ranges",
    op="describe",
    zh="参数、当前值和取值范围",
)
def params(context: CommandContext, args: tuple[str, ...]) -> str:
    return render.params(context.link.describe().get("params", ()), lang=context.lang)


@command(
    "set",
    "设置",
    help="change parameters, e.g. 'set lr 0.01' or 'lr=0.01 bs=64'",
    usage="set <name> <value> [...]  (or just: lr 0.01)",
    max_args=None,
    op="set_params",
    zh="修改参数，例如 lr 0.01 或 lr=0.01 bs=64",
)
def set_params(context: CommandContext, args: tuple[str, ...]) -> str:
    changes = validated(context, args)
    old = context.link.request("status").get("params") or {}
    try:
        result = context.link.request("set_params", params=changes)
    except RemoteError as error:
        if error.code == ErrorCode.INVALID_PARAMS:
            raise context.error("not_changed", message=error.message) from error
        raise
    context.own_changes.note(result.get("params") or {})
    return render.params_set(result, old, lang=context.lang)


def validated(context: CommandContext, args: tuple[str, ...]) -> dict[str, Any]:
    """'lr 0.01 bs=64' -> {canonical name: coerced value}, or CommandError saying why not."""
    try:
        pairs = parse_assignments(args)
    except ValueError as error:
        raise context.error("bad_pairs", error=error) from error
    specs = context.link.specs()
    changes: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for name, text in pairs:
        spec = _resolve(context, specs, name)
        if spec.name in given_as:  # 'lr 0.01 learning_rate 0.5': which one was meant is not ours to guess
            first, second = render.quote(given_as[spec.name]), render.quote(name)
            raise context.error("given_twice", name=spec.name, first=first, second=second)
        given_as[spec.name] = name
        try:
            changes[spec.name] = spec.coerce(text)
        except ValueError as error:
            allowed = render.allowed_range(spec.to_dict()).strip()
            hint = tr(context.lang, "allowed", type=spec.type, range=allowed) if allowed else ""
            hint = hint or tr(context.lang, "a_type", type=spec.type)
            raise context.error("bad_value", error=error, hint=hint) from error
    return changes


def _resolve(context: CommandContext, specs: Sequence[ParamSpec], name: str) -> ParamSpec:
    try:
        return resolve_param(specs, name)
    except KeyError as error:
        words = sorted({w for s in specs for w in (s.name, *s.aliases)})
        close = difflib.get_close_matches(name, words, n=3, cutoff=0.6)
        hint = tr(context.lang, "did_you_mean", words=", ".join(close)) if close else ""
        known = ", ".join(s.name for s in specs)
        raise context.error("unknown_param", name=render.quote(name), hint=hint, known=known) from error


@command(
    "history", "历史", help="recent training events", usage="history [count]", max_args=1, op="history",
    zh="最近的训练事件",
)  # fmt: skip
def history(context: CommandContext, args: tuple[str, ...]) -> str:
    count = _count(context, args[0]) if args else DEFAULT_HISTORY_EVENTS
    last_seq = int(context.link.request("status").get("last_seq") or 0)
    # From the oldest the trainer still holds: events are rare among per-step metrics, so a fixed
    # look-back of N seqs would miss them ("no events" while the ring holds some).
    messages, _ = fetch_history(context.link.request, 0, last_seq)
    events = [m["body"] for m in messages if str(m.get("topic", "")).startswith("event.")]
    shown = [e for e in events if e.get("event") not in render.QUIET_EVENTS][-count:]
    return render.history(shown, lang=context.lang)


def _count(context: CommandContext, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY_EVENTS:
        raise context.error("bad_count", most=MAX_HISTORY_EVENTS, text=render.quote(text))
    return int(text)


@command(
    "plot", "曲线", "画图", "chart", help="a picture of the loss and accuracy curves", zh="损失和准确率曲线图"
)
def plot(context: CommandContext, args: tuple[str, ...]) -> Reply:
    series = context.series.snapshot()
    if series.empty():
        raise context.error("no_metrics")
    last = series.loss[-1][0] if series.loss else "?"
    return Reply(
        tr(context.lang, "plot_caption", step=last),
        plot_png(series, context.state_dir, title=f"chattrain, step {last}"),
    )


@command("checkpoint", "保存", "ckpt", help="save a checkpoint now", op="checkpoint", zh="立即保存检查点")
def checkpoint(context: CommandContext, args: tuple[str, ...]) -> str:
    at = context.link.request("checkpoint").get("scheduled_at_step", "?")
    return tr(context.lang, "checkpoint_scheduled", step=at)


@command(
    "eval",
    "评估",
    "evaluate",
    help="evaluate on the validation set now",
    op="evaluate",
    zh="立即在验证集上评估",
)
def evaluate(context: CommandContext, args: tuple[str, ...]) -> str:
    at = context.link.request("evaluate").get("scheduled_at_step", "?")
    return tr(context.lang, "eval_scheduled", step=at)


@command(
    "help", "帮助", "?", "h", help="this list, or help <command or parameter>", usage="help [command]",
    max_args=1, zh="命令列表；帮助 <命令或参数> 查看说明",
)  # fmt: skip
def help_(context: CommandContext, args: tuple[str, ...]) -> str:
    if args:
        return _help_on(context, args[0])
    ops = context.link.catalog.ops()
    lines = [tr(context.lang, "help_head")] + [
        f"{spec.usage} ({'/'.join(spec.aliases)}): {_help_text(context, spec)}"
        if spec.aliases
        else f"{spec.usage}: {_help_text(context, spec)}"
        for spec in context.commands
        if ops is None or spec.op is None or spec.op in ops
    ]
    param_dicts = context.link.catalog.param_dicts()
    if param_dicts:
        params_text = render.params(param_dicts, with_values=False, lang=context.lang)
        lines += ["", params_text, tr(context.lang, "help_values")]
    return "\n".join(lines)


def _help_text(context: CommandContext, spec: CommandSpec) -> str:
    return spec.help_zh if context.lang == ZH else spec.help


def _help_on(context: CommandContext, word: str) -> str:
    """`help stop` explains a command, `help lr` a parameter (from the trainer's describe)."""
    lowered = word.lower()
    for spec in context.commands:
        if lowered in (spec.name, *spec.aliases):
            aliases = (
                tr(context.lang, "help_aliases", aliases=", ".join(spec.aliases)) if spec.aliases else ""
            )
            return f"{spec.usage}\n{_help_text(context, spec)}" + (f"\n{aliases}" if aliases else "")
    described = {p["name"]: p for p in context.link.describe().get("params", ())}
    for param in context.link.specs():
        if lowered in (param.name, *param.aliases):
            return render.param_help(described.get(param.name) or param.to_dict(), lang=context.lang)
    raise context.error("no_command", word=render.quote(word))


COMMANDS: tuple[CommandSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, CommandSpec))
