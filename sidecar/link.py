"""The sidecar's view of the trainer: its parameter catalog and a locked control client.

`Catalog` holds the trainer's last `describe` result. The feed thread refreshes it (with its
own client) on every new session, so the message thread can parse chat text without a
request per message; when no trainer was ever seen, the seed's parameter words stand in so
`lr 0.01` is still taken as a command (and answered 'trainer unavailable').
`TrainerLink` serialises the message path's requests on one ControlClient.
`OwnChanges` remembers the parameter changes the chat itself made (already answered), so the feed
does not announce them a second time.
`fetch_history` pages through the trainer's `history` op, coping with a ring that moved on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from protocol import ControlClient, ErrorCode, ParamSpec, RemoteError

logger = logging.getLogger(__name__)

# The seed script's parameters, used only until the trainer has described itself.
SEED_PARAM_WORDS = frozenset(
    {"lr", "learning_rate", "ti", "training_iters", "bs", "batch_size", "ds", "display_step"}
)
HISTORY_PAGE_LIMIT = 1000
HISTORY_MAX_PAGES = 20

OWN_CHANGE_TTL_S = 120.0  # a change's event comes within a step; after this it is someone else's

Request = Callable[..., dict[str, Any]]


class OwnChanges:
    """Parameter changes made from the chat, until the trainer's param_changed event for each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Any, float]] = {}

    def note(self, params: Mapping[str, Any]) -> None:
        with self._lock:
            for name, value in params.items():
                self._pending[name] = (value, self._clock())

    def consume(self, name: str, new: Any) -> bool:
        """True (once) when the change of `name` to `new` was the chat's own."""
        with self._lock:
            value, at = self._pending.get(name, (None, None))
            if at is None or value != new or self._clock() - at > OWN_CHANGE_TTL_S:
                return False
            del self._pending[name]
            return True


class Catalog:
    """The trainer's `describe` result, shared between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._described: dict[str, Any] | None = None
        self._session: str | None = None

    def update(self, described: Mapping[str, Any], session: str | None) -> None:
        with self._lock:
            self._described = dict(described)
            self._session = session

    def invalidate(self) -> None:
        with self._lock:
            self._session = None

    @property
    def session(self) -> str | None:
        with self._lock:
            return self._session

    def described(self) -> dict[str, Any] | None:
        with self._lock:
            return self._described

    def param_dicts(self) -> list[dict[str, Any]]:
        described = self.described()
        return [dict(p) for p in described.get("params", ())] if described else []

    def specs(self) -> tuple[ParamSpec, ...]:
        return tuple(spec_from_described(d) for d in self.param_dicts())

    def param_words(self) -> frozenset[str]:
        words = {word.lower() for d in self.param_dicts() for word in (d["name"], *d.get("aliases", ()))}
        return frozenset(words) if words else SEED_PARAM_WORDS

    def ops(self) -> frozenset[str] | None:
        described = self.described()
        return frozenset(described.get("ops", ())) if described else None


def spec_from_described(d: Mapping[str, Any]) -> ParamSpec:
    """describe's param entry (a ParamSpec dict plus the current 'value') -> ParamSpec."""
    fields = {k: v for k, v in d.items() if k != "value"}
    return ParamSpec.from_dict(fields)


class TrainerLink:
    """The message path's control client: one request at a time, catalog kept fresh."""

    def __init__(self, client: ControlClient, catalog: Catalog) -> None:
        self._client = client
        self._catalog = catalog
        self._lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            result = self._client.request(op, **args)
            session = self._client.last_session
        if session is not None and session != self._catalog.session and op != "describe":
            self.describe()
        return result

    def describe(self) -> dict[str, Any]:
        with self._lock:
            result = self._client.request("describe")
            self._catalog.update(result, self._client.last_session)
        return result

    def specs(self) -> tuple[ParamSpec, ...]:
        """The parameter specs, asking the trainer when none are known yet."""
        if self._catalog.described() is None or self._catalog.session is None:
            self.describe()
        return self._catalog.specs()

    def close(self) -> None:
        with self._lock:
            self._client.close()


def fetch_history(request: Request, since: int, until: int) -> tuple[list[dict[str, Any]], bool]:
    """Data messages with since < seq <= until, in order, and whether some were lost.

    `request` is a ControlClient's `request`. When the trainer's ring no longer holds
    since+1 (TOO_OLD), the rest is fetched from the oldest it has and `lost` is True.
    """
    messages: list[dict[str, Any]] = []
    lost = False
    for _ in range(HISTORY_MAX_PAGES):
        if since >= until:
            break
        try:
            result = request("history", since=since, limit=HISTORY_PAGE_LIMIT)
        except RemoteError as error:
            oldest = (error.details or {}).get("oldest_seq")
            if error.code != ErrorCode.TOO_OLD or not isinstance(oldest, int) or lost:
                raise
            lost, since = True, max(since, oldest - 1)
            continue
        page = [m for m in result.get("messages", ()) if since < int(m["seq"]) <= until]
        if not page:
            break
        messages.extend(page)
        since = int(page[-1]["seq"])
    return messages, lost
