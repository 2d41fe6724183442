"""The outbox's priorities for every backend: alerts never dropped, progress latest only, the
oldest event dropped before a reply when full, and everything sent once the backend is ready."""

from __future__ import annotations

from sidecar.backend import Priority
from sidecar.outbox import Outbox
from tests.sidecar.harness import WaitingBackend


def held_outbox(max_queued: int) -> tuple[Outbox, WaitingBackend]:
    backend = WaitingBackend()  # not connected: not ready, so everything stays queued
    return Outbox(backend, max_queued=max_queued), backend


def test_queued_progress_keeps_only_the_latest_per_chat() -> None:
    outbox, _ = held_outbox(10)
    for step in range(5):
        outbox.text(f"Iter {step}", priority=Priority.PROGRESS)
    outbox.text("Iter 9 for ally", to="ally", priority=Priority.PROGRESS)
    assert [o.text for o in outbox.queued()] == ["Iter 4", "Iter 9 for ally"]


def test_a_full_outbox_drops_events_then_replies_then_progress_but_never_an_alert() -> None:
    outbox, _ = held_outbox(4)
    outbox.text("Iter 1", priority=Priority.PROGRESS)
    outbox.text("💾 Checkpoint saved at step 1", priority=Priority.EVENT)
    outbox.text("State: running")
    outbox.text("⚠️ Trainer down", priority=Priority.ALERT)
    outbox.text("✅ Trainer back", priority=Priority.ALERT)  # drops the event
    outbox.text("🏁 Training finished", priority=Priority.ALERT)  # drops the reply
    outbox.text("OK: lr", priority=Priority.REPLY)  # drops the progress
    outbox.text("⏹ Stopped", priority=Priority.ALERT)  # drops that reply
    outbox.text("OK: bs", priority=Priority.REPLY)  # only alerts left: this one is dropped
    outbox.text("❌ Training failed", priority=Priority.ALERT)  # alerts are kept beyond the bound
    assert [o.text for o in outbox.queued()] == [
        "⚠️ Trainer down",
        "✅ Trainer back",
        "🏁 Training finished",
        "⏹ Stopped",
        "❌ Training failed",
    ]


def test_after_hours_logged_out_the_final_state_and_the_latest_progress_go_out_in_order() -> None:
    outbox, backend = held_outbox(200)
    for step in range(1000):
        outbox.text(f"Iter {step}", priority=Priority.PROGRESS)
        if step % 3 == 0:
            outbox.text(f"💾 Checkpoint saved at step {step}", priority=Priority.EVENT)
    outbox.text("🏁 Training finished at step 1000", priority=Priority.ALERT)
    outbox.start()
    backend.connect(lambda message: None)  # logged in again
    outbox.join()
    texts = backend.texts()
    outbox.close()
    assert texts[-1] == "🏁 Training finished at step 1000"
    assert [t for t in texts if t.startswith("Iter")] == ["Iter 999"]
    assert len(texts) == 200
    assert [m.priority for m in backend.sent if m.text.startswith("🏁")] == [Priority.ALERT]
