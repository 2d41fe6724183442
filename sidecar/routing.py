"""Which run a chat command is for, when one sidecar follows several.

With one run every message goes to its dispatcher, exactly as before. With several:

- `@name <command>` goes to run `name` (an `@word` that names no run is a mention of a person
  and stays chatter, unless what follows is a command: then the reply says there is no such run);
- `runs` / `列表` lists them (name, state, step/total, loss, ETA);
- `use NAME` / `使用 NAME` chooses the run that unaddressed commands go to (`use` alone shows it);
- `<command> all` / `<command> 全部` (stop, pause, resume, status, checkpoint, eval) goes to each;
- an unaddressed command, with no run chosen, is never applied to a guess: `status` shows all,
  `help` is answered, and every other command is refused with the list (nothing changed).
Replies name their run when there are several.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol import RemoteError, TrainerUnavailable
from sidecar import render_runs
from sidecar.commands import COMMANDS, CommandSpec, Reply
from sidecar.grammar import Command, normalise, split_words
from sidecar.i18n import LanguagePreference, tr
from sidecar.render import quote
from sidecar.render_runs import RunRow
from sidecar.runs import Run, RunSet

RUNS_WORDS = frozenset({"runs", "列表"})
USE_WORDS = frozenset({"use", "使用"})
ALL_WORDS = frozenset({"all", "全部"})
ALL_COMMANDS = frozenset({"stop", "pause", "resume", "status", "checkpoint", "eval"})
COMMAND_WORDS = frozenset(word.lower() for spec in COMMANDS for word in (spec.name, *spec.aliases))

MAX_EXAMPLE_CHARS = 40  # the refused command, repeated in the example: never at length
MayRun = Callable[[CommandSpec], bool] | None


class Router:
    """Text in, reply out, for any number of runs (see the module docstring)."""

    def __init__(self, runs: RunSet, language: LanguagePreference, *, where: str) -> None:
        self._runs = runs
        self._language = language
        self._where = where  # where runs are looked for, for 'none found'

    def handle(self, text: str, may_run: MayRun = None, sender: str = "") -> Reply | None:
        """The reply to `text` from `sender` (whose `use` choice applies), None for chatter."""
        words = split_words(text)
        if not words:
            return None
        head = words[0].lower()
        runs = self._runs.all()
        if head.startswith("@") and len(head) > 1:
            parts = normalise(text).split(None, 1)
            return self._addressed(parts[0][1:], parts[1] if len(parts) > 1 else "", may_run)
        if head in RUNS_WORDS and len(words) == 1:
            return Reply(self.runs_text(self._language.for_command(words[0]), sender))
        if head in USE_WORDS and len(words) <= 2:
            return self._use(words, sender)
        if len(words) == 2 and words[1].lower() in ALL_WORDS:
            reply = self._all(words[0], may_run)
            if reply is not None:
                return reply
        if not runs:
            return self._none_found(words[0]) if head in COMMAND_WORDS else None
        if len(runs) == 1:
            return runs[0].dispatcher.handle(text, may_run)
        chosen = self._runs.chosen(sender)
        if chosen is not None:
            return self._named(chosen, chosen.dispatcher.handle(text, may_run))
        return self._unaddressed(text, runs, may_run)

    def runs_text(self, lang: str, sender: str = "") -> str:
        chosen = self._runs.chosen(sender)
        rows = [self._row(run, chosen=run is chosen) for run in self._runs.all()]
        return render_runs.runs_list(rows, lang) if rows else tr(lang, "runs_none", where=self._where)

    # -- the cases ------------------------------------------------------------------------------

    def _addressed(self, name: str, rest: str, may_run: MayRun) -> Reply | None:
        run = self._runs.get(name)
        bare = _one_address(rest)
        if run is not None and (run.dispatcher.parse(rest) is not None or not self._is_command(bare)):
            return self._named(run, run.dispatcher.handle(rest, may_run))
        if not self._is_command(bare):
            return None  # '@Alice see you': a mention of a person, chatter
        lang = self._language.for_command(bare.split()[0])
        if run is None:
            return Reply(tr(lang, "no_such_run", name=quote(name), runs=self.runs_text(lang)))
        # '@exp2 stop all', '@exp2 @exp1 stop': one run or more? Refused, never guessed.
        return Reply(tr(lang, "one_or_all", name=run.name, command=bare[:MAX_EXAMPLE_CHARS]))

    def _is_command(self, text: str) -> bool:
        """Whether `text` is a command for some run (with no run found: starts with a command word)."""
        runs = self._runs.all()
        if not runs:
            return bool(text.split()) and text.split()[0].lower() in COMMAND_WORDS
        return any(isinstance(run.dispatcher.parse(text), Command) for run in runs)

    def _use(self, words: list[str], sender: str) -> Reply:
        lang = self._language.for_command(words[0])
        if len(words) == 1:
            chosen = self._runs.chosen(sender)
            return Reply(tr(lang, "using_now", name=chosen.name) if chosen else tr(lang, "using_none"))
        run = self._runs.get(words[1])
        if run is None:
            return Reply(tr(lang, "no_such_run", name=quote(words[1]), runs=self.runs_text(lang)))
        self._runs.choose(run, sender)
        return Reply(tr(lang, "using", name=run.name))

    def _all(self, word: str, may_run: MayRun) -> Reply | None:
        runs = self._runs.all()
        if not runs:
            return self._none_found(word) if word.lower() in COMMAND_WORDS else None
        parsed = runs[0].dispatcher.parse(word)
        if not isinstance(parsed, Command) or parsed.name not in ALL_COMMANDS:
            return None
        lang = self._language.for_command(word)
        if may_run is not None and not may_run(runs[0].dispatcher.spec(parsed.name)):
            return Reply(tr(lang, "not_allowed"))
        return Reply(self._each(parsed, runs, lang))

    def _each(self, parsed: Command, runs: list[Run], lang: str) -> str:
        # A run whose connection closed would only time out: it is named as down instead.
        texts = {
            run.name: tr(lang, "run_not_sent") if run.down else run.dispatcher.run(parsed, lang).text
            for run in runs
        }
        if len(runs) == 1:
            return next(iter(texts.values()))
        return render_runs.blocks(texts) if parsed.name == "status" else render_runs.combined(texts)

    def _unaddressed(self, text: str, runs: list[Run], may_run: MayRun) -> Reply | None:
        parsed = next(
            (p for p in (run.dispatcher.parse(text) for run in runs) if isinstance(p, Command)), None
        )
        if parsed is None:
            return runs[0].dispatcher.handle(text, may_run)  # chatter, or a near miss's suggestions
        word = split_words(text)[0]
        spec = runs[0].dispatcher.spec(parsed.name)
        if may_run is not None and not may_run(spec):
            return runs[0].dispatcher.handle(text, may_run)  # 'only the owner can do that'
        if parsed.name == "help":
            reply = runs[0].dispatcher.handle(text, may_run)
            lang = self._language.current()
            hint = tr(lang, "runs_hint", name=runs[-1].name)
            return Reply(f"{reply.text}\n\n{hint}", reply.image) if reply is not None else None
        lang = self._language.for_command(word)
        if parsed.name == "status" and not parsed.args:
            return Reply(self._each(parsed, runs, lang))
        example = " ".join(split_words(text))[:MAX_EXAMPLE_CHARS]
        return Reply(tr(lang, "which_run", name=runs[0].name, command=example, runs=self.runs_text(lang)))

    def _none_found(self, word: str) -> Reply:
        return Reply(tr(self._language.for_command(word), "runs_none", where=self._where))

    def _named(self, run: Run, reply: Reply | None) -> Reply | None:
        if reply is None or not self._runs.several():
            return reply
        return Reply(render_runs.named(run.name, reply.text) if reply.text else "", reply.image)

    def _row(self, run: Run, *, chosen: bool) -> RunRow:
        last_step = run.handler.last_step if run.handler is not None else None
        if run.down or run.source.process_gone():
            return RunRow(run.name, down=True, last_step=last_step, chosen=chosen)
        try:
            status = run.link.request("status")
        except (TrainerUnavailable, RemoteError):
            return RunRow(run.name, last_step=last_step, chosen=chosen)
        return RunRow(run.name, status=status, chosen=chosen)


def _one_address(rest: str) -> str:
    """What follows an @name without a second address ('@exp1 stop') or a trailing all/全部
    ('stop all'): the command itself, when `rest` names more runs than the one."""
    words = rest.split()
    if len(words) > 1 and words[-1].lower() in ALL_WORDS:
        return " ".join(words[:-1])
    if len(words) > 1 and words[0].startswith("@"):
        return " ".join(words[1:])
    return rest
