"""Who may command the trainer from chat.

By default only the account owner, and only in the owner's own file-transfer chat
("filehelper"): the owner talking to friends is not commanding. Contacts on the allow-list
(matched by remark name or nickname, case-insensitive) may command from their own chat.
Everyone else is ignored and logged, never answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.backend import OWNER_CHAT, IncomingText

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccessPolicy:
    """The owner (in OWNER_CHAT) plus contacts named in `allow`."""

    allow: frozenset[str] = frozenset()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> AccessPolicy:
        return cls(frozenset(n.strip().casefold() for n in names if n.strip()))

    def permits(self, message: IncomingText) -> bool:
        if message.from_owner:
            return message.chat_id == OWNER_CHAT
        names = {message.sender_remark.casefold(), message.sender_name.casefold()} - {""}
        return bool(names & self.allow)

    def check(self, message: IncomingText) -> bool:
        """`permits`, logging the refusal (sender, not the text)."""
        if self.permits(message):
            return True
        if not message.from_owner:
            logger.info(
                "ignored message from %r (remark %r, id %s): not on the allow-list",
                message.sender_name,
                message.sender_remark,
                message.sender_id,
            )
        return False
