"""The feed's alerts about the trainer's process: down, back, not responding, stalled.

Pure functions like render.py (which re-exports them, so callers use `render.trainer_down`);
kept apart because render.py is long enough. The English texts are what the system tests check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.i18n import EN, STATES, ZH, duration, label

MAX_ERROR_CHARS = 300


def error_text(error: Any) -> str:
    """A protocol error dict -> 'Type: message', capped; anything else (a trainer that sends the
    reason as a string, or a list) as its text, so the alert that carries it still goes out."""
    if not error:
        return "unknown error"
    if not isinstance(error, Mapping):
        return str(error)[:MAX_ERROR_CHARS]
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
    return text[:MAX_ERROR_CHARS]


def trainer_down(
    reason: str, silent_s: float, last_step: int | None, checkpoint_step: int | None, lang: str = EN
) -> str:
    """TrainerDown -> what the owner can rely on: which step it had reached, what is saved."""
    if reason == "unreachable":
        if lang == ZH:
            return f"⚠️ {duration(silent_s, lang)}内连不上训练程序：它在运行吗？它一出现我就通知您。"
        return (
            f"⚠️ No trainer reachable for {duration(silent_s)}: is it running? "
            "I will tell you when it appears."
        )
    if lang == ZH:
        where = f"（停在第 {last_step} 步）" if last_step else ""
        saved = f"第 {checkpoint_step} 步" if checkpoint_step is not None else "尚无"
        return f"⚠️ 训练程序已退出{where}：连接已关闭。我收到的最近检查点：{saved}。它恢复后我会通知您。"
    where = f" at step {last_step}" if last_step else ""
    # What this sidecar heard of: one announced in the instant before a kill may not have reached
    # it. Where the run really resumes, the 'back' message says.
    saved = f"step {checkpoint_step}" if checkpoint_step is not None else "none yet"
    return (
        f"⚠️ Trainer down{where}: its connection closed (the process ended, or stopped answering "
        f"entirely). Last checkpoint announced: {saved}. I will tell you when it is back."
    )


def trainer_back(
    result: Mapping[str, Any], restarted: bool, old_step: int | None = None, lang: str = EN
) -> str:
    """The trainer answers again. After a restart (`restarted`), `result` is its first status or
    state event once loaded, and `old_step` the last step the old process was seen at."""
    state = result.get("state", "?")
    zh = lang == ZH
    if not restarted:
        if zh:
            where = f"{label(STATES, str(state), ZH)}，第 {result.get('step', '?')} 步"
            return f"✅ 训练程序恢复（同一进程），{where}。"
        return f"✅ Trainer back (same process), {state} at step {result.get('step', '?')}."
    if state == "loading":  # still importing or restoring: the step is not known yet
        if zh:
            return "✅ 训练程序已重启（新进程），仍在加载；加载完我会告诉您从哪一步继续。"
        return "✅ Trainer back (new process), still loading; I will say where it resumes."
    step = result.get("step")
    head = "✅ 训练程序已重启（新进程）" if zh else "✅ Trainer back (new process)"
    if state == "failed":
        error = result.get("error")
        if zh:
            return f"{head}，但已失败：" + (error_text(error) if error else "原因随后发送。")
        return f"{head}, but it failed: " + (error_text(error) if error else "the reason follows.")
    if zh:
        verb = "从" if state == "running" else f"{label(STATES, str(state), ZH)}，停在"
        text = f"{head}，{verb}第 {step} 步{'继续' if state == 'running' else ''}"
    else:
        verb = "resumed" if state == "running" else f"{state}"
        text = f"{head}, {verb} at step {step}"
    if isinstance(step, int) and isinstance(old_step, int):
        text += lost_steps(step, old_step, running=state == "running", lang=lang)
    return text + ("。" if zh else ".")


def lost_steps(resumed: int, old_step: int, *, running: bool, lang: str = EN) -> str:
    """'; the 23 steps since the last checkpoint (241–263) are being redone' and its kin."""
    lost = old_step - resumed
    span = f"{resumed + 1}–{old_step}" if lost > 1 else f"{old_step}"
    if lang == ZH:
        if lost <= 0:
            return "；没有丢失步数"
        fate = "正在重做" if running else "将在继续训练时重做"
        if resumed == 0:
            return f"；没有保存过检查点，全部 {lost} 步（{span}）{fate}"
        return f"；最近检查点之后的 {lost} 步（{span}）{fate}"
    if lost <= 0:
        return "; no steps lost"
    fate = ("is" if lost == 1 else "are") + " being redone" if running else "will be redone when it runs"
    steps = f"{lost} step{'s' if lost != 1 else ''}"
    if resumed == 0:
        return f"; no checkpoint was saved, so all {steps} ({span}) {fate}"
    return f"; the {steps} since the last checkpoint ({span}) {fate}"


def not_responding(silent_s: float, lang: str = EN) -> str:
    if lang == ZH:
        return (
            f"⏳ 训练程序 {duration(silent_s, lang)} 没有回应，但连接仍在："
            "多半正忙（加载、编译、保存检查点）。它回应或退出时我会通知您。"
        )
    return (
        f"⏳ Trainer not responding for {duration(silent_s)}, but its connection is open: probably busy "
        "(loading, tracing, checkpointing). I will tell you when it answers again or goes down."
    )


def responding(silent_s: float, lang: str = EN) -> str:
    if lang == ZH:
        return f"✅ 训练程序又有回应了（沉默了 {duration(silent_s, lang)}）。"
    return f"✅ Trainer responding again (it was silent for {duration(silent_s)})."


def stalled(loop_age_s: float, lang: str = EN) -> str:
    if lang == ZH:
        return f"🐢 训练卡住了：训练循环已 {duration(loop_age_s, lang)} 没有前进。"
    return f"🐢 Trainer stalled: the training loop has not moved for {duration(loop_age_s)}."


def unstalled(lang: str = EN) -> str:
    return "✅ 训练恢复前进。" if lang == ZH else "✅ Trainer progressing again."
