"""Access policy and the persisted cursor."""

from __future__ import annotations

from pathlib import Path

from sidecar.access import AccessPolicy
from sidecar.backend import IncomingText
from sidecar.cursor import Cursor, CursorStore


def message(
    *, owner: bool = False, chat: str = "filehelper", name: str = "", remark: str = ""
) -> IncomingText:
    return IncomingText("status", "@id", name, remark, chat, owner)


def test_by_default_only_the_owner_in_the_file_transfer_chat() -> None:
    policy = AccessPolicy.from_names([])
    assert policy.permits(message(owner=True))
    assert not policy.permits(message(owner=True, chat="@friend"))
    assert not policy.permits(message(name="Alice", chat="@alice"))


def test_allow_list_matches_remark_or_nickname_case_insensitively() -> None:
    policy = AccessPolicy.from_names(["ally", " Bob "])
    assert policy.permits(message(name="Alice", remark="Ally", chat="@alice"))
    assert policy.permits(message(name="BOB", chat="@bob"))
    assert not policy.permits(message(name="Mallory", remark="", chat="@m"))
    assert not policy.permits(message(name="", remark="", chat="@x"))


def test_cursor_round_trips_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    store = CursorStore(tmp_path)
    assert store.load() is None
    store.save(Cursor("s1", 42))
    assert CursorStore(tmp_path).load() == Cursor("s1", 42)
    store.path.write_text("{not json")
    assert CursorStore(tmp_path).load() is None
    assert [p.name for p in tmp_path.iterdir()] == ["cursor.json"]  # no temporary files left
