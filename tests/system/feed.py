"""Checks on what a `FeedRecorder` (a library Subscriber attached from the test process) or `trainctl
watch --json` saw: contiguous seqs within each session, contiguous steps, the sessions in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from protocol import Data, FeedEvent, SessionChanged
from protocol.steps import METRICS_STEPS, step_losses

# -- what a feed looked like, from FeedEvents or from `trainctl watch --json` lines -----------------


def data_messages(events: Iterable[FeedEvent]) -> list[dict[str, Any]]:
    """Data events as {session, seq, topic, body} maps, the shape `watch --json` prints."""
    return [
        {"session": e.message.session, "seq": e.message.seq, "topic": e.message.topic, "body": e.message.body}
        for e in events
        if isinstance(e, Data)
    ]


def kinds(events: Iterable[FeedEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def steps(messages: Iterable[dict[str, Any]], session: str | None = None) -> list[int]:
    """Every step the `metrics.steps` messages hold, in the order delivered (one session's only,
    if given)."""
    return [
        step
        for m in messages
        if m["topic"] == METRICS_STEPS and (session is None or m["session"] == session)
        for step, _ in step_losses(m["body"])
    ]


def sessions(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The sessions the data came from, each once, in order of first appearance."""
    seen: list[str] = []
    for m in messages:
        if m["session"] not in seen:
            seen.append(m["session"])
    return seen


def breaks(numbers: list[int]) -> list[tuple[int, int]]:
    """Each (previous, next) pair where next is not previous + 1: empty for a contiguous run."""
    return [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1]


def seq_breaks_per_session(messages: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    """Seq breaks within each session (a session appearing twice, interleaved, shows as a break)."""
    found = {}
    for session in sessions(messages):
        seqs = [int(m["seq"]) for m in messages if m["session"] == session]
        found[session] = breaks(seqs)
    return found


def checkpoint_steps(messages: Iterable[dict[str, Any]], session: str | None = None) -> list[int]:
    return [
        int(m["body"]["step"])
        for m in messages
        if m["topic"] == "event.checkpoint_saved" and (session is None or m["session"] == session)
    ]


def session_changes(events: Iterable[FeedEvent]) -> list[SessionChanged]:
    return [e for e in events if isinstance(e, SessionChanged)]


def summary(events: list[FeedEvent]) -> str:
    """A short account for failure messages: event kinds (data counted) and the last steps."""
    counts: dict[str, int] = {}
    for kind in kinds(events):
        counts[kind] = counts.get(kind, 0) + 1
    messages = data_messages(events)
    return f"feed so far: {counts}, sessions {sessions(messages)}, last steps {steps(messages)[-5:]}"
