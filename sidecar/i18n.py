"""Which language a reply is in, and the words that differ between languages.

Replies follow the command's own word: a Chinese command word (``开始``, ``参数``) is answered in
Chinese, an English one (``start``, ``params``) in English; words of neither kind (``lr 0.01``,
``?``) keep the language of the owner's previous command. Unprompted notices (progress, events,
alerts) use that same remembered language. ``CHATTRAIN_LANGUAGE=zh|en`` pins one language;
``auto`` (the default) follows the owner, starting in English.

The message catalog itself is `MESSAGES`: one key, an English and a Chinese template.
"""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import Any

from protocol.durations import EN_UNITS, format_duration

EN = "en"
ZH = "zh"
LANGUAGES = (EN, ZH)
AUTO = "auto"
LANGUAGE_CHOICES = (AUTO, EN, ZH)


def is_chinese(text: str) -> bool:
    """True when `text` holds a CJK ideograph (the common block is enough for commands)."""
    return any("\u4e00" <= char <= "\u9fff" for char in text)


def word_language(word: str) -> str | None:
    """The language a command word is written in; None for language-neutral words."""
    if is_chinese(word):
        return ZH
    return EN if len(word) > 2 and word.isascii() and word.isalpha() else None


class LanguagePreference:
    """The language of replies and notices: pinned by configuration or following the owner."""

    def __init__(self, configured: str = AUTO) -> None:
        if configured not in LANGUAGE_CHOICES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGE_CHOICES)}, got {configured!r}")
        self._configured = configured
        self._last = EN if configured == AUTO else configured
        self._lock = threading.Lock()

    def for_command(self, word: str) -> str:
        """The reply language for a command whose first word is `word` (remembered for notices)."""
        with self._lock:
            if self._configured == AUTO:
                self._last = word_language(word) or self._last
            return self._last

    def current(self) -> str:
        with self._lock:
            return self._last


def duration(seconds: object, lang: str = EN) -> str:
    """3725 -> '1h02m' (zh '1小时02分'), 65 -> '1m05s' ('1分05秒'), None/NaN -> '?'."""
    return format_duration(seconds, ("小时", "分", "秒") if lang == ZH else EN_UNITS)


def tr(lang: str, key: str, **fields: Any) -> str:
    """The catalog's template `key` in `lang` (English when missing), filled with `fields`."""
    templates = MESSAGES[key]
    return templates.get(lang, templates[EN]).format(**fields)


def label(table: MappingProxyType[str, dict[str, str]], name: str, lang: str) -> str:
    """A name's label in `lang` (state, event, parameter), the name itself when unknown."""
    return table.get(name, {}).get(lang, name.replace("_", " ") if lang == EN else name)


STATES = MappingProxyType(
    {
        "loading": {ZH: "加载中"},
        "idle": {ZH: "空闲"},
        "running": {ZH: "训练中"},
        "paused": {ZH: "已暂停"},
        "stopping": {ZH: "正在停止"},
        "stopped": {ZH: "已停止"},
        "finished": {ZH: "已完成"},
        "failed": {ZH: "已失败"},
    }
)
EVENTS = MappingProxyType(
    {
        "started": {ZH: "开始训练"},
        "param_changed": {EN: "parameter changed", ZH: "参数修改"},
        "checkpoint_saved": {ZH: "保存检查点"},
        "checkpoint_failed": {EN: "checkpoint failed", ZH: "检查点保存失败"},
        "paused": {ZH: "暂停"},
        "resumed": {ZH: "继续"},
        "stopped": {ZH: "停止"},
        "finished": {ZH: "训练完成"},
        "failed": {ZH: "训练失败"},
        "evaluated": {ZH: "评估"},
    }
)
METRICS = MappingProxyType(
    {
        "loss": {ZH: "损失"},
        "accuracy": {ZH: "准确率"},
        "val_loss": {ZH: "验证损失"},
        "val_accuracy": {ZH: "验证准确率"},
    }
)
PARAMS = MappingProxyType(
    {
        "learning_rate": {ZH: "学习率"},
        "training_iters": {ZH: "训练样本总数"},
        "batch_size": {ZH: "批大小"},
        "display_step": {ZH: "显示间隔"},
    }
)
# When a change takes effect, in plain words; `{step}` is the step it applies from.
APPLIES = MappingProxyType(
    {
        "next_step": {EN: "at the next step", ZH: "下一步起生效"},
        "now": {EN: "at once", ZH: "立即生效"},
        "next_epoch": {EN: "at the next epoch", ZH: "下一轮（epoch）起生效"},
    }
)
APPLIES_AT = MappingProxyType(
    {
        "next_step": {EN: "from step {step} (the next one)", ZH: "从第 {step} 步（下一步）起生效"},
        "now": {EN: "at once", ZH: "立即生效"},
        "next_epoch": {EN: "from step {step} (the next epoch)", ZH: "从第 {step} 步（下一轮）起生效"},
        "": {EN: "from step {step}", ZH: "从第 {step} 步起生效"},
        "loading": {EN: "once the trainer has loaded", ZH: "训练程序加载完后生效"},
    }
)

MESSAGES = MappingProxyType(
    {
        "state_line": {EN: "State: {state}, step {step}{total}", ZH: "状态：{state}，第 {step}{total} 步"},
        "epoch": {EN: " (epoch {epoch})", ZH: "（第 {epoch} 轮）"},
        "speed": {EN: "Speed {speed} steps/s, ETA {eta}", ZH: "速度 {speed} 步/秒，预计还需 {eta}"},
        "speed_short": {EN: "{speed} steps/s", ZH: "{speed} 步/秒"},
        "eta_short": {EN: "ETA {eta}", ZH: "预计还需 {eta}"},
        "params_line": {EN: "Params: {params}", ZH: "参数：{params}"},
        "last_checkpoint": {EN: "Last checkpoint: step {step}", ZH: "最近检查点：第 {step} 步"},
        "error_line": {EN: "Error: {error}", ZH: "错误：{error}"},
        "params_head": {
            EN: "Parameters (set with: <name> <value>, e.g. lr 0.01):",
            ZH: "参数（修改：<名称> <值>，例如 lr 0.01）：",
        },
        "param_row": {
            EN: "{name}{aliases}{current}  [{type}{range}, takes effect {applies}]{help}",
            ZH: "{name}{aliases}{current}  [{type}{range}，{applies}]{help}",
        },
        "param_help": {
            EN: "{name}{aliases}: {help}\nNow {value}; allowed {type}{range}; a change takes effect "
            "{applies}.\nChange it with: {example}",
            ZH: "{name}{aliases}：{help}\n当前 {value}；取值 {type}{range}；修改后{applies}。"
            "\n修改方法：{example}",
        },
        "set_ok": {EN: "OK: {changes}", ZH: "已修改：{changes}"},
        "set_part": {EN: "{name} = {new}{was}, {when}", ZH: "{name} = {new}{was}，{when}"},
        "was": {EN: " (was {old})", ZH: "（原为 {old}）"},
        "changed": {EN: "⚙️ Parameter changed: {changes}", ZH: "⚙️ 参数已修改：{changes}"},
        "changed_part": {
            EN: "{name}: {old} → {new} (from step {step})",
            ZH: "{name}：{old} → {new}（从第 {step} 步起）",
        },
        "already": {
            EN: "Already {state} (step {step}); nothing to {op}.",
            ZH: "无需{op}：当前状态为“{state}”（第 {step} 步）。",
        },
        "action": {
            EN: "{verb} at step {step} (state now {state}).",
            ZH: "{verb}（第 {step} 步，当前状态：{state}）。",
        },
        "checkpoint_saved": {
            EN: "💾 Checkpoint saved at step {step} ({where})",
            ZH: "💾 已在第 {step} 步保存检查点（{where}）",
        },
        "ended": {
            EN: "{head} at step {step}: test accuracy {accuracy}, test loss {loss}",
            ZH: "{head}（第 {step} 步）：测试准确率 {accuracy}，测试损失 {loss}",
        },
        "checkpoint_failed": {
            EN: "⚠️ Checkpoint of step {step} NOT saved ({error}); training goes on. {fallback}",
            ZH: "⚠️ 第 {step} 步的检查点未能保存（{error}）；训练继续。{fallback}",
        },
        "checkpoint_last": {
            EN: "A crash now would resume from step {step}.",
            ZH: "此时若崩溃，将从第 {step} 步恢复。",
        },
        "checkpoint_none": {
            EN: "No checkpoint is saved yet: a crash now would start over.",
            ZH: "尚无已保存的检查点：此时若崩溃，将从头开始。",
        },
        "failed": {
            EN: "❌ Training failed at step {step}: {error}",
            ZH: "❌ 训练在第 {step} 步失败：{error}",
        },
        "evaluated": {
            EN: "📊 Evaluation at step {step}: accuracy {accuracy}, loss {loss}",
            ZH: "📊 第 {step} 步评估：准确率 {accuracy}，损失 {loss}",
        },
        "event_at": {EN: "{label} at step {step}", ZH: "{label}（第 {step} 步）"},
        "last": {EN: "\nLast: {progress}", ZH: "\n最近：{progress}"},
        "unknown_command": {
            EN: "Unknown command {word}. Did you mean: {suggestions}? (help lists all)",
            ZH: "未知命令 {word}。您是想说：{suggestions}？（发送 帮助 查看全部命令）",
        },
        "connected": {EN: "🔗 Sidecar connected to the trainer.", ZH: "🔗 已连接到训练程序。"},
        "back": {EN: "🔄 Sidecar back.", ZH: "🔄 助手已重新上线。"},
        "back_restarted": {
            EN: " The trainer restarted meanwhile; earlier events are not known.",
            ZH: "期间训练程序重启过，之前的事件无从得知。",
        },
        "back_missed": {EN: " While I was away: {summary}.", ZH: "离线期间：{summary}。"},
        "back_none": {EN: " No events while I was away.", ZH: "离线期间没有事件。"},
        "back_partial": {
            EN: " (Older events are no longer in the trainer's history.)",
            ZH: "（更早的事件已不在训练程序的历史中。）",
        },
        "summary_test": {EN: "{part} (test accuracy {accuracy})", ZH: "{part}（测试准确率 {accuracy}）"},
        "summary_error": {EN: "{part} ({error})", ZH: "{part}（{error}）"},
        "summary_step": {EN: "{part} (last at step {step})", ZH: "{part}（最近在第 {step} 步）"},
        "history_none": {EN: "No events in the trainer's history.", ZH: "训练程序的历史中没有事件。"},
        "history_head": {EN: "Recent events:", ZH: "最近的事件："},
        "history_row": {EN: "step {step}: {event}", ZH: "第 {step} 步：{event}"},
        "more_events": {
            EN: "({count} more events not shown: too many at once; see 'history')",
            ZH: "（还有 {count} 条事件未显示：一次太多；发送 历史 查看）",
        },
        "unavailable": {
            EN: "Trainer unavailable: it did not answer. Is it running?",
            ZH: "训练程序没有应答。它在运行吗？",
        },
        "refused": {
            EN: "Refused by the trainer ({code}): {message}",
            ZH: "训练程序拒绝了（{code}）：{message}",
        },
        "not_allowed": {
            EN: "Only the owner can do that. You may use: status, params, history, plot, help.",
            ZH: "只有主人可以这样做。您可以用：状态、参数、历史、曲线、帮助。",
        },
        "internal": {EN: "Internal error, see the sidecar's log.", ZH: "内部错误，详见助手日志。"},
        "checkpoint_scheduled": {
            EN: "Checkpoint scheduled at step {step}; I'll tell you when it is saved.",
            ZH: "将在第 {step} 步保存检查点，保存后通知您。",
        },
        "eval_scheduled": {
            EN: "Evaluation scheduled at step {step}; the result follows when done.",
            ZH: "将在第 {step} 步评估，完成后发送结果。",
        },
        "no_metrics": {EN: "No metrics yet: nothing to plot.", ZH: "还没有指标数据，无法画图。"},
        "plot_caption": {EN: "Loss and accuracy up to step {step}", ZH: "截至第 {step} 步的损失和准确率"},
        "not_changed": {EN: "Not changed: {message}", ZH: "未修改：{message}"},
        "bad_pairs": {
            EN: "{error}. Usage: <name> <value>, e.g. lr 0.01",
            ZH: "格式不对（{error}）。用法：<名称> <值>，例如 lr 0.01",
        },
        "bad_value": {
            EN: "Invalid value: {error}{hint}. Nothing changed.",
            ZH: "取值无效：{error}{hint}。未做任何修改。",
        },
        "given_twice": {
            EN: "{name} is given twice (as {first} and {second}): give each parameter once. Nothing changed.",
            ZH: "{name} 给了两次（{first} 和 {second}）：每个参数只能给一次。未做任何修改。",
        },
        "not_sent": {
            EN: "Could not send that to the trainer ({error}). Nothing changed.",
            ZH: "无法发给训练程序（{error}）。未做任何修改。",
        },
        "allowed": {EN: " (allowed: {type} {range})", ZH: "（允许：{type} {range}）"},
        "a_type": {EN: " (a {type})", ZH: "（应为 {type}）"},
        "unknown_param": {
            EN: "Unknown parameter {name}.{hint} Known: {known}.",
            ZH: "未知参数 {name}。{hint}已有参数：{known}。",
        },
        "did_you_mean": {EN: " Did you mean: {words}?", ZH: "您是想说：{words}？"},
        "bad_count": {
            EN: "history takes a count from 1 to {most}, got {text}",
            ZH: "历史 后面的数字应在 1 到 {most} 之间，收到的是 {text}",
        },
        "no_command": {
            EN: "No command {word}. Send 'help' for the list.",
            ZH: "没有 {word} 这个命令。发送 帮助 查看列表。",
        },
        # -- several runs (sidecar/render_runs.py) --
        "runs_head": {EN: "Runs ({count}):", ZH: "训练任务（{count} 个）："},
        "run_row": {
            EN: "{name}{mark}: {state}, step {step}{total}, loss {loss}, ETA {eta}",
            ZH: "{name}{mark}：{state}，第 {step}{total} 步，损失 {loss}，预计还需 {eta}",
        },
        "run_row_short": {EN: "{name}{mark}: {state}{step}", ZH: "{name}{mark}：{state}{step}"},
        "run_step": {EN: ", last seen at step {step}", ZH: "，最后在第 {step} 步"},
        "run_down": {EN: "down", ZH: "已断开"},
        "run_unreachable": {EN: "not answering", ZH: "无应答"},
        "run_chosen": {EN: " (chosen)", ZH: "（已选定）"},
        "run_not_sent": {EN: "down (its connection closed): not sent", ZH: "已断开（连接已关闭）：未发送"},
        "runs_hint": {
            EN: "Address one with @name (e.g. @{name} status), all with 'stop all' / 'status all', "
            "or choose one: use {name}",
            ZH: "用 @名称 指定一个（例如 @{name} 状态），全部：停止 全部 / 状态 全部；或先选定：使用 {name}",
        },
        "runs_none": {
            EN: "No runs found yet (connection files in {where}).",
            ZH: "还没有发现训练任务（在 {where} 中查找连接文件）。",
        },
        "one_or_all": {
            EN: "That names {name} and also another run or all of them: say one. For {name} alone: "
            "@{name} {command}; for every run, leave out @{name}. Nothing was changed.",
            ZH: "这条消息既指定了 {name}，又指定了其他任务或全部，请只指定一个。"
            "只发给 {name}：@{name} {command}；发给全部任务：去掉 @{name}。未做任何修改。",
        },
        "which_run": {
            EN: "Several runs: say which one, e.g. @{name} {command}, or choose one with: use {name}. "
            "Nothing was changed.\n{runs}",
            ZH: "有多个训练任务，请指定，例如 @{name} {command}；或先 使用 {name}。未做任何修改。\n{runs}",
        },
        "no_such_run": {EN: "No run named {name}.\n{runs}", ZH: "没有名为 {name} 的训练任务。\n{runs}"},
        "using": {EN: "Commands without @name now go to {name}.", ZH: "之后不带 @名称 的命令发给 {name}。"},
        "using_now": {EN: "Commands without @name go to {name}.", ZH: "不带 @名称 的命令发给 {name}。"},
        "using_none": {
            EN: "No run chosen: name one with @name, or choose one: use NAME.",
            ZH: "尚未选定：用 @名称 指定，或先 使用 名称。",
        },
        # -- the iLink backend (sidecar/ilink.py) and its reply window (sidecar/window.py) --
        "ilink_text_only": {
            EN: "I understand text only: please type the command (voice works when WeChat transcribes it).",
            ZH: "我只看得懂文字：请输入命令（微信能转成文字的语音也可以）。",
        },
        "ilink_image_failed": {
            EN: "(The plot could not be sent as an image: {error}. 'status' has the numbers.)",
            ZH: "（曲线图未能以图片发送：{error}。发送 状态 可查看数值。）",
        },
        "ilink_plot_held": {EN: "(a plot: send 'plot' again)", ZH: "（一张曲线图：请再发送 曲线）"},
        "window_notice": {
            EN: "⏳ WeChat will soon stop delivering my updates ({why}). Send any message to keep receiving "
            "updates.",
            ZH: "⏳ 微信很快将不再转发我的通知（{why}）。发送任意消息即可继续接收。",
        },
        "window_left": {
            EN: "only {count} more messages until you write",
            ZH: "在您发消息之前只能再发 {count} 条",
        },
        "window_closing": {EN: "its window closes in about {duration}", ZH: "约 {duration} 后窗口关闭"},
        "held_head_one": {
            EN: "📬 1 update WeChat did not deliver while you were away:",
            ZH: "📬 您不在时有 1 条更新微信未能送达：",
        },
        "held_head": {
            EN: "📬 {count} updates WeChat did not deliver while you were away:",
            ZH: "📬 您不在时有 {count} 条更新微信未能送达：",
        },
        "held_progress": {EN: "Last progress: {line}", ZH: "最近进度：{line}"},
        "held_dropped": {
            EN: "(and {count} older updates; see 'history')",
            ZH: "（另有 {count} 条更早的更新；发送 历史 查看）",
        },
        "help_head": {EN: "Commands:", ZH: "命令："},
        "help_aliases": {EN: "Aliases: {aliases}", ZH: "别名：{aliases}"},
        "help_values": {
            EN: "Current values: params; one parameter: help lr",
            ZH: "当前取值：参数；单个参数说明：帮助 lr",
        },
    }
)
VERBS = MappingProxyType(
    {
        "start": {EN: "Starting", ZH: "开始训练"},
        "stop": {EN: "Stopping", ZH: "正在停止"},
        "pause": {EN: "Pausing", ZH: "正在暂停"},
        "resume": {EN: "Resuming", ZH: "继续训练"},
    }
)
OP_WORDS = MappingProxyType(
    {"start": {ZH: "开始"}, "stop": {ZH: "停止"}, "pause": {ZH: "暂停"}, "resume": {ZH: "继续"}}
)
