"""Access policy (by stable id, never by a name the sender picks) and the persisted cursor."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sidecar.access import OWNER, READ, STEER, AccessPolicy, Contact
from sidecar.backend import IncomingText
from sidecar.cursor import Cursor, CursorStore


def message(
    *, owner: bool = False, sender: str = "@id", chat: str = "filehelper", name: str = "", remark: str = ""
) -> IncomingText:
    return IncomingText("status", sender, name, remark, chat, owner)


ALICE = Contact("@alice", "Ally", "Alice")
MALLORY = Contact("@mallory", "", "Ally")  # chose the allowed name as his nickname


def test_by_default_only_the_owner_in_the_owners_own_chat() -> None:
    policy = AccessPolicy([])
    assert policy.permits(message(owner=True))
    assert policy.permits(message(owner=True, sender="@me", chat="@me"))  # a direct chat (iLink)
    assert not policy.permits(message(owner=True, chat="@friend"))
    assert not policy.permits(message(sender="@alice", name="Alice", chat="@alice"))


def test_an_allowed_remark_name_stands_for_the_contacts_the_owner_named_so() -> None:
    policy = AccessPolicy(["ally", " "])
    assert policy.resolve([ALICE, MALLORY, Contact("@bob", "", "Bob")]) == {"@alice"}
    assert policy.permits(message(sender="@alice", chat="@alice"))
    assert not policy.permits(message(sender="@bob", chat="@bob"))


def test_names_in_a_message_never_grant_access() -> None:
    policy = AccessPolicy(["Ally"])
    policy.resolve([ALICE, MALLORY])
    # Mallory's nickname, and later any rename, shows in the message: it counts for nothing.
    assert not policy.permits(message(sender="@mallory", name="Ally", remark="Ally", chat="@mallory"))
    assert not policy.permits(message(sender="", name="Ally", remark="Ally", chat=""))


def test_each_login_replaces_the_ids_of_the_last(caplog: pytest.LogCaptureFixture) -> None:
    policy = AccessPolicy(["Ally"])
    policy.resolve([ALICE])
    with caplog.at_level(logging.WARNING, logger="sidecar.access"):
        assert policy.resolve([MALLORY]) == frozenset()
    assert not policy.permits(message(sender="@alice", chat="@alice"))
    assert "a contact has it as nickname, which anyone can choose" in caplog.text


def test_a_stable_id_entry_is_allowed_without_a_contact_list() -> None:
    policy = AccessPolicy(["id:o9cq80@im.wechat"])
    assert policy.permits(message(sender="o9cq80@im.wechat", chat="o9cq80@im.wechat"))
    assert policy.resolve([]) == {"o9cq80@im.wechat"}


def test_roles_contacts_read_unless_allowed_to_steer_and_bad_roles_are_refused() -> None:
    policy = AccessPolicy(["Ally", "Bob=steer", "id:o9=STEER"])
    policy.resolve([ALICE, Contact("@bob", "bob")])
    roles = [policy.role(message(sender=s, chat=s)) for s in ("@alice", "@bob", "o9", "@eve")]
    assert roles == [READ, STEER, STEER, None]
    assert policy.role(message(owner=True)) == OWNER
    assert AccessPolicy.may_run(READ, "status") and AccessPolicy.may_run(READ, None)  # plot, help
    assert not AccessPolicy.may_run(READ, "stop") and not AccessPolicy.may_run(READ, "set_params")
    assert AccessPolicy.may_run(STEER, "stop") and not AccessPolicy.may_run(None, "status")
    with pytest.raises(ValueError, match="expected NAME or NAME=steer"):
        AccessPolicy(["Ally=admin"])


def test_cursor_round_trips_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    store = CursorStore(tmp_path)
    assert store.load() is None
    store.save(Cursor("s1", 42))
    assert CursorStore(tmp_path).load() == Cursor("s1", 42)
    store.path.write_text("{not json")
    assert CursorStore(tmp_path).load() is None
    assert [p.name for p in tmp_path.iterdir()] == ["cursor.json"]  # no temporary files left
