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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.backend import OWNER_CHAT, IncomingText

logger = logging.getLogger(__name__)

ID_PREFIX = "id:"


@dataclass(frozen=True)
class Contact:
    """A contact as a backend knows it at login: its stable id and the owner's remark name."""

    id: str
    remark: str
    nickname: str = ""  # only for the hints in the log: never matched


class AccessPolicy:
    """The owner, plus contacts resolved from remark names at login, plus fixed ids."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        cleaned = [entry.strip() for entry in entries if entry.strip()]
        self.fixed_ids = frozenset(e[len(ID_PREFIX) :].strip() for e in cleaned if e.startswith(ID_PREFIX))
        self.remarks = frozenset(e.casefold() for e in cleaned if not e.startswith(ID_PREFIX))
        self._lock = threading.Lock()
        self._resolved: frozenset[str] = frozenset()

    def resolve(self, contacts: Iterable[Contact]) -> frozenset[str]:
        """At login: allow the ids of contacts whose remark is on the list (replacing the last
        login's ids, which the chat service may have reassigned). Returns the allowed ids."""
        known = list(contacts)
        ids = {c.id for c in known if c.remark.strip().casefold() in self.remarks and c.id}
        for remark in sorted(self.remarks):
            matches = [c for c in known if c.remark.strip().casefold() == remark]
            if len(matches) > 1:
                logger.warning("allowed remark %r names %d contacts: all are allowed", remark, len(matches))
            if not matches:
                logger.warning("allowed name %r is no contact's remark name%s", remark, _hint(remark, known))
            for contact in matches:
                logger.info("allowed contact %r is %s", remark, contact.id)
        with self._lock:
            self._resolved = frozenset(ids)
        return self._resolved | self.fixed_ids

    def allowed_ids(self) -> frozenset[str]:
        with self._lock:
            return self._resolved | self.fixed_ids

    def permits(self, message: IncomingText) -> bool:
        if message.from_owner:
            return message.chat_id in (OWNER_CHAT, message.sender_id)
        return bool(message.sender_id) and message.sender_id in self.allowed_ids()

    def check(self, message: IncomingText) -> bool:
        """`permits`, logging the refusal (who sent it, not the text)."""
        if self.permits(message):
            return True
        if message.from_owner:
            logger.debug("the owner's message in chat %s is not a command", message.chat_id)
        else:
            logger.info(
                "ignored message from %s (nickname %r, remark %r): not on the allow-list",
                message.sender_id,
                message.sender_name,
                message.sender_remark,
            )
        return False


def _hint(remark: str, contacts: list[Contact]) -> str:
    if any(c.nickname.strip().casefold() == remark for c in contacts):
        return (
            "; a contact has it as nickname, which anyone can choose: set it as that contact's "
            "remark name in WeChat to allow them"
        )
    return ""
