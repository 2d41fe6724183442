"""The chat grammar: seed commands, English forms, near misses and chatter."""

from __future__ import annotations

import pytest

from sidecar.commands import COMMANDS
from sidecar.grammar import Command, Unknown, Vocabulary, parse, parse_assignments
from sidecar.i18n import LanguagePreference
from sidecar.link import SEED_PARAM_WORDS

VOCABULARY = Vocabulary(
    {w.lower(): (s.name, s.max_args) for s in COMMANDS for w in (s.name, *s.aliases)},
    SEED_PARAM_WORDS,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("开始", Command("start")),
        ("停止", Command("stop")),
        ("参数", Command("params")),
        ("lr 0.01", Command("set", ("lr", "0.01"))),
        ("ti 300000", Command("set", ("ti", "300000"))),
        ("bs 64", Command("set", ("bs", "64"))),
        ("ds 20", Command("set", ("ds", "20"))),
    ],
)
def test_seed_commands_parse_verbatim(text: str, expected: Command) -> None:
    assert parse(text, VOCABULARY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start", Command("start")),
        ("Stop", Command("stop")),
        ("pause", Command("pause")),
        ("resume", Command("resume")),
        ("status", Command("status")),
        ("params", Command("params")),
        ("set lr 0.01", Command("set", ("lr", "0.01"))),
        ("set lr=0.01 bs=64", Command("set", ("lr=0.01", "bs=64"))),
        ("lr=0.01 bs=64", Command("set", ("lr=0.01", "bs=64"))),
        ("history", Command("history")),
        ("history 5", Command("history", ("5",))),
        ("plot", Command("plot")),
        ("checkpoint", Command("checkpoint")),
        ("eval", Command("eval")),
        ("help", Command("help")),
        ("help set", Command("help", ("set",))),
        ("/status", Command("status")),
        ("  status  ", Command("status")),
        ("lr＝0.01", Command("set", ("lr=0.01",))),
        ("暂停", Command("pause")),
        ("状态", Command("status")),
    ],
)
def test_english_and_other_forms_parse(text: str, expected: Command) -> None:
    assert parse(text, VOCABULARY) == expected


@pytest.mark.parametrize(
    ("text", "closest"),
    [("stpo", "stop"), ("stauts", "status"), ("hepl", "help"), ("chekpoint", "checkpoint")],
)
def test_a_short_near_miss_is_answered_with_the_closest_command(text: str, closest: str) -> None:
    parsed = parse(text, VOCABULARY)
    assert isinstance(parsed, Unknown)
    assert parsed.suggestions[0] == closest


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello",
        "你好",
        "ok",
        "thanks, see you tomorrow",
        "stop by the shop later",  # a command word, but more words than stop takes
        "lr is too high",  # a parameter word, but not name/value pairs of parameters
        "statuses of all the experiments we ran last week",  # long: not a near miss
        "history of the project is long",
    ],
)
def test_chatter_is_not_a_command(text: str) -> None:
    assert parse(text, VOCABULARY) is None


def test_assignments_accept_every_spelling() -> None:
    assert parse_assignments(["lr", "0.01", "bs=64", "ds", "=", "20", "ti=", "5"]) == [
        ("lr", "0.01"),
        ("bs", "64"),
        ("ds", "20"),
        ("ti", "5"),
    ]


def test_a_name_given_twice_is_kept_for_the_validator_to_refuse() -> None:
    assert parse_assignments(["lr", "0.01", "LR=0.5"]) == [("lr", "0.01"), ("lr", "0.5")]


@pytest.mark.parametrize("words", [[], ["lr"], ["lr", "="], ["=", "3"], ["lr", "1", "bs"]])
def test_malformed_assignments_raise(words: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_assignments(words)


def test_a_new_parameter_from_describe_needs_no_grammar_change() -> None:
    vocabulary = Vocabulary(VOCABULARY.commands, SEED_PARAM_WORDS | {"dropout"})
    assert parse("dropout 0.5", vocabulary) == Command("set", ("dropout", "0.5"))


@pytest.mark.parametrize(("text", "closest"), [("开使", "开始"), ("停至", "停止"), ("状太", "状态")])
def test_a_chinese_near_miss_is_answered_with_the_chinese_command(text: str, closest: str) -> None:
    parsed = parse(text, VOCABULARY)
    assert isinstance(parsed, Unknown)
    assert parsed.suggestions[0] == closest


@pytest.mark.parametrize("text", ["你好", "开会 明天 上午", "谢谢"])
def test_chinese_chatter_is_not_a_near_miss(text: str) -> None:
    assert parse(text, VOCABULARY) is None


def test_replies_follow_the_language_of_the_command_word() -> None:
    preference = LanguagePreference()
    assert preference.current() == "en"
    assert [preference.for_command(w) for w in ("参数", "lr", "status", "?", "开始")] == [
        "zh",
        "zh",  # a parameter word keeps the owner's language
        "en",
        "en",
        "zh",
    ]
    assert preference.current() == "zh"  # notices follow the last command
    pinned = LanguagePreference("en")
    assert pinned.for_command("开始") == "en" and pinned.current() == "en"
    with pytest.raises(ValueError, match="'fr'"):
        LanguagePreference("fr")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("？", Command("help")),
        ("ｓｔｏｐ", Command("stop")),
        ("ＳＴＡＴＵＳ", Command("status")),
        ("／ｓｔａｔｕｓ", Command("status")),
        ("lr 0．01", Command("set", ("lr", "0.01"))),
        ("ｌｒ＝０．０１", Command("set", ("lr=0.01",))),
        ("lr：0.01，bs：64", Command("set", ("lr=0.01", "bs=64"))),
        ("帮助　ｌｒ", Command("help", ("lr",))),
        ("停止", Command("stop")),
    ],
)
def test_full_width_input_reads_as_ascii(text: str, expected: Command) -> None:
    assert parse(text, VOCABULARY) == expected
