"""PROTOCOL.md and the code agree on what a peer in another language would rely on."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import OPERATIONS, PROTOCOL_VERSION, ErrorCode

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
