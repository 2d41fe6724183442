"""Kill -9 the trainer in the middle of a run (after a checkpoint), under the Procfile launcher.

The sidecar stays up and tells the owner once that the trainer is down and once that it is back;
the respawn supervisor restarts the trainer, which resumes from its last checkpoint and, with
autostart, trains on. Two feed clients attached throughout, the library Subscriber in the test
process and a `trainctl watch --json` process, each see every message of each session in order
and exactly one change of session.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakes.recorder import FeedRecorder
from fakes.trainer import wait_until
from protocol import FeedEvent
from tests.system import feed, processes
from tests.system.stack import START_TIMEOUT_S, ProcfileStack

pytestmark = pytest.mark.slow

STEPS_AFTER_RESTART = 10
WATCH_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TrainerKill:
    """What happened around one SIGKILL of the trainer."""

    sidecar_pids: tuple[int, int]  # before the kill, at the end
    old_trainer_pid: int
    new_trainer_pid: int
    supervisors: tuple[int, int]  # the old trainer's parent, the new one's
    checkpoint_step: int  # the last checkpoint saved before the kill
    status_after: dict[str, Any]  # the restarted trainer's first status while running
    texts: list[str]  # owner chat, all of it
    events: list[FeedEvent]  # the library Subscriber's
    watch_lines: list[dict[str, Any]]  # `trainctl watch --json`'s


class WatchProcess:
    """`trainctl watch --json` of the stack's trainer, its lines written to a file."""

    def __init__(self, stack: ProcfileStack) -> None:
        self.path = stack.root / "watch.jsonl"
        self.stderr_path = stack.root / "watch.stderr"
        with open(self.path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                stack.watch_command(),
                env={**stack.environment(), "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps its threads
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=processes.ctrl_c_as_in_a_terminal,
            )

    def lines(self) -> list[dict[str, Any]]:
        text = Path(self.path).read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait_attached(self) -> None:
        """Until it has its snapshot and a first data message: only then can it see the kill."""
        wait_until(
            lambda: any(line["kind"] == "data" for line in self.lines()),
            START_TIMEOUT_S,
            "trainctl watch to attach and follow the feed",
            processes.POLL_S,
        )

    def stop(self) -> int:
        """Ctrl-C (it detaches, exit 0); SIGKILL if it does not."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(WATCH_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # where it hangs, for the failure's message
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            dump = Path(self.stderr_path).read_text(errors="replace")[-6000:]
            raise AssertionError(f"trainctl watch did not detach on Ctrl-C; its threads:\n{dump}") from None


@pytest.fixture(scope="module")
def trainer_killed(stack: ProcfileStack) -> TrainerKill:
    stack.wait_owner_text("Sidecar connected", timeout_s=START_TIMEOUT_S)
    stack.wait_running()
    sidecar_before = stack.sidecar_pid()
    recorder = FeedRecorder(stack.connection()).start()
    watch = WatchProcess(stack)
    try:
        watch.wait_attached()
        recorder.wait_for(lambda events: feed.steps(feed.data_messages(events)), START_TIMEOUT_S, "a step")
        old_pid = stack.trainer_pid()
        assert old_pid is not None
        supervisor = processes.parent_pid(old_pid)
        # A checkpoint announced after both feed clients follow (an earlier one may predate the watch).
        seen = max(feed.checkpoint_steps(feed.data_messages(recorder.events())), default=0)
        checkpoint_step = _kill_after_a_checkpoint(stack, recorder, old_pid, after=seen)
        new_pid = wait_until(
            lambda: (pid := stack.trainer_pid()) != old_pid and pid,
            START_TIMEOUT_S,
            "a new trainer",
            processes.POLL_S,
        )
        status_after = stack.wait_running()  # its first status once it trains again
        recorder.wait_for(
            lambda events: len(_new_session_steps(events)) >= STEPS_AFTER_RESTART,
            START_TIMEOUT_S,
            f"{STEPS_AFTER_RESTART} steps in the restarted trainer",
        )
        stack.wait_owner_text("Trainer back", timeout_s=START_TIMEOUT_S)
        asked = stack.sent_count()  # replies queue behind what the sidecar had to say before
        stack.owner_says("status")
        stack.wait_owner_text("State:", after=asked)
        sidecar_after = stack.sidecar_pid()
        watch.stop()
        return TrainerKill(
            sidecar_pids=(sidecar_before, sidecar_after),
            old_trainer_pid=old_pid,
            new_trainer_pid=new_pid,
            supervisors=(supervisor, processes.parent_pid(new_pid)),
            checkpoint_step=checkpoint_step,
            status_after=status_after,
            texts=stack.owner_texts(),
            events=recorder.events(),
            watch_lines=watch.lines(),
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{feed.summary(recorder.events())}\n{stack.describe()}") from error
    finally:
        watch.stop()
        recorder.stop()


def _kill_after_a_checkpoint(
    stack: ProcfileStack, recorder: FeedRecorder, trainer_pid: int, *, after: int
) -> int:
    """SIGKILL the trainer as soon as a periodic checkpoint past step `after` is announced (the
    next one is CHECKPOINT_EVERY_STEPS steps away); returns that checkpoint's step."""
    step = recorder.wait_for(
        lambda events: max(
            (s for s in feed.checkpoint_steps(feed.data_messages(events)) if s > after), default=0
        ),
        START_TIMEOUT_S,
        "a checkpoint",
    )
    os.kill(trainer_pid, signal.SIGKILL)
    return step


def _new_session_steps(events: list[FeedEvent]) -> list[int]:
    messages = feed.data_messages(events)
    found = feed.sessions(messages)
    return feed.steps(messages, found[1]) if len(found) > 1 else []


def test_the_sidecar_stays_up_while_the_trainer_is_killed(trainer_killed: TrainerKill) -> None:
    before, after = trainer_killed.sidecar_pids
    assert before == after


def test_the_owner_hears_once_that_the_trainer_is_down_and_once_that_it_is_back(
    trainer_killed: TrainerKill,
) -> None:
    texts = trainer_killed.texts
    down = [i for i, text in enumerate(texts) if text.startswith("⚠️ Trainer down")]
    back = [i for i, text in enumerate(texts) if text.startswith("✅ Trainer back (new process)")]
    assert len(down) == 1 and len(back) == 1, texts
    assert down[0] < back[0]
    assert not [text for text in texts if "not responding" in text], texts  # busy is not dead


def test_down_and_back_say_the_step_the_checkpoint_and_what_is_redone(trainer_killed: TrainerKill) -> None:
    checkpoint = trainer_killed.checkpoint_step
    [down] = [text for text in trainer_killed.texts if text.startswith("⚠️ Trainer down")]
    # The checkpoint announced just before the kill may not have reached the sidecar: the one it
    # names is at most that one, and 'back' says exactly where the run resumed.
    announced = re.search(r"Last checkpoint announced: (?:step (\d+)|none yet)\.", down)
    assert announced is not None, down
    assert announced[1] is None or int(announced[1]) <= checkpoint, down
    [back] = [text for text in trainer_killed.texts if text.startswith("✅ Trainer back (new process)")]
    assert back.startswith(f"✅ Trainer back (new process), resumed at step {checkpoint}"), back
    messages = feed.data_messages(trainer_killed.events)
    last_old = max(feed.steps(messages, feed.sessions(messages)[0]))
    redone = re.search(
        r"the (\d+) steps? since the last checkpoint \((\d+)(?:–(\d+))?\) (?:is|are) being", back
    )
    if redone is None:
        assert back.endswith("; no steps lost.") and last_old <= checkpoint + 1, back
        return
    count, first, last = int(redone[1]), int(redone[2]), int(redone[3] or redone[2])
    assert first == checkpoint + 1 and count == last - checkpoint, back
    # The sidecar and this test subscribe from different processes: the message in flight at the
    # kill may reach one and not the other.
    assert abs(last - last_old) <= 1, (back, last_old)


def test_respawn_restarts_the_trainer_which_resumes_from_its_last_checkpoint(
    trainer_killed: TrainerKill,
) -> None:
    assert trainer_killed.new_trainer_pid != trainer_killed.old_trainer_pid
    supervisor, new_parent = trainer_killed.supervisors
    assert new_parent == supervisor and "supervise" in processes.cmdline(supervisor)
    assert not processes.is_alive(trainer_killed.old_trainer_pid)
    status = trainer_killed.status_after
    assert status["state"] == "running"  # autostart: it carries on by itself
    assert status["step"] >= trainer_killed.checkpoint_step
    assert status["last_checkpoint_step"] >= trainer_killed.checkpoint_step
    resumed = _new_session_steps(trainer_killed.events)
    assert resumed[0] == trainer_killed.checkpoint_step + 1, resumed[:5]


def test_the_library_subscriber_sees_every_message_and_one_session_change(
    trainer_killed: TrainerKill,
) -> None:
    messages = feed.data_messages(trainer_killed.events)
    found = feed.sessions(messages)
    assert len(found) == 2
    assert feed.seq_breaks_per_session(messages) == {session: [] for session in found}
    assert [feed.breaks(feed.steps(messages, session)) for session in found] == [[], []]
    changes = feed.session_changes(trainer_killed.events)
    assert [(c.old, c.new) for c in changes] == [tuple(found)]


def test_trainctl_watch_json_agrees(trainer_killed: TrainerKill) -> None:
    lines = trainer_killed.watch_lines
    messages = [line for line in lines if line["kind"] == "data"]
    found = feed.sessions(messages)
    assert found == feed.sessions(feed.data_messages(trainer_killed.events))
    assert feed.seq_breaks_per_session(messages) == {session: [] for session in found}
    changes = [line for line in lines if line["kind"] == "session_changed"]
    assert [(c["old"], c["new"]) for c in changes] == [tuple(found)]
    assert feed.steps(messages, found[1])[0] == trainer_killed.checkpoint_step + 1
