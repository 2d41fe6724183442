"""PROTOCOL.md and the code agree on what a peer in another language would rely on."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import EVENTS, OPERATIONS, PROTOCOL_VERSION, TOPICS, ErrorCode

SPEC = Path(__file__).resolve().parents[2] / "PROTOCOL.md"


def test_the_spec_states_the_code_protocol_version() -> None:
    text = SPEC.read_text()
    assert text.splitlines()[0] == f"# chattrain protocol, version {PROTOCOL_VERSION}"
    assert f"Protocol version: **{PROTOCOL_VERSION}**" in text


def test_the_spec_lists_every_error_code_and_operation() -> None:
    text = SPEC.read_text()
    documented_codes = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert set(ErrorCode.ALL) <= documented_codes
    for op in OPERATIONS:
        assert f"| `{op}` |" in text, f"op {op} is not in PROTOCOL.md"


def test_the_spec_lists_exactly_the_events_and_topics_of_the_code() -> None:
    text = SPEC.read_text()
    events_paragraph = text.split("\nEvents: ", 1)[1].split("\n\n", 1)[0]
    words = set(re.findall(r"`([a-z_]+)`", events_paragraph))
    assert set(EVENTS) <= words, f"events missing from PROTOCOL.md: {set(EVENTS) - words}"
    assert words - set(EVENTS) <= {"path", "step"}, (
        f"PROTOCOL.md names events the code lacks: {words - set(EVENTS)}"
    )
    table = set(re.findall(r"^\| `([a-z.<>]+)` \|", text.split("### Topics", 1)[1], flags=re.MULTILINE))
    concrete = {topic if not topic.startswith("event.") else "event.<name>" for topic in TOPICS}
    assert concrete == table
