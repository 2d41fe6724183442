"""Chat text -> (command, args): the sidecar's grammar, as pure functions.

The rule that separates commands from chatter (documented in the README too):

1. The first word (case-insensitive, a leading '/' dropped, 'lr=0.01' split at '=') is looked up
   in the vocabulary: command names and aliases (``start``, ``开始``...) and parameter names
   and aliases from the trainer's ``describe`` (``lr``, ``learning_rate``...).
2. A command word starts a command when the rest of the message fits the command's arity
   (``stop`` takes nothing, so "stop by the shop later" is chatter).
3. A parameter word starts a ``set``: the seed's ``lr 0.01``, also ``lr=0.01 bs=64``; text that
   does not split into name/value pairs whose names are all parameters (or close to one) is
   chatter ("lr is too high").
4. An unknown first word is a mistyped command only when the message is short (at most
   ``MAX_UNKNOWN_WORDS`` words and ``MAX_UNKNOWN_CHARS`` characters) and the word is close to a
   known one (difflib ratio >= ``CLOSE_MATCH_CUTOFF``): it is answered with the closest matches.
   A Chinese word (``开使``, an input method's homophone for ``开始``) is compared with the Chinese
   words only, character by character, and is a near miss when at least half its characters
   match in place (``CHINESE_MATCH_CUTOFF``) and it is the whole message.
5. Everything else is chatter: never answered.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.i18n import is_chinese

MAX_UNKNOWN_WORDS = 3
MAX_UNKNOWN_CHARS = 24
CLOSE_MATCH_CUTOFF = 0.7
CHINESE_MATCH_CUTOFF = 0.5
MAX_SUGGESTIONS = 3
SET_COMMAND = "set"

# Full-width forms a Chinese input method produces that mean something else here: "：" and "，"
# separate a name from its value and one pair from the next. NFKC (see `normalise`) does the rest.
_TRANSLATION = str.maketrans({"＝": "=", "，": " ", ",": " ", "\u3000": " ", "：": "=", "／": "/"})


@dataclass(frozen=True)
class Vocabulary:
    """The words the grammar knows.

    commands: word (name or alias, lower case) -> (canonical command name, max args or None
    for any number). params: parameter names and aliases, lower case.
    """

    commands: Mapping[str, tuple[str, int | None]]
    params: frozenset[str]

    def words(self) -> list[str]:
        return sorted(set(self.commands) | self.params)


@dataclass(frozen=True)
class Command:
    """A parsed command: canonical name and its argument words."""

    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unknown:
    """A short message whose first word is close to a known word."""

    word: str
    suggestions: tuple[str, ...]


Parsed = Command | Unknown | None


def normalise(text: str) -> str:
    """What an input method types read as ASCII, surrounding space stripped.

    The table first (so that "：" becomes "=", while an ASCII ":" stays as typed), then NFKC:
    full-width letters, digits and punctuation (``ｓｔｏｐ``, ``0．01``, ``？``, ``＠exp2``) become
    their ASCII forms; Chinese characters are left as they are.
    """
    return unicodedata.normalize("NFKC", text.translate(_TRANSLATION)).strip()


def split_words(text: str) -> list[str]:
    """Words of a message; a leading '/' (a habit from other bots) is dropped."""
    words = normalise(text).split()
    if words and words[0].startswith("/") and len(words[0]) > 1:
        words[0] = words[0][1:]
    return words


def parse(text: str, vocabulary: Vocabulary) -> Parsed:
    """Parse one chat message; None means chatter (not answered)."""
    words = split_words(text)
    if not words:
        return None
    head = words[0].split("=", 1)[0].lower()
    if head in vocabulary.commands:
        name, max_args = vocabulary.commands[head]
        args = tuple(words[1:])
        if max_args is not None and len(args) > max_args:
            return None
        return Command(name, args)
    if head in vocabulary.params:
        return Command(SET_COMMAND, tuple(words)) if _is_settings(words, vocabulary) else None
    return _unknown(head, words, vocabulary)


def _unknown(head: str, words: list[str], vocabulary: Vocabulary) -> Unknown | None:
    if len(words) > MAX_UNKNOWN_WORDS or sum(len(w) for w in words) > MAX_UNKNOWN_CHARS:
        return None
    if is_chinese(head):
        matches = _chinese_matches(head, vocabulary.words()) if len(words) == 1 else []
    else:
        matches = difflib.get_close_matches(
            head, vocabulary.words(), n=MAX_SUGGESTIONS, cutoff=CLOSE_MATCH_CUTOFF
        )
    return Unknown(head, tuple(matches)) if matches else None


def _chinese_matches(head: str, words: list[str]) -> list[str]:
    """Chinese words with the same characters in the same places as `head` (a mistyped
    character, as an input method's homophone gives), best first."""
    scored = []
    for word in words:
        if is_chinese(word):
            same = sum(a == b for a, b in zip(head, word, strict=False))
            score = same / max(len(head), len(word))
            if score >= CHINESE_MATCH_CUTOFF:
                scored.append((-score, word))
    return [word for _, word in sorted(scored)[:MAX_SUGGESTIONS]]


def _is_settings(words: list[str], vocabulary: Vocabulary) -> bool:
    """Bare ``lr 0.01 bs 64``: pairs whose names are all parameters (or close, i.e. typos)."""
    try:
        pairs = parse_assignments(words)
    except ValueError:
        return False
    known = sorted(vocabulary.params)
    return all(
        name in vocabulary.params or difflib.get_close_matches(name, known, n=1, cutoff=CLOSE_MATCH_CUTOFF)
        for name, _ in pairs
    )


def parse_assignments(words: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``['lr', '0.01', 'bs=64']`` -> ``[('lr', '0.01'), ('bs', '64')]``; ValueError if malformed.

    Accepts ``name value``, ``name=value`` and ``name = value``; names are lower-cased, values
    are kept as typed (the trainer's ParamSpec coerces them). Pairs, not a map: a name given
    twice must reach the validator, which refuses it, rather than quietly keep its last value.
    """
    tokens: list[str] = []
    for word in words:
        if "=" in word and word != "=":
            name, _, value = word.partition("=")
            tokens.extend(part for part in (name, "=", value) if part)
        else:
            tokens.append(word)
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(tokens):
        name = tokens[index]
        index += 1
        if index < len(tokens) and tokens[index] == "=":
            index += 1
        if name == "=" or index >= len(tokens) or tokens[index] == "=":
            raise ValueError(f"expected 'name value' pairs, got {' '.join(words)[:40]!r}")
        pairs.append((name.lower(), tokens[index]))
        index += 1
    if not pairs:
        raise ValueError("expected at least one 'name value' pair")
    return pairs
