"""Throttle and EventLimiter with a fake clock: no sleeps."""

from __future__ import annotations

from sidecar.throttle import Combiner, EventLimiter, Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_item_goes_at_once_then_one_per_interval_latest_wins() -> None:
    clock = FakeClock()
    throttle: Throttle[int] = Throttle(60.0, clock)
    assert throttle.offer(1) == 1
    clock.now += 10
    assert throttle.offer(2) is None
    clock.now += 10
    assert throttle.offer(3) is None
    assert throttle.due() is None
    clock.now += 40  # 60 s after the first send
    assert throttle.due() == 3  # the latest value, coalesced
    assert throttle.due() is None


def test_an_offer_after_a_quiet_interval_goes_at_once() -> None:
    clock = FakeClock()
    throttle: Throttle[str] = Throttle(60.0, clock)
    throttle.offer("a")
    clock.now += 61
    assert throttle.offer("b") == "b"


def test_take_hands_over_the_pending_item_for_a_final_message() -> None:
    clock = FakeClock()
    throttle: Throttle[int] = Throttle(60.0, clock)
    throttle.offer(1)
    throttle.offer(2)
    assert throttle.take() == 2
    clock.now += 100
    assert throttle.due() is None


def test_limiter_allows_a_burst_then_counts_what_it_held_back() -> None:
    clock = FakeClock()
    limiter = EventLimiter(burst=3, window_s=30.0, clock=clock)
    assert [limiter.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limiter.suppressed() == 0  # no token yet for the report either
    clock.now += 10  # one token back
    assert limiter.suppressed() == 2
    assert limiter.suppressed() == 0


def test_combiner_sends_runs_that_report_in_one_interval_as_one_message() -> None:
    clock = FakeClock()
    combiner = Combiner(60.0, clock)
    assert combiner.offer("a", "a@10") == {"a": "a@10"}  # the first goes at once
    clock.now += 1
    assert combiner.offer("b", "b@5") == {}
    clock.now += 30
    assert combiner.offer("a", "a@20") == {}
    assert combiner.due() == {}
    clock.now += 29
    assert combiner.due() == {"b": "b@5", "a": "a@20"}  # one message, each run's latest line
    assert combiner.due() == {}


def test_combiner_forgets_a_line_a_final_message_carried() -> None:
    clock = FakeClock()
    combiner = Combiner(60.0, clock)
    combiner.offer("a", "a@10")
    combiner.offer("b", "b@5")
    combiner.discard("b")
    clock.now += 60
    assert combiner.due() == {}
