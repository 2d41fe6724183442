"""Rate limiting for chat notifications, with an injectable clock so tests need no sleeps.

`Throttle` coalesces progress: at most one item per interval, the latest value winning.
`EventLimiter` caps bursts of events (a token bucket) and counts what it held back.
Neither sends anything: callers ask what is due and send it themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]


class Throttle(Generic[T]):
    """At most one item per `interval_s`; items offered in between coalesce (latest wins).

    `offer()` returns the item to send now, or None when it was kept pending; `due()` returns
    the pending item once the interval has passed (call it from a polling loop); `take()`
    removes and returns the pending item regardless (for a final message that carries it).
    """

    def __init__(self, interval_s: float, clock: Clock = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._clock = clock
        self._last_sent: float | None = None
        self._pending: T | None = None

    @property
    def pending(self) -> T | None:
        return self._pending

    def offer(self, item: T) -> T | None:
        self._pending = item
        return self.due()

    def due(self) -> T | None:
        if self._pending is None:
            return None
        now = self._clock()
        if self._last_sent is not None and now - self._last_sent < self.interval_s:
            return None
        self._last_sent = now
        item, self._pending = self._pending, None
        return item

    def take(self) -> T | None:
        item, self._pending = self._pending, None
        return item

    def reset(self) -> None:
        """Forget the pending item and the last send (e.g. a new trainer session)."""
        self._pending = None
        self._last_sent = None


class EventLimiter:
    """A token bucket: `burst` events at once, refilled at `burst` per `window_s`.

    `allow()` says whether one more event may be sent now; refused events are counted,
    and `suppressed()` returns (and clears) that count once sending is allowed again.
    """

    def __init__(self, burst: int, window_s: float, clock: Clock = time.monotonic) -> None:
        if burst < 1 or window_s <= 0:
            raise ValueError(f"need burst >= 1 and window_s > 0, got {burst!r}, {window_s!r}")
        self._burst = burst
        self._rate_per_s = burst / window_s
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._suppressed = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate_per_s)
        self._updated = now

    def allow(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._suppressed += 1
        return False

    def suppressed(self) -> int:
        """Events held back so far, if a report about them may be sent now (else 0)."""
        if self._suppressed == 0:
            return 0
        self._refill()
        if self._tokens < 1:
            return 0
        self._tokens -= 1
        count, self._suppressed = self._suppressed, 0
        return count


class Combiner:
    """Progress of several runs, one message per `interval_s`: each run's latest line, in one text.

    Each run's own Throttle already sends at most one line per interval; offering them here makes
    those that arrive within the same interval one message (`flush` sends what is due: call it from
    a polling loop too). `discard` forgets a run's pending line (a final message carried it).
    """

    def __init__(self, interval_s: float, clock: Clock = time.monotonic) -> None:
        self._throttle: Throttle[bool] = Throttle(interval_s, clock)
        self._pending: dict[str, str] = {}

    def offer(self, name: str, line: str) -> dict[str, str]:
        """Keep `line` for run `name`; returns what to send now (run -> line), often nothing."""
        self._pending[name] = line
        return self._take(self._throttle.offer(True))

    def due(self) -> dict[str, str]:
        return self._take(self._throttle.due())

    def discard(self, name: str) -> None:
        self._pending.pop(name, None)
        if not self._pending:
            self._throttle.take()

    def _take(self, due: bool | None) -> dict[str, str]:
        if not due or not self._pending:
            return {}
        lines, self._pending = self._pending, {}
        return lines
