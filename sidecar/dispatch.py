"""Text in, reply out: parse with the grammar, run the command, turn failures into replies.

Every command gets a reply: its result; `CommandError` verbatim; 'trainer unavailable' when
the control client gave up (bounded by its timeout and retries); the trainer's refusal; 'could
not send that' for a request the wire cannot carry (nothing changed); or,
for anything unexpected, a generic 'internal error' while the traceback goes to the log.
Chatter gets None (no reply). The reply's language follows the command's first word (i18n.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from protocol import ProtocolError, RemoteError, TrainerUnavailable
from sidecar import render
from sidecar.commands import CommandContext, CommandError, CommandSpec, Reply
from sidecar.grammar import Command, Unknown, Vocabulary, parse, split_words
from sidecar.i18n import EN, LanguagePreference, tr

logger = logging.getLogger(__name__)

INTERNAL_ERROR_TEXT = tr(EN, "internal")
UNAVAILABLE_TEXT = tr(EN, "unavailable")
NOT_ALLOWED_TEXT = tr(EN, "not_allowed")


class Dispatcher:
    """Routes parsed commands to the registered command functions."""

    def __init__(
        self,
        commands: Sequence[CommandSpec],
        context: CommandContext,
        language: LanguagePreference | None = None,
    ) -> None:
        self._commands = {spec.name: spec for spec in commands}
        self._words = {
            word.lower(): (spec.name, spec.max_args)
            for spec in commands
            for word in (spec.name, *spec.aliases)
        }
        self._context = context
        self._language = language or LanguagePreference()
        context.commands = tuple(commands)

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self._words, self._context.link.catalog.param_words())

    def parse(self, text: str) -> Command | Unknown | None:
        """What `text` is for this run's vocabulary (its trainer's parameter words)."""
        return parse(text, self.vocabulary())

    def spec(self, name: str) -> CommandSpec:
        return self._commands[name]

    def handle(self, text: str, may_run: Callable[[CommandSpec], bool] | None = None) -> Reply | None:
        """The reply to `text`, or None when it is chatter; `may_run` says which commands the
        sender's role allows (the access policy's; None: all)."""
        parsed = parse(text, self.vocabulary())
        if parsed is None:
            return None
        lang = self._language.for_command(split_words(text)[0])
        if isinstance(parsed, Unknown):
            return Reply(render.unknown_command(parsed.word, parsed.suggestions, lang=lang))
        if may_run is not None and not may_run(self._commands[parsed.name]):
            return Reply(tr(lang, "not_allowed"))
        return self.run(parsed, lang)

    def run(self, parsed: Command, lang: str = EN) -> Reply:
        spec = self._commands[parsed.name]
        try:
            result = spec(self._context.in_language(lang), parsed.args)
        except CommandError as error:
            return Reply(str(error))
        except TrainerUnavailable:
            logger.warning("command %s: trainer unavailable", parsed.name)
            return Reply(tr(lang, "unavailable"))
        except RemoteError as error:
            logger.info("command %s refused: %s %s", parsed.name, error.code, error.message)
            return Reply(
                tr(lang, "refused", code=error.code, message=error.message[: render.MAX_ERROR_CHARS])
            )
        except ProtocolError as error:
            # The client raises it only for a request it could not encode (a reply it cannot
            # decode counts as no reply), so nothing was sent: the owner's values, not a bug.
            logger.info("command %s not sent: %s", parsed.name, error)
            return Reply(tr(lang, "not_sent", error=str(error)[: render.MAX_ERROR_CHARS]))
        except Exception:
            logger.exception("command %s %r failed", parsed.name, parsed.args)
            return Reply(tr(lang, "internal"))
        return result if isinstance(result, Reply) else Reply(result)
