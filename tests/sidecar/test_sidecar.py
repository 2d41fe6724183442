"""The sidecar against an in-process fake trainer on real protocol sockets (MemoryBackend chat)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.trainer import SEED_SPECS, FakeTrainer
from protocol import ClientCurve, ControlClient, KeyPair, ParamSpec, ServerCurve
from protocol.codec import MAX_MESSAGE_BYTES
from sidecar.access import Contact
from sidecar.commands import COMMANDS, CommandContext, CommandSpec, Reply
from sidecar.dispatch import INTERNAL_ERROR_TEXT, NOT_ALLOWED_TEXT, UNAVAILABLE_TEXT, Dispatcher
from sidecar.link import Catalog, TrainerLink
from sidecar.series import MetricSeries
from tests.sidecar.harness import endpoints, make_config, running_sidecar

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def eps() -> Iterator[tuple[str, str]]:
    with endpoints() as pair:
        yield pair


@pytest.fixture
def trainer(eps: tuple[str, str]) -> Iterator[FakeTrainer]:
    # No events on state changes: they would race the command replies that `ask` waits for.
    fake = FakeTrainer(*eps, announce=False).start()
    yield fake
    fake.close()


@pytest.fixture
def sidecar(trainer: FakeTrainer, eps: tuple[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_sidecar(make_config(*eps, tmp_path / "state", allow=("Ally=steer", "Carol"))) as (app, chat):
        app.access.resolve(
            [Contact("@alice", "Ally", "Alice"), Contact("@bob", "", "Bob"), Contact("@carol", "Carol")]
        )
        chat.wait_text("Sidecar connected")
        yield app, chat


def ask(chat, text: str, **sender: str) -> str:  # type: ignore[no-untyped-def]
    """Push `text` and wait for the next reply to its chat."""
    before = len(chat.snapshot())
    chat.push_message(text, **sender)
    to = sender.get("chat_id") or sender.get("sender_id") or "filehelper"
    return chat.wait_for(lambda m: m.to == to, after=before).text


def test_seed_commands_start_reparameterise_and_stop(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    assert ask(chat, "开始") == "开始训练（第 0 步，当前状态：训练中）。"
    assert trainer.state == "running"
    # Chinese commands are answered in Chinese; the seed's 'lr 0.01' keeps the owner's language.
    assert ask(chat, "lr 0.01") == (
        "已修改：学习率 learning_rate = 0.01（原为 0.001），从第 1 步（下一步）起生效"
    )
    assert ask(chat, "ti 300000").startswith("已修改：训练样本总数 training_iters = 300000")
    assert ask(chat, "bs 64").startswith("已修改：批大小 batch_size = 64")
    assert ask(chat, "ds 20").startswith("已修改：显示间隔 display_step = 20")
    assert trainer.params == {
        "learning_rate": 0.01,
        "training_iters": 300000,
        "batch_size": 64,
        "display_step": 20,
    }
    assert "学习率 learning_rate (lr) = 0.01" in ask(chat, "参数")
    assert ask(chat, "停止") == "正在停止（第 0 步，当前状态：已停止）。"
    assert ask(chat, "status").startswith("State: stopped")  # an English command, English reply
    assert trainer.state == "stopped"


def test_english_forms_and_several_assignments(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    assert ask(chat, "set lr=0.02 bs=32") == (
        "OK: learning_rate = 0.02 (was 0.001), from step 1 (the next one); "
        "batch_size = 32 (was 128), from step 1 (the next epoch)"
    )
    assert ask(chat, "start").startswith("Starting")
    assert ask(chat, "pause").startswith("Pausing")
    assert ask(chat, "pause").startswith("Already paused")
    assert ask(chat, "resume").startswith("Resuming")
    assert ask(chat, "status").startswith("State: running, step 0/1000")
    assert ask(chat, "checkpoint") == ("Checkpoint scheduled at step 1; I'll tell you when it is saved.")
    assert ask(chat, "eval").startswith("Evaluation scheduled at step 1")
    help_text = ask(chat, "help")
    assert "stop (停止/结束)" in help_text and "learning_rate (lr)" in help_text


def test_an_invalid_value_is_refused_with_the_allowed_range(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    reply = ask(chat, "lr 5")
    assert reply.startswith("Invalid value: learning_rate must be <= 1.0")
    assert "allowed: float 1e-06..1" in reply
    assert "whole number" in ask(chat, "bs 6.5")
    assert ask(chat, "set dropout 0.5").startswith("Unknown parameter 'dropout'")
    assert trainer.params["learning_rate"] == 0.001
    assert "set_params" not in trainer.requests  # refused before asking the trainer


def test_a_refusal_from_the_trainer_is_shown(sidecar) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    assert ask(chat, "resume") == "Refused by the trainer (invalid_state): cannot resume while idle"


def test_an_unknown_command_gets_the_closest_match(sidecar) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    assert ask(chat, "stpo") == "Unknown command 'stpo'. Did you mean: stop? (help lists all)"
    assert ask(chat, "开使") == "未知命令 '开使'。您是想说：开始？（发送 帮助 查看全部命令）"


def test_help_explains_a_parameter_in_the_language_asked(sidecar) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    english = ask(chat, "help lr")
    assert english.startswith("learning_rate (lr): ") and "takes effect at the next step" in english
    assert "Change it with: lr 0.001" in english
    chinese = ask(chat, "帮助 bs")
    assert chinese.startswith("批大小 batch_size (bs)：") and "下一轮（epoch）起生效" in chinese
    assert "暂停训练" in ask(chat, "帮助")


def test_chatter_is_not_answered(sidecar) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    before = len(chat.snapshot())
    for text in ("hello!", "stop by the shop later", "lr is too high", "你好"):
        chat.push_message(text)
    assert ask(chat, "status").startswith("State:")
    assert len(chat.snapshot()) == before + 1  # only the status reply


def test_a_contact_not_on_the_allow_list_is_ignored(sidecar, trainer: FakeTrainer, caplog) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.state = "running"
    before = len(chat.snapshot())
    with caplog.at_level(logging.INFO, logger="sidecar.access"):
        chat.push_message("stop", sender_id="@bob", sender_name="Bob")
        chat.push_message("stop", sender_id="@owner", chat_id="@bob")  # owner, not in filehelper
    assert ask(chat, "status").startswith("State: running")  # a later command is answered...
    assert len(chat.snapshot()) == before + 1  # ...but the stranger got nothing
    assert "stop" not in trainer.requests
    assert "ignored message from @bob (nickname 'Bob'" in caplog.text


def test_an_allow_listed_contact_commands_by_remark(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    reply = ask(chat, "开始", sender_id="@alice", sender_name="Alice", sender_remark="Ally")
    assert reply.startswith("开始训练")
    assert trainer.state == "running"


def test_a_contact_allowed_to_read_may_watch_but_not_steer(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.state = "running"
    carol = {"sender_id": "@carol", "sender_name": "Carol", "sender_remark": "Carol"}
    assert ask(chat, "status", **carol).startswith("State: running")
    for text in ("stop", "lr 0.5", "checkpoint"):
        assert ask(chat, text, **carol) == NOT_ALLOWED_TEXT
    assert not {"stop", "set_params", "checkpoint"} & set(trainer.requests)


def test_a_contact_who_takes_an_allowed_name_is_not_obeyed(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.state = "running"
    before = len(chat.snapshot())
    chat.push_message("stop", sender_id="@bob", sender_name="Ally", sender_remark="Ally")
    assert ask(chat, "status").startswith("State: running")
    assert len(chat.snapshot()) == before + 1 and "stop" not in trainer.requests


def test_plot_sends_a_png_from_the_series(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    app, chat = sidecar
    for step in (10, 20, 30):
        trainer.report(step, loss=1.0 / step, accuracy=step / 40)
    chat.wait_text("Iter 10,")  # the feed has seen the reports
    deadline = time.monotonic() + 5
    while len(app.series.snapshot().accuracy) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the series fills from the feed thread; poll briefly
    before = len(chat.snapshot())
    chat.push_message("plot")
    image = chat.wait_for(lambda m: m.kind == "image", after=before)
    assert image.path is not None and image.path.read_bytes()[:8] == PNG_SIGNATURE
    assert image.path.parent == app.config.state_dir


def test_events_and_throttled_progress_reach_the_owner(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.event("started")
    chat.wait_text("▶️ Training started at step 0")
    for step in range(1, 21):
        trainer.report(step)
    trainer.event("checkpoint_saved", path="/runs/x/ckpt-20")
    chat.wait_text("💾 Checkpoint saved at step 20 (ckpt-20)")
    assert chat.count("Iter ") == 1  # 20 reports inside one 60 s interval: one message


def test_a_malformed_status_is_told_as_far_as_it_goes(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.broken_status = True
    assert ask(chat, "status") == "State: ?, step ?"
    trainer.broken_status = False
    assert ask(chat, "status").startswith("State: idle")


def test_a_handler_exception_is_answered_and_the_bot_carries_on(
    trainer: FakeTrainer, eps, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    def broken(context: CommandContext, args: tuple[str, ...]) -> str:
        raise RuntimeError("a bug")

    link = TrainerLink(ControlClient(eps[0]), Catalog())
    try:
        context = CommandContext(link, MetricSeries(), tmp_path)
        dispatcher = Dispatcher(
            (CommandSpec("boom", (), "raises", "boom", 0, None, broken), *COMMANDS), context
        )
        assert dispatcher.handle("boom") == Reply(INTERNAL_ERROR_TEXT)
        reply = dispatcher.handle("status")
        assert reply is not None and reply.text.startswith("State: idle")
    finally:
        link.close()


def test_a_new_parameter_in_describe_needs_no_sidecar_change(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = (
        *SEED_SPECS,
        ParamSpec("dropout", "float", 0.25, aliases=("dp",), minimum=0.0, maximum=1.0, help="dropout rate"),
    )
    fake = FakeTrainer(*eps, specs=specs).start()
    try:
        with running_sidecar(make_config(*eps, tmp_path)) as (_, chat):
            chat.wait_text("Sidecar connected")
            assert ask(chat, "dp 0.5") == "OK: dropout = 0.5 (was 0.25), from step 1 (the next one)"
            help_text = ask(chat, "help")
            assert "dropout (dp)  [float 0..1, takes effect at the next step] dropout rate" in help_text
            assert "dropout (dp) = 0.5" in ask(chat, "params")
    finally:
        fake.close()


def test_trainer_unavailable_is_answered_within_the_bound(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(*eps, tmp_path, request_timeout_ms=300, request_retries=1)
    with running_sidecar(config) as (_, chat):
        for text, expected in (("status", UNAVAILABLE_TEXT), ("lr 0.01", UNAVAILABLE_TEXT), ("停止", None)):
            started = time.monotonic()
            assert ask(chat, text) == (expected or "训练程序没有应答。它在运行吗？")
            assert time.monotonic() - started < 2.0  # 2 attempts x 300 ms, plus slack
        # Never reachable is not 'down' (that needs a connection that closed); it is said only
        # after UNREACHABLE_AFTER_S.
        assert chat.count("Trainer down") == 0


def test_one_down_and_one_back_alert_when_the_trainer_restarts(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = FakeTrainer(*eps, step=40, state="running").start()
    with running_sidecar(make_config(*eps, tmp_path)) as (_, chat):
        chat.wait_text("Sidecar connected")
        first.close()
        chat.wait_text("Trainer down")
        second = FakeTrainer(*eps, step=40, state="running").start()  # a new session
        try:
            chat.wait_text("✅ Trainer back (new process), resumed at step 40; no steps lost.")
            second.event("resumed")
            chat.wait_text("▶️ Resumed at step 40")  # the feed moved past the restart
            assert chat.count("Trainer down") == 1
            assert chat.count("Trainer back") == 1
            assert ask(chat, "status").startswith("State: running, step 40")
        finally:
            second.close()


def test_a_restarted_sidecar_sends_one_summary_and_replays_nothing(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = FakeTrainer(*eps, state="running").start()
    try:
        with running_sidecar(make_config(*eps, tmp_path)) as (_, chat):
            chat.wait_text("Sidecar connected")
            trainer.event("started")
            chat.wait_text("Training started")
        for step in (100, 200):  # while the sidecar is away
            trainer.report(step)
            trainer.event("checkpoint_saved", path=f"/c/ckpt-{step}")
        deadline = time.monotonic() + 5
        while trainer.publisher.last_seq < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # publish() only queues: let the publisher number them
        with running_sidecar(make_config(*eps, tmp_path)) as (_, chat):
            summary = chat.wait_text("Sidecar back")
            assert "While I was away: 2× checkpoint saved (last at step 200)." in summary
            trainer.event("paused")
            chat.wait_text("⏸ Paused at step 200")
            texts = [m.text for m in chat.snapshot()]
            assert len(texts) == 2, texts  # one summary, then the live event
            assert not any("Training started" in t or "Checkpoint saved" in t for t in texts)
    finally:
        trainer.close()


def test_history_finds_events_older_than_thousands_of_step_messages(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    trainer.event("checkpoint_saved", path="ckpt-1")
    chat.wait_text("💾 Checkpoint saved")  # its notice first: else `ask` may take it for the reply
    trainer.advance(3000)  # per-step metrics bury the event under 3,000 seqs
    reply = ask(chat, "history")
    assert "checkpoint saved" in reply, reply


def test_chat_text_is_never_echoed_back_at_length(sidecar) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    long_word = "x" * 5000
    for text in (f"lr {long_word}", f"help {long_word}", f"history {long_word}", f"set {long_word} 1"):
        reply = ask(chat, text)
        assert len(reply) < 400 and long_word[:100] not in reply, (text[:20], reply[:200])


def test_with_curve_both_the_commands_and_the_feed_get_through(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = KeyPair.generate()
    server = ServerCurve(KeyPair.generate(), frozenset({client.public}))
    trainer = FakeTrainer(*eps, announce=False, curve=server).start()
    config = make_config(*eps, tmp_path / "state", curve=ClientCurve(client, server.public_key()))
    try:
        with running_sidecar(config) as (_, chat):
            chat.wait_text("Sidecar connected")  # the feed's snapshot (over its control client)
            trainer.event("started")
            chat.wait_text("▶️ Training started at step 0")  # over the SUB socket: it has the keys
            assert ask(chat, "status").startswith("State: idle")
    finally:
        trainer.close()


def test_an_int_beyond_64_bits_is_refused_as_out_of_range(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    # The fake declares no maximum: the bound is what the wire carries (a signed 64-bit int).
    for text in ("ti 99999999999999999999999", "ds=1e30", "start ti=1" + "0" * 5000):
        reply = ask(chat, text)
        assert reply.startswith("Invalid value: "), reply
        assert "9223372036854775" in reply and reply.endswith("Nothing changed."), reply
    assert trainer.params["training_iters"] == 200000 and trainer.params["display_step"] == 10
    assert trainer.state == "idle"
    assert "set_params" not in trainer.requests and "start" not in trainer.requests


def test_a_request_the_wire_cannot_carry_is_refused_not_an_internal_error(eps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTrainer(*eps, specs=(*SEED_SPECS, ParamSpec("note", "str", "", help="a note"))).start()
    try:
        with running_sidecar(make_config(*eps, tmp_path)) as (_, chat):
            chat.wait_text("Sidecar connected")
            reply = ask(chat, "set note " + "x" * (MAX_MESSAGE_BYTES + 1))
            assert reply.startswith("Could not send that to the trainer (encoded message is "), reply
            assert reply.endswith("Nothing changed.") and INTERNAL_ERROR_TEXT not in reply
            assert fake.params["note"] == "" and "set_params" not in fake.requests
            assert ask(chat, "set note hello").startswith("OK: note = hello")
    finally:
        fake.close()


@pytest.mark.parametrize(
    "text",
    [
        "lr 0.01 lr 0.5",
        "lr 0.01 learning_rate 0.5",
        "set lr=0.01 bs=64 LR=0.5",
        "start lr=0.01 learning_rate=0.2",
    ],
)
def test_a_param_given_twice_is_refused(sidecar, trainer: FakeTrainer, text: str) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    reply = ask(chat, text)
    assert reply.startswith("learning_rate is given twice (as 'lr' and "), reply
    assert reply.endswith("Nothing changed.")
    assert trainer.params["learning_rate"] == 0.001 and trainer.params["batch_size"] == 128
    assert trainer.state == "idle"
    assert "set_params" not in trainer.requests and "start" not in trainer.requests


def test_what_a_chinese_input_method_types_reads_as_ascii(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    help_text = ask(chat, "?")
    assert ask(chat, "？") == help_text
    assert ask(chat, "lr 0．01").startswith("OK: learning_rate = 0.01 (was 0.001)")
    assert ask(chat, "ＬＲ＝０．０２").startswith("OK: learning_rate = 0.02 (was 0.01)")
    assert ask(chat, "ｓｔａｒｔ").startswith("Starting")
    assert ask(chat, "ｓｔｏｐ").startswith("Stopping")
    assert trainer.state == "stopped"
    assert ask(chat, "状态").startswith("状态")  # Chinese command words are left as they are


def test_a_failure_whose_error_is_not_a_map_still_alerts(sidecar, trainer: FakeTrainer) -> None:  # type: ignore[no-untyped-def]
    _, chat = sidecar
    for error, shown in (("CUDA out of memory", "CUDA out of memory"), (["x"], "['x']"), (42, "42")):
        trainer.event("failed", error=error)
        chat.wait_text(f"❌ Training failed at step 0: {shown}")
