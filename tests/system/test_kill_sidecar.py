"""Kill -9 the sidecar in the middle of a run, under the Procfile launcher.

Training must not notice (no step lost, same trainer session); the respawn supervisor starts a new
sidecar, which logs in to WeChat again and tells the owner once what it missed instead of
re-sending old events; commands work again afterwards.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from typing import Any

import pytest

from fakes.recorder import FeedRecorder
from fakes.trainer import wait_until
from protocol import FeedEvent, Gap, SessionChanged
from tests.system import feed, processes
from tests.system.stack import CHECKPOINT_EVERY_STEPS, REPLY_TIMEOUT_S, START_TIMEOUT_S, ProcfileStack

pytestmark = pytest.mark.slow

STEPS_BEFORE_KILL = 10
CHECKPOINT_TEXT = re.compile(r"Checkpoint saved at step (\d+)")


@dataclass(frozen=True)
class SidecarKill:
    """What happened around one SIGKILL of the sidecar."""

    old_pid: int
    new_pid: int
    supervisors: tuple[int, int]  # the old sidecar's parent, the new one's
    missed_checkpoint_step: int  # saved while no sidecar ran
    session_before: str
    session_after: str
    texts_before: list[str]  # owner chat up to the kill
    texts_after: list[str]  # owner chat from the kill on
    status_reply: str
    events: list[FeedEvent]  # the test's own subscriber, attached throughout
    wechat_before: dict[str, Any]
    wechat_after: dict[str, Any]


@pytest.fixture(scope="module")
def sidecar_killed(stack: ProcfileStack) -> SidecarKill:
    stack.wait_owner_text("Sidecar connected", timeout_s=START_TIMEOUT_S)
    session_before = stack.wait_running()["session"]
    recorder = FeedRecorder(stack.connection()).start()
    try:
        recorder.wait_for(
            lambda events: len(feed.steps(feed.data_messages(events))) >= STEPS_BEFORE_KILL,
            START_TIMEOUT_S,
            f"{STEPS_BEFORE_KILL} steps on the feed",
        )
        stack.wait_owner_text("Checkpoint saved", timeout_s=START_TIMEOUT_S)  # an old event to not repeat
        old_pid = stack.sidecar_pid()
        wechat_before = stack.wechat_state()
        supervisor = processes.parent_pid(old_pid)
        sent_at_kill, missed = _kill_and_checkpoint_meanwhile(stack, recorder, old_pid)
        new_pid = stack.sidecar_pid(other_than=old_pid)
        stack.wait_owner_text("Sidecar back", after=sent_at_kill, timeout_s=START_TIMEOUT_S)
        asked = stack.sent_count()
        stack.owner_says("status")
        status_reply = stack.wait_owner_text("State:", after=asked)
        step_now = feed.steps(feed.data_messages(recorder.events()))[-1]
        recorder.wait_for(  # training goes on past the restart, through at least one new checkpoint
            lambda events: max(feed.steps(feed.data_messages(events))) >= step_now + CHECKPOINT_EVERY_STEPS,
            REPLY_TIMEOUT_S,
            "training to go on after the sidecar's restart",
        )
        stack.wait_owner_text("Checkpoint saved", after=asked)  # and new events reach the chat
        texts = stack.owner_texts()
        texts_before = stack.owner_texts_until(sent_at_kill)
        return SidecarKill(
            old_pid=old_pid,
            new_pid=new_pid,
            supervisors=(supervisor, processes.parent_pid(new_pid)),
            missed_checkpoint_step=missed,
            session_before=session_before,
            session_after=stack.status()["session"],
            texts_before=texts_before,
            texts_after=texts[len(texts_before) :],
            status_reply=status_reply,
            events=recorder.events(),
            wechat_before=wechat_before,
            wechat_after=stack.wechat_state(),
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{feed.summary(recorder.events())}\n{stack.describe()}") from error
    finally:
        recorder.stop()


def _kill_and_checkpoint_meanwhile(
    stack: ProcfileStack, recorder: FeedRecorder, sidecar_pid: int
) -> tuple[int, int]:
    """SIGKILL the sidecar and, before its supervisor may restart it, have the trainer save a
    checkpoint: an event the new sidecar must summarise, not announce. The supervisor is held
    with SIGSTOP meanwhile, so the order does not depend on timing. Returns the sent-text count
    at the kill and the missed checkpoint's step."""
    supervisor = processes.parent_pid(sidecar_pid)
    assert "supervise" in processes.cmdline(supervisor), processes.cmdline(supervisor)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(sidecar_pid, signal.SIGKILL)
        wait_until(
            lambda: not processes.is_alive(sidecar_pid),
            REPLY_TIMEOUT_S,
            "the sidecar to die",
            processes.POLL_S,
        )
        sent_at_kill = stack.sent_count()  # the dead process's last send has landed by now
        client = stack.client()
        try:
            scheduled = int(client.checkpoint()["scheduled_at_step"])
        finally:
            client.close()
        missed = recorder.wait_for(
            lambda events: max(
                (s for s in feed.checkpoint_steps(feed.data_messages(events)) if s >= scheduled), default=0
            ),
            REPLY_TIMEOUT_S,
            f"a checkpoint at step {scheduled} or later",
        )
    finally:
        os.kill(supervisor, signal.SIGCONT)
    return sent_at_kill, missed


def test_training_loses_no_step_while_the_sidecar_is_killed(sidecar_killed: SidecarKill) -> None:
    messages = feed.data_messages(sidecar_killed.events)
    steps = feed.steps(messages)
    assert len(steps) > STEPS_BEFORE_KILL + CHECKPOINT_EVERY_STEPS
    assert feed.breaks(steps) == [], "metrics.steps not contiguous"
    assert feed.seq_breaks_per_session(messages) == {sidecar_killed.session_before: []}
    assert not [e for e in sidecar_killed.events if isinstance(e, (Gap, SessionChanged))]
    assert sidecar_killed.session_after == sidecar_killed.session_before


def test_respawn_restarts_the_sidecar_which_logs_in_again(sidecar_killed: SidecarKill) -> None:
    assert sidecar_killed.new_pid != sidecar_killed.old_pid
    assert not processes.is_alive(sidecar_killed.old_pid)
    supervisor, new_parent = sidecar_killed.supervisors
    assert new_parent == supervisor
    # Logged in again (it sent to the chat after the restart), from its saved web session:
    # no new QR code for the owner to scan.
    assert sidecar_killed.texts_after
    before, after = sidecar_killed.wechat_before, sidecar_killed.wechat_after
    assert after["qr_count"] == before["qr_count"], "the restarted sidecar asked for a new QR scan"


def test_the_new_sidecar_sends_one_catch_up_summary_and_no_old_event(sidecar_killed: SidecarKill) -> None:
    after = sidecar_killed.texts_after
    summaries = [text for text in after if "Sidecar back" in text]
    assert len(summaries) == 1, after
    assert "While I was away: " in summaries[0] and "checkpoint saved" in summaries[0], summaries[0]
    assert not [text for text in after if "Sidecar connected" in text], "caught up as if new"
    assert not [text for text in after if "Training started" in text], "re-sent the 'started' event"
    told = [int(m) for text in sidecar_killed.texts_before for m in CHECKPOINT_TEXT.findall(text)]
    assert told and max(told) < sidecar_killed.missed_checkpoint_step
    announced = [int(m) for text in after for m in CHECKPOINT_TEXT.findall(text)]
    old = [step for step in announced if step <= sidecar_killed.missed_checkpoint_step]
    assert announced and not old, f"old checkpoints announced as new: {old}"
    # Its own earlier messages, echoed back by the chat service, are not taken as commands.
    assert not [text for text in after if text.startswith(("Unknown command", "Did you mean"))], after
    assert sum(text.startswith("State:") for text in after) == 1, "one status asked, one answered"


def test_commands_are_answered_after_the_restart(sidecar_killed: SidecarKill) -> None:
    assert sidecar_killed.status_reply.startswith("State: running, step ")
