"""Who may command the trainer from chat: one policy, used by every chat backend.

Access goes by the backend's stable sender id, never by a name the sender chooses: anyone can
set their WeChat nickname to "Alice". An allow-list entry is either

- a remark name (`Alice`): the name the owner gave a contact, which the contact cannot change.
  The backend hands the policy its contact list at every login (`resolve`), and the entry then
  stands for the ids of the contacts the owner named so. A contact who later renames himself,
  or whose profile changes in any way, gains nothing: only the next login resolves again, and
  again by remark name.
- a stable id (`id:o9cq80...@im.wechat`), for backends whose ids last (iLink's `from_user_id`).

The owner (the logged-in account) commands in its own chat with the bot: web WeChat's file
transfer chat, or a direct chat (the chat id is the owner's own id, as on iLink). The owner
talking to friends is not commanding. Everyone else is ignored and logged, never answered.

Roles: the owner may do everything. An allowed contact may only read (status, params, history,
plot, help) unless the entry says `=steer` (`Alice=steer`, `id:o9cq80...=steer`): a contact who
may watch is not thereby one who may stop the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.backend import OWNER_CHAT, IncomingText

logger = logging.getLogger(__name__)

ID_PREFIX = "id:"
OWNER, STEER, READ = "owner", "steer", "read"
ENTRY_ROLES = (READ, STEER)
READ_OPS = frozenset({"status", "describe", "get_params", "history"})  # plus local ones (no op)


@dataclass(frozen=True)
class Contact:
    """A contact as a backend knows it at login: its stable id and the owner's remark name."""

    id: str
    remark: str
    nickname: str = ""  # only for the hints in the log: never matched


class AccessPolicy:
    """The owner, plus contacts resolved from remark names at login, plus fixed ids; each a role."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        """`entries`: `NAME`, `id:ID`, either with `=read` (the default) or `=steer`; ValueError
        for another role."""
        self.fixed_ids: dict[str, str] = {}
        self.remarks: dict[str, str] = {}  # casefolded remark name -> role
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            name, _, role = entry.rpartition("=") if "=" in entry else (entry, "", READ)
            role = role.strip().lower()
            if role not in ENTRY_ROLES or not name.strip():
                raise ValueError(f"allow-list entry {entry!r}: expected NAME or NAME=steer (or id:ID)")
            if name.startswith(ID_PREFIX):
                self.fixed_ids[name[len(ID_PREFIX) :].strip()] = role
            else:
                self.remarks[name.strip().casefold()] = role
        self._lock = threading.Lock()
        self._resolved: dict[str, str] = {}

    def resolve(self, contacts: Iterable[Contact]) -> frozenset[str]:
        """At login: allow the ids of contacts whose remark is on the list (replacing the last
        login's ids, which the chat service may have reassigned). Returns the allowed ids."""
        known = list(contacts)
        resolved: dict[str, str] = {}
        for remark, role in sorted(self.remarks.items()):
            matches = [c for c in known if c.remark.strip().casefold() == remark and c.id]
            if len(matches) > 1:
                logger.warning("allowed remark %r names %d contacts: all are allowed", remark, len(matches))
            if not matches:
                logger.warning("allowed name %r is no contact's remark name%s", remark, _hint(remark, known))
            for contact in matches:
                logger.info("allowed contact %r (%s) is %s", remark, role, contact.id)
                resolved[contact.id] = role
        with self._lock:
            self._resolved = resolved
        return self.allowed_ids()

    def allowed_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._resolved) | frozenset(self.fixed_ids)

    def role(self, message: IncomingText) -> str | None:
        """OWNER, STEER or READ for who sent `message` (and where), None for everyone else."""
        if message.from_owner:
            return OWNER if message.chat_id in (OWNER_CHAT, message.sender_id) else None
        if not message.sender_id:
            return None
        with self._lock:
            return self.fixed_ids.get(message.sender_id) or self._resolved.get(message.sender_id)

    def permits(self, message: IncomingText) -> bool:
        return self.role(message) is not None

    @staticmethod
    def may_run(role: str | None, op: str | None) -> bool:
        """Whether `role` may run a command that needs trainer operation `op` (None: a local one)."""
        if role in (OWNER, STEER):
            return True
        return role == READ and (op is None or op in READ_OPS)

    def check(self, message: IncomingText) -> str | None:
        """`role`, logging a refusal (who sent it, not the text)."""
        role = self.role(message)
        if role is not None:
            return role
        if message.from_owner:
            logger.debug("the owner's message in chat %s is not a command", message.chat_id)
        else:
            logger.info(
                "ignored message from %s (nickname %r, remark %r): not on the allow-list",
                message.sender_id,
                message.sender_name,
                message.sender_remark,
            )
        return None


def _hint(remark: str, contacts: list[Contact]) -> str:
    if any(c.nickname.strip().casefold() == remark for c in contacts):
        return (
            "; a contact has it as nickname, which anyone can choose: set it as that contact's "
            "remark name in WeChat to allow them"
        )
    return ""
