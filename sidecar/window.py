"""iLink's reply window per chat: what the bot may still send, and what it holds back.

iLink delivers the bot's messages only for a while after the user's last message (about 24 h
documented, refusals seen after 11-15 h) and only about 10 per inbound message; the bot's own
sends do not renew it. `ReplyWindows` counts per chat and decides per message:
- a reply to a command is always sent;
- alerts (failed, finished, stopped, trainer down/back) may spend the last message;
- other events keep 2 in reserve, progress 3 (progress never spends the last of the budget);
- once, when 2 are left or the window is about to close, the owner is told to write;
- what is held is kept (alerts and events in order, progress latest only, a reply whole) and
  comes back as ONE summary with the next inbound message, in the sidecar's language. The
  state survives a restart (a JSON file).
Wall-clock time (the window outlives the process); the clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sidecar.backend import Priority
from sidecar.i18n import EN, duration, tr
from sidecar.ilink_store import read_json, write_private_json

WINDOW_FILE = "ilink_window.json"
DEFAULT_WINDOW_S = 12 * 3600.0  # conservative: users see refusals after 11-15 h (openclaw-weixin #309)
DEFAULT_PER_INBOUND = 10  # openclaw-weixin #81
RESERVE = {Priority.REPLY: 0, Priority.ALERT: 0, Priority.EVENT: 2, Priority.PROGRESS: 3}
NOTICE_AT_LEFT = 2  # the notice itself is sent when this many are left, keeping 1 for an alert
CLOSING_NOTICE_S = 3600.0
MAX_HELD = 30
SUMMARY_LINE_CHARS = 160
SUMMARY_REPLY_CHARS = 2000  # a held reply comes whole (its first line alone would not answer)


@dataclass
class ChatWindow:
    context_token: str = ""
    last_inbound: float = 0.0
    spent: int = 0
    noticed: bool = False
    refused: bool = False  # the server answered ret -2: closed until the next inbound
    held: list[tuple[int, str]] = field(default_factory=list)  # (priority, text)
    held_dropped: int = 0


class ReplyWindows:
    """Every chat's window, persisted in `<state_dir>/ilink_window.json`. Thread-safe."""

    def __init__(
        self,
        state_dir: Path,
        window_s: float = DEFAULT_WINDOW_S,
        per_inbound: int = DEFAULT_PER_INBOUND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(state_dir) / WINDOW_FILE
        self.window_s = window_s
        self.per_inbound = per_inbound
        self._clock = clock
        self._lock = threading.Lock()
        self._chats = {chat: _chat(data) for chat, data in read_json(self.path).items()}

    def context_token(self, chat: str) -> str:
        with self._lock:
            return self._get(chat).context_token

    def inbound(self, chat: str, context_token: str, lang: str = EN) -> str | None:
        """The chat wrote: the window opens; returns the summary of what was held, if any."""
        with self._lock:
            window = self._get(chat)
            summary = _summary(window, lang)
            self._chats[chat] = ChatWindow(
                context_token=context_token or window.context_token, last_inbound=self._clock()
            )
            self._save()
            return summary

    def may_send(self, chat: str, priority: Priority) -> bool:
        with self._lock:
            window = self._get(chat)
            if not window.context_token:
                return False
            if priority is Priority.REPLY:
                return True
            return self._open(window) and self._left(window) >= 1 + RESERVE[priority]

    def sent(self, chat: str) -> None:
        with self._lock:
            self._get(chat).spent += 1
            self._save()

    def refused(self, chat: str) -> None:
        """The server said ret -2: nothing more goes out until the chat writes again."""
        with self._lock:
            self._get(chat).refused = True
            self._save()

    def hold(self, chat: str, priority: Priority, text: str) -> None:
        with self._lock:
            window = self._get(chat)
            if priority is Priority.PROGRESS:
                window.held = [h for h in window.held if h[0] != Priority.PROGRESS]
            window.held.append((int(priority), text))
            while len(window.held) > MAX_HELD:
                oldest = min(range(len(window.held)), key=lambda i: (window.held[i][0] == Priority.ALERT, i))
                del window.held[oldest]
                window.held_dropped += 1
            self._save()

    def take_notice(self, chat: str, lang: str = EN) -> str | None:
        """The one 'send any message' notice, when it is due (marks it said)."""
        with self._lock:
            window = self._get(chat)
            if window.noticed or not self._open(window):
                return None
            left_s = window.last_inbound + self.window_s - self._clock()
            if self._left(window) <= NOTICE_AT_LEFT:
                why = tr(lang, "window_left", count=self._left(window))
            elif left_s <= CLOSING_NOTICE_S:
                why = tr(lang, "window_closing", duration=duration(left_s, lang))
            else:
                return None
            window.noticed = True
            self._save()
            return tr(lang, "window_notice", why=why)

    def held(self, chat: str) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._get(chat).held)

    def _open(self, window: ChatWindow) -> bool:
        return not window.refused and self._clock() < window.last_inbound + self.window_s

    def _left(self, window: ChatWindow) -> int:
        return self.per_inbound - window.spent

    def _get(self, chat: str) -> ChatWindow:
        return self._chats.setdefault(chat, ChatWindow())

    def _save(self) -> None:
        write_private_json(self.path, {chat: asdict(w) for chat, w in self._chats.items()})


def _chat(data: Any) -> ChatWindow:
    if not isinstance(data, dict):
        return ChatWindow()
    try:
        window = ChatWindow(**data)
    except TypeError:
        return ChatWindow()
    window.held = [(int(p), str(t)) for p, t in window.held]
    return window


def _summary(window: ChatWindow, lang: str) -> str | None:
    if not window.held:
        return None
    lines = [_line(priority, text) for priority, text in window.held if priority != Priority.PROGRESS]
    progress = [text for priority, text in window.held if priority == Priority.PROGRESS]
    if progress:
        lines.append(tr(lang, "held_progress", line=_line(Priority.PROGRESS, progress[-1])))
    if window.held_dropped:
        lines.append(tr(lang, "held_dropped", count=window.held_dropped))
    count = len(window.held) + window.held_dropped
    return tr(lang, "held_head_one" if count == 1 else "held_head", count=count) + "\n" + "\n".join(lines)


def _line(priority: int, text: str) -> str:
    """What the summary says of one held message: a reply whole, anything else its first line."""
    if priority == Priority.REPLY:
        line, most = text.strip(), SUMMARY_REPLY_CHARS
    else:
        line, most = (text.strip().splitlines() or [""])[0], SUMMARY_LINE_CHARS
    return line if len(line) <= most else line[: most - 1] + "…"
