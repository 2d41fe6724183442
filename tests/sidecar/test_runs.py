"""One sidecar, several runs: two in-process fake trainers found from their connection files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.trainer import FakeTrainer, wait_until
from protocol import ConnectionInfo
from sidecar.access import Contact
from tests.sidecar.harness import WaitingBackend, endpoints, make_config, running_sidecar

NAMES = ("exp1", "exp2")


def write_connection_file(runtime: Path, name: str, trainer: FakeTrainer, control: str, metrics: str) -> Path:
    """What `python -m trainer --instance NAME` writes (without CurveZMQ: the fake runs without)."""
    path = runtime / f"{name}.json"
    ConnectionInfo(control, metrics, f"run-{name}", trainer.session, 1, pid=os.getpid()).write(path)
    return path


@pytest.fixture
def trainers(private_runtime_dir: Path) -> Iterator[dict[str, FakeTrainer]]:
    """Two running fake trainers, each with its connection file in the runtime directory."""
    started: dict[str, FakeTrainer] = {}
    with endpoints() as first, endpoints() as second:
        try:
            for name, eps in zip(NAMES, (first, second), strict=True):
                fake = FakeTrainer(*eps, state="running", step=10, announce=False).start()
                started[name] = fake
                write_connection_file(private_runtime_dir, name, fake, *eps)
            yield started
        finally:
            for fake in started.values():
                fake.close()


@pytest.fixture
def chat(
    trainers: dict[str, FakeTrainer], private_runtime_dir: Path, tmp_path: Path
) -> Iterator[WaitingBackend]:
    config = make_config(
        "ipc:///unused-c",
        "ipc:///unused-m",
        tmp_path / "state",
        primary=False,
        runtime_dir=private_runtime_dir,
        progress_interval_s=0.0,
        allow=("Carol",),  # may read
    )
    with running_sidecar(config) as (app, backend):
        app.access.resolve([Contact("@carol", "Carol")])
        for name in NAMES:
            backend.wait_text(f"[{name}] 🔗 Sidecar connected")
        yield backend


def ask(chat: WaitingBackend, text: str, **sender: str) -> str:
    before = len(chat.snapshot())
    chat.push_message(text, **sender)
    return chat.wait_for(lambda m: m.priority.name == "REPLY", after=before).text


def test_runs_lists_both_with_state_and_step(chat: WaitingBackend) -> None:
    reply = ask(chat, "runs")
    assert reply.splitlines()[0] == "Runs (2):"
    assert "exp1: running, step 10/1000, loss 0.5" in reply
    assert "exp2: running, step 10/1000, loss 0.5" in reply
    assert ask(chat, "列表").splitlines()[0] == "训练任务（2 个）："


def test_an_addressed_command_changes_only_that_run(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer]
) -> None:
    reply = ask(chat, "@exp2 lr 0.01")
    assert reply.startswith("[exp2] OK: learning_rate = 0.01 (was 0.001)"), reply
    assert trainers["exp2"].params["learning_rate"] == 0.01
    assert trainers["exp1"].params["learning_rate"] == 0.001
    assert ask(chat, "@exp1 停止").startswith("[exp1] 正在停止")
    assert (trainers["exp1"].state, trainers["exp2"].state) == ("stopped", "running")


def test_an_unaddressed_change_is_refused_with_the_list(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer]
) -> None:
    for text in ("停止", "lr 0.01", "pause"):
        reply = ask(chat, text)
        assert "exp1" in reply and "exp2" in reply, reply
        assert "未做任何修改" in reply or "Nothing was changed" in reply, reply
    assert [t.state for t in trainers.values()] == ["running", "running"]
    assert [t.params["learning_rate"] for t in trainers.values()] == [0.001, 0.001]
    assert not any(op in t.requests for t in trainers.values() for op in ("stop", "set_params", "pause"))


def test_use_chooses_where_unaddressed_commands_go(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer]
) -> None:
    assert ask(chat, "use exp1") == "Commands without @name now go to exp1."
    assert ask(chat, "lr 0.02").startswith("[exp1] OK: learning_rate = 0.02")
    assert (trainers["exp1"].params["learning_rate"], trainers["exp2"].params["learning_rate"]) == (
        0.02,
        0.001,
    )
    assert "exp1 (chosen)" in ask(chat, "runs")


def test_a_choice_is_the_senders_own(chat: WaitingBackend, trainers: dict[str, FakeTrainer]) -> None:
    """A contact who may only read cannot redirect the owner's next unaddressed command."""
    carol = {"sender_id": "@carol", "chat_id": "@carol", "sender_remark": "Carol"}
    assert ask(chat, "use exp2", **carol) == "Commands without @name now go to exp2."
    assert ask(chat, "status", **carol).startswith("[exp2] State: running")
    assert "Nothing was changed" in ask(chat, "lr 0.01")  # the owner chose nothing: refused
    assert ask(chat, "stop all", **carol).startswith("Only the owner can do that")
    assert [t.params["learning_rate"] for t in trainers.values()] == [0.001, 0.001]
    assert [t.state for t in trainers.values()] == ["running", "running"]


def test_stop_all_and_status_all(chat: WaitingBackend, trainers: dict[str, FakeTrainer]) -> None:
    status = ask(chat, "status all")
    assert "[exp1] State: running, step 10/1000" in status and "[exp2] State: running" in status
    reply = ask(chat, "stop all")
    assert reply.splitlines() == [
        "[exp1] Stopping at step 10 (state now stopped).",
        "[exp2] Stopping at step 10 (state now stopped).",
    ]
    assert [t.state for t in trainers.values()] == ["stopped", "stopped"]


def test_a_mention_is_chatter_and_a_mistyped_run_name_is_answered(chat: WaitingBackend) -> None:
    before = len(chat.snapshot())
    chat.push_message("@Alice see you at lunch")
    reply = ask(chat, "@exp3 停止")  # the mention got no reply: this is the next one
    assert reply.startswith("没有名为 'exp3' 的训练任务。"), reply
    assert "exp1" in reply and "exp2" in reply
    assert all("Alice" not in m.text for m in chat.snapshot()[before:])


def test_progress_and_events_name_their_run(chat: WaitingBackend, trainers: dict[str, FakeTrainer]) -> None:
    trainers["exp2"].report(20, loss=0.25)
    assert chat.wait_text("[exp2] Iter 20, Minibatch Loss= 0.250000").startswith("[exp2] ")
    trainers["exp1"].event("checkpoint_saved", path="ckpt-10")
    chat.wait_text("[exp1] 💾 Checkpoint saved at step 10 (ckpt-10)")


def test_one_run_down_while_the_other_goes_on(chat: WaitingBackend, trainers: dict[str, FakeTrainer]) -> None:
    trainers["exp1"].close()  # its sockets close, as when the process is killed
    down = chat.wait_text("Trainer down")
    assert down.startswith("[exp1] "), down
    before = len(chat.snapshot())
    trainers["exp2"].report(30, loss=0.125)
    chat.wait_text("[exp2] Iter 30, Minibatch Loss= 0.125000", after=before)
    assert chat.count("Trainer down") == 1
    rows = ask(chat, "runs")
    assert "exp1: down, last seen at step 10" in rows and "exp2: running, step 30/1000" in rows
    stopped = ask(chat, "stop all").splitlines()
    assert stopped == [
        "[exp1] down (its connection closed): not sent",
        "[exp2] Stopping at step 30 (state now stopped).",
    ]


def test_a_run_started_later_is_found(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer], private_runtime_dir: Path
) -> None:
    with endpoints() as eps:
        late = FakeTrainer(*eps, state="idle", announce=False).start()
        try:
            write_connection_file(private_runtime_dir, "exp3", late, *eps)
            chat.wait_text("[exp3] 🔗 Sidecar connected", timeout_s=30.0)
            assert "exp3: idle, step 0/1000" in ask(chat, "runs")
            assert ask(chat, "@exp3 开始").startswith("[exp3] 开始训练")
            assert late.state == "running"
        finally:
            late.close()


def test_with_one_run_found_nothing_is_named(private_runtime_dir: Path, tmp_path: Path) -> None:
    with endpoints() as eps:
        fake = FakeTrainer(*eps, state="running", announce=False).start()
        try:
            write_connection_file(private_runtime_dir, "solo", fake, *eps)
            config = make_config(
                "ipc:///unused-c", "ipc:///unused-m", tmp_path, primary=False, runtime_dir=private_runtime_dir
            )
            with running_sidecar(config) as (_, chat):
                assert chat.wait_text("Sidecar connected").startswith("🔗")
                assert ask(chat, "停止") == "正在停止（第 0 步，当前状态：已停止）。"
        finally:
            fake.close()


def test_each_run_keeps_its_own_cursor(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer], tmp_path: Path
) -> None:
    """A restarted sidecar summarises each run from its own cursor, never another run's."""
    state = tmp_path / "state"
    paths = {name: state / "runs" / name / "cursor.json" for name in NAMES}
    wait_until(lambda: all(path.exists() for path in paths.values()), what="both cursors saved")
    sessions = {name: json.loads(path.read_text())["session"] for name, path in paths.items()}
    assert sessions == {name: trainer.session for name, trainer in trainers.items()}
    assert not (state / "cursor.json").exists()  # that one is the primary run's, and there is none


@pytest.mark.parametrize(
    "text", ["@exp2 stop all", "@exp2 停止 全部", "@exp2 @exp1 stop", "@exp2 lr 0.01 all"]
)
def test_one_run_and_more_in_one_message_is_refused_with_a_reply(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer], text: str
) -> None:
    reply = ask(chat, text)
    assert "exp2" in reply and ("Nothing was changed" in reply or "未做任何修改" in reply), reply
    assert [t.state for t in trainers.values()] == ["running", "running"]
    assert [t.params["learning_rate"] for t in trainers.values()] == [0.001, 0.001]
    assert not any(op in t.requests for t in trainers.values() for op in ("stop", "set_params"))


def test_an_addressed_command_is_answered_however_it_is_typed(
    chat: WaitingBackend, trainers: dict[str, FakeTrainer]
) -> None:
    assert ask(chat, "@exp3 stop all").startswith("No run named 'exp3'.")
    assert ask(chat, "＠exp2 ｓｔｏｐ").startswith("[exp2] Stopping")
    assert ask(chat, "@exp1 help all").startswith("[exp1] ")  # 'help all' is one command for exp1
    assert (trainers["exp1"].state, trainers["exp2"].state) == ("running", "stopped")
