"""The pure text functions."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

from sidecar import render, render_runs
from sidecar.i18n import EN, ZH
from sidecar.render_runs import RunRow

REPORT = {
    "step": 1280,
    "epoch": 1,
    "loss": 0.1234567,
    "accuracy": 0.953125,
    "steps_per_s": 12.34,
    "eta_s": 245.0,
    "lr": 0.001,
}
STATUS = {
    "state": "running",
    "step": 1280,
    "epoch": 1,
    "total_steps": 2000,
    "steps_per_s": 12.3,
    "eta_s": 3725,
    "metrics": {"loss": 0.12},
    "params": {"learning_rate": 0.001, "batch_size": 128},
    "session": "s1",
    "last_seq": 9,
    "error": None,
    "last_checkpoint_step": 1000,
}


def test_progress_keeps_the_seed_line() -> None:
    assert render.progress(REPORT) == (
        "Iter 1280, Minibatch Loss= 0.123457, Training Accuracy= 0.95312 | 12.3 steps/s, ETA 4m05s"
    )


def test_durations() -> None:
    assert [render.duration(s) for s in (5, 65, 3725, None, float("nan"))] == [
        "5s",
        "1m05s",
        "1h02m",
        "?",
        "?",
    ]


def test_status_lists_state_metrics_params_and_checkpoint() -> None:
    text = render.status(STATUS)
    assert text.startswith("State: running, step 1280/2000 (epoch 1)")
    assert "ETA 1h02m" in text
    assert "learning_rate=0.001" in text
    assert "Last checkpoint: step 1000" in text


def test_finished_event_carries_test_accuracy_and_the_last_progress() -> None:
    body = {
        "event": "finished",
        "step": 2000,
        "state": "finished",
        "test_accuracy": 0.98123,
        "test_loss": 0.06,
    }
    text = render.event(body, last_progress=REPORT)
    assert "finished at step 2000: test accuracy 0.9812" in text
    assert "Iter 1280" in text


def test_stopped_event_carries_the_test_accuracy_of_the_final_evaluation() -> None:
    body = {"event": "stopped", "step": 159, "state": "finished", "test_accuracy": 0.9127, "test_loss": 0.3}
    assert render.event(body).startswith("⏹ Stopped at step 159: test accuracy 0.9127, test loss 0.3000")
    assert "stopped (test accuracy 0.9127)" in render.events_summary([body])


def test_failed_event_names_the_error() -> None:
    body = {
        "event": "failed",
        "step": 7,
        "error": {"type": "ResourceExhaustedError", "message": "OOM", "traceback_tail": "..."},
    }
    assert render.event(body) == "❌ Training failed at step 7: ResourceExhaustedError: OOM"


def test_state_events_are_quiet_and_unknown_events_still_show() -> None:
    assert render.event({"event": "state", "step": 1}) is None
    assert render.event({"event": "warmup_done", "step": 3}) == "Event warmup_done at step 3"


def test_param_changes_coalesce_to_first_old_and_last_new() -> None:
    bodies = [
        {"event": "param_changed", "name": "learning_rate", "old": 0.1, "new": 0.05, "applies_at_step": 10},
        {"event": "param_changed", "name": "learning_rate", "old": 0.05, "new": 0.01, "applies_at_step": 12},
        {"event": "param_changed", "name": "batch_size", "old": 128, "new": 64, "applies_at_step": 12},
    ]
    assert render.param_changes(bodies) == (
        "⚙️ Parameter changed: learning_rate: 0.1 → 0.01 (from step 12); batch_size: 128 → 64 (from step 12)"
    )


def test_params_show_aliases_values_and_ranges() -> None:
    text = render.params(
        [
            {
                "name": "learning_rate",
                "aliases": ["lr"],
                "type": "float",
                "minimum": 1e-6,
                "maximum": 1.0,
                "applies": "next_step",
                "value": 0.01,
            }
        ]
    )
    assert "learning_rate (lr) = 0.01  [float 1e-06..1, takes effect at the next step]" in text
    assert "next_step" not in text


def test_catch_up_summarises_instead_of_repeating() -> None:
    missed = [
        {"event": "checkpoint_saved", "step": 100},
        {"event": "checkpoint_saved", "step": 200},
        {"event": "finished", "step": 300, "test_accuracy": 0.97},
    ]
    text = render.catch_up(STATUS, missed)
    assert "2× checkpoint saved (last at step 200)" in text
    assert "finished (test accuracy 0.9700)" in text
    assert render.catch_up(STATUS, None).startswith("🔄 Sidecar back. The trainer restarted")


def test_action_replies_say_the_step_or_already() -> None:
    assert render.action("stop", {"state": "stopping", "at_step": 42, "already": False}) == (
        "Stopping at step 42 (state now stopping)."
    )
    assert "Already" in render.action("start", {"state": "running", "step": 5, "already": True})


def test_trainer_back_does_not_claim_step_0_while_the_restarted_trainer_is_loading() -> None:
    loading = render.trainer_back({**STATUS, "state": "loading", "step": 0}, restarted=True)
    assert "step 0" not in loading and "loading" in loading and "new process" in loading
    running = render.trainer_back(STATUS, restarted=False)
    assert running.startswith("✅ Trainer back (same process),") and "running at step 1280" in running


LR_SPEC = {
    "name": "learning_rate",
    "aliases": ["lr"],
    "type": "float",
    "minimum": 1e-6,
    "maximum": 1.0,
    "applies": "next_step",
    "value": 0.01,
    "help": "Optimizer learning rate.",
}


def test_metrics_read_one_way_everywhere() -> None:
    text = render.status({**STATUS, "metrics": {"accuracy": 1, "loss": 0.0509918, "val_loss": 2.3e-05}})
    assert "accuracy 1.0000, loss 0.0510, val_loss 2.30e-05" in text
    shown = [render.metric(v) for v in (1, 0.0509918, 0, "x", None)]
    assert shown == ["1.0000", "0.0510", "0.0000", "?", "?"]


def test_a_change_says_in_plain_words_when_it_takes_effect() -> None:
    result = {
        "params": {"learning_rate": 0.01, "display_step": 5},
        "applies_at_step": {"learning_rate": 1201, "display_step": 1200},
        "applies": {"learning_rate": "next_step", "display_step": "now"},
    }
    old = {"learning_rate": 0.001, "display_step": 10}
    assert render.params_set(result, old) == (
        "OK: learning_rate = 0.01 (was 0.001), from step 1201 (the next one); "
        "display_step = 5 (was 10), at once"
    )
    assert render.params_set(result, old, lang="zh") == (
        "已修改：学习率 learning_rate = 0.01（原为 0.001），从第 1201 步（下一步）起生效；"
        "显示间隔 display_step = 5（原为 10），立即生效"
    )


def test_chinese_status_and_actions_read_as_chinese() -> None:
    text = render.status({**STATUS, "metrics": {"accuracy": 1, "loss": 0.05}}, lang="zh")
    assert text.startswith("状态：训练中，第 1280/2000 步（第 1 轮）")
    assert "准确率 1.0000，损失 0.0500" in text and "预计还需 1小时02分" in text
    assert render.action("stop", {"state": "stopping", "at_step": 42}, lang="zh") == (
        "正在停止（第 42 步，当前状态：正在停止）。"
    )
    assert render.action("pause", {"state": "paused", "step": 3, "already": True}, lang="zh") == (
        "无需暂停：当前状态为“已暂停”（第 3 步）。"
    )


def test_help_on_a_parameter_explains_it() -> None:
    text = render.param_help(LR_SPEC)
    assert text.startswith("learning_rate (lr): Optimizer learning rate.")
    assert "Now 0.01; allowed float 1e-06..1; a change takes effect at the next step." in text
    assert "Change it with: lr 0.01" in text
    assert "下一步起生效" in render.param_help(LR_SPEC, lang="zh")


def test_alerts_have_chinese_variants_and_keep_their_english_text() -> None:
    english = render.trainer_down("closed", 3.0, 120, 100)
    assert (
        english.startswith("⚠️ Trainer down at step 120") and "Last checkpoint announced: step 100." in english
    )
    chinese = render.trainer_down("closed", 3.0, 120, 100, lang="zh")
    assert chinese.startswith("⚠️ 训练程序已退出（停在第 120 步）") and "第 100 步" in chinese
    back = render.trainer_back({"state": "running", "step": 100}, restarted=True, old_step=120, lang="zh")
    assert back == "✅ 训练程序已重启（新进程），从第 100 步继续；最近检查点之后的 20 步（101–120）正在重做。"


@pytest.mark.parametrize(
    ("error", "shown"),
    [("CUDA out of memory", "CUDA out of memory"), (["x"], "['x']"), (42, "42"), (None, "unknown error")],
)
def test_a_failure_whose_error_is_not_a_map_is_still_told(error: object, shown: str) -> None:
    body = {"event": "failed", "step": 7, "error": error}
    assert render.event(body) == f"❌ Training failed at step 7: {shown}"
    assert render.events_summary([body]) == f"failed ({shown})"
    if error is not None:  # with none, 'back' says the reason follows
        assert render.trainer_back({"state": "failed", "error": error}, restarted=True).endswith(shown)


# Bodies of another trainer (or a newer protocol) may hold anything anywhere: PROTOCOL.md says a
# client never crashes on what it does not know, so each renderer still says what it can.
WRONG_TYPES = (None, "x", ["a", 1], {"k": [1]}, 42, -1.5, True, math.nan, b"\xff")
EVENT = {"event": "failed", "step": 3, "error": {"type": "T", "message": "m"}, "path": "/a/ckpt-3",
         "test_accuracy": 0.9, "test_loss": 0.1, "accuracy": 0.5, "loss": 0.2, "name": "lr", "old": 1,
         "new": 2, "applies_at_step": 4}  # fmt: skip
SPEC = {"name": "lr", "aliases": ["l"], "type": "float", "minimum": 0, "maximum": 1, "applies": "now",
        "help": "h", "value": 1, "default": 1}  # fmt: skip
SET_RESULT = {"params": {"lr": 0.1}, "applies_at_step": {"lr": 3}, "applies": {"lr": "now"}}
RENDERERS: tuple[tuple[dict[str, Any], Callable[[dict[str, Any], str], object]], ...] = (
    *(
        (
            {**EVENT, "event": name},
            lambda b, lang: (
                render.event(b, last_progress=b, lang=lang), render.param_changes([b, b], lang),
                render.events_summary([b], lang), render.history([b], lang),
            ),
        )
        for name in ("failed", "finished", "stopped", "checkpoint_saved", "param_changed", "evaluated", "odd")
    ),
    (REPORT, lambda b, lang: render.progress(b, lang)),
    (
        STATUS,
        lambda b, lang: (
            render.connected(b, lang), render.catch_up(b, [EVENT], lang=lang), render.action("stop", b, lang),
            render.trainer_back(b, restarted=True, old_step=5, lang=lang),
            render.trainer_back({**b, "state": "failed"}, restarted=True, lang=lang),
            render.trainer_back(b, restarted=False, lang=lang), render_runs.row(RunRow("x", status=b), lang),
        ),
    ),
    (
        SPEC,
        lambda b, lang: (
            render.params([b], lang=lang), render.params(b, lang=lang), render.param_help(b, lang=lang),
        ),
    ),
    (SET_RESULT, lambda b, lang: render.params_set(b, {"lr": 1}, lang=lang)),
)  # fmt: skip


@pytest.mark.parametrize(("base", "renders"), RENDERERS)
def test_every_renderer_tolerates_any_field_of_any_type(
    base: dict[str, Any], renders: Callable[[dict[str, Any], str], object]
) -> None:
    bodies = [{}, *({**base, key: wrong} for key in base for wrong in WRONG_TYPES)]
    for body, lang in itertools.product(bodies, (EN, ZH)):
        renders(body, lang)  # no exception is the whole point: each returns its text
