"""Pure functions turning trainer status, events and metrics into chat text.

Inputs are the plain dicts of the protocol (status results, message bodies); nothing here
touches a socket or the chat. Every function takes `lang` ("en" or "zh", see i18n.py); the
templates live in i18n's catalog. Progress keeps the seed's line
("Iter N, Minibatch Loss= x, Training Accuracy= y") in both languages, so old habits still read it.
Metrics are shown one way everywhere (`metric`): four decimals, scientific below 0.001.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sidecar import i18n
from sidecar.i18n import EN, ZH, tr
from sidecar.render_alerts import (  # re-exported: the feed calls render.trainer_down
    MAX_ERROR_CHARS as MAX_ERROR_CHARS,
)
from sidecar.render_alerts import error_text as _error
from sidecar.render_alerts import (
    lost_steps as lost_steps,
)
from sidecar.render_alerts import (
    not_responding as not_responding,
)
from sidecar.render_alerts import (
    responding as responding,
)
from sidecar.render_alerts import (
    stalled as stalled,
)
from sidecar.render_alerts import (
    trainer_back as trainer_back,
)
from sidecar.render_alerts import (
    trainer_down as trainer_down,
)
from sidecar.render_alerts import (
    unstalled as unstalled,
)

Body = Mapping[str, Any]
QUIET_EVENTS = frozenset({"state"})  # every change already has its own event
MAX_ECHO_CHARS = 40
NOT_METRICS = frozenset({"step", "epoch", "eta_s", "steps_per_s", "lr", "finite"})  # shown apart
SMALL_METRIC = 1e-3


def quote(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Chat text echoed back in a reply: repr'd and cut, so 5,000 characters never come back."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)


def duration(seconds: object, lang: str = EN) -> str:
    """3725 -> '1h02m', 65 -> '1m05s', None/NaN -> '?' (Chinese units for zh)."""
    return i18n.duration(seconds, lang)


def as_map(field: Any) -> Mapping[str, Any]:
    """A field that should be a map, or an empty one: a body of another trainer (or a newer
    protocol) may hold anything there, and the message around it must still go out."""
    return field if isinstance(field, Mapping) else {}


def _maps(field: Any) -> list[Mapping[str, Any]]:
    """The maps in a field that should be a list of them (describe's params)."""
    return [item for item in field if isinstance(item, Mapping)] if isinstance(field, (list, tuple)) else []


def _aliases(spec: Body) -> list[str]:
    aliases = spec.get("aliases")
    return [str(alias) for alias in aliases] if isinstance(aliases, (list, tuple)) else []


def value(v: Any) -> str:
    """A parameter value, short: floats in %g (as the owner typed them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def metric(v: Any) -> str:
    """A metric value: 0.0510, 1.0000, 2.3e-05; '?' when not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "?"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4f}" if v == 0 or abs(v) >= SMALL_METRIC else f"{v:.2e}"


def _number(body: Body, key: str, fmt: str) -> str:
    v = body.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "?"


def progress(body: Body, lang: str = EN) -> str:
    """A metrics.report body -> the seed's progress line plus speed and ETA."""
    line = (
        f"Iter {body.get('step', '?')}, Minibatch Loss= {_number(body, 'loss', '.6f')}, "
        f"Training Accuracy= {_number(body, 'accuracy', '.5f')}"
    )
    extras = []
    if isinstance(body.get("steps_per_s"), (int, float)):
        extras.append(tr(lang, "speed_short", speed=f"{body['steps_per_s']:.1f}"))
    if body.get("eta_s") is not None:
        extras.append(tr(lang, "eta_short", eta=duration(body.get("eta_s"), lang)))
    return line + (" | " + ("，" if lang == ZH else ", ").join(extras) if extras else "")


def state_name(state: Any, lang: str = EN) -> str:
    return i18n.label(i18n.STATES, str(state), lang) if lang == ZH else str(state)


def event_name(name: str, lang: str = EN) -> str:
    """'checkpoint_saved' -> 'checkpoint saved' / '保存检查点'."""
    return i18n.label(i18n.EVENTS, name, lang)


def metric_name(name: str, lang: str = EN) -> str:
    """'accuracy' -> 'accuracy' / '准确率'."""
    return i18n.label(i18n.METRICS, name, lang) if lang == ZH else name


def param_name(name: str, lang: str = EN) -> str:
    """'learning_rate' -> 'learning_rate' / '学习率 learning_rate'."""
    label = i18n.label(i18n.PARAMS, name, lang) if lang == ZH else name
    return name if label == name else f"{label} {name}"


def event(body: Body, last_progress: Body | None = None, lang: str = EN) -> str | None:
    """An event.* body -> chat text; None for events not worth a message."""
    name = str(body.get("event", "?"))
    step = body.get("step", "?")
    if name in QUIET_EVENTS:
        return None
    if name == "param_changed":
        return param_changes([body], lang)
    if name == "checkpoint_saved":
        where = os.path.basename(str(body.get("path", ""))) or "?"
        return tr(lang, "checkpoint_saved", step=step, where=where)
    if name == "checkpoint_failed":  # what a crash now loses is counted from the last good one
        last = body.get("last_checkpoint_step")
        fallback = (
            tr(lang, "checkpoint_last", step=last) if isinstance(last, int) else tr(lang, "checkpoint_none")
        )
        return tr(lang, "checkpoint_failed", step=step, error=_error(body.get("error")), fallback=fallback)
    if name in ("finished", "stopped"):  # both end with the full test set evaluated
        heads = {"finished": ("🏁 Training finished", "🏁 训练完成"), "stopped": ("⏹ Stopped", "⏹ 已停止")}
        head = heads[name][lang == ZH]
        text = tr(
            lang, "ended", head=head, step=step,
            accuracy=metric(body.get("test_accuracy")), loss=metric(body.get("test_loss")),
        )  # fmt: skip
    elif name == "failed":
        text = tr(lang, "failed", step=step, error=_error(body.get("error")))
    elif name == "evaluated":
        accuracy, loss = metric(body.get("accuracy")), metric(body.get("loss"))
        text = tr(lang, "evaluated", step=step, accuracy=accuracy, loss=loss)
    else:
        labels = {
            "started": ("▶️ Training started", "▶️ 开始训练"),
            "paused": ("⏸ Paused", "⏸ 已暂停"),
            "resumed": ("▶️ Resumed", "▶️ 继续训练"),
        }
        label = labels[name][lang == ZH] if name in labels else f"Event {name}"
        text = tr(lang, "event_at", label=label, step=step)
    if last_progress is not None:
        text += tr(lang, "last", progress=progress(last_progress, lang))
    return text


def param_changes(bodies: Sequence[Body], lang: str = EN) -> str:
    """One or more param_changed bodies -> one message (the first old, the last new value)."""
    merged: dict[str, list[Any]] = {}
    for body in bodies:
        name = str(body.get("name", "?"))
        if name in merged:
            merged[name][1:] = [body.get("new"), body.get("applies_at_step")]
        else:
            merged[name] = [body.get("old"), body.get("new"), body.get("applies_at_step")]
    parts = [
        tr(lang, "changed_part", name=param_name(name, lang), old=value(old), new=value(new), step=at)
        for name, (old, new, at) in merged.items()
    ]
    return tr(lang, "changed", changes=("；" if lang == ZH else "; ").join(parts))


def status(result: Body, lang: str = EN) -> str:
    """A status result -> a few lines."""
    total = result.get("total_steps")
    state, total_text = state_name(result.get("state", "?"), lang), f"/{total}" if total else ""
    head = tr(lang, "state_line", state=state, step=result.get("step", "?"), total=total_text)
    if result.get("epoch") is not None:
        head += tr(lang, "epoch", epoch=result["epoch"])
    lines = [head]
    metrics = as_map(result.get("metrics"))
    shown = {k: v for k, v in metrics.items() if k not in NOT_METRICS}
    if shown:
        sep = "，" if lang == ZH else ", "
        lines.append(sep.join(f"{metric_name(k, lang)} {metric(v)}" for k, v in sorted(shown.items())))
    if result.get("state") == "running":
        speed, eta = _number(result, "steps_per_s", ".1f"), duration(result.get("eta_s"), lang)
        lines.append(tr(lang, "speed", speed=speed, eta=eta))
    params = as_map(result.get("params"))
    if params:
        shown_params = ", ".join(f"{k}={value(v)}" for k, v in sorted(params.items()))
        lines.append(tr(lang, "params_line", params=shown_params))
    if result.get("last_checkpoint_step") is not None:
        lines.append(tr(lang, "last_checkpoint", step=result["last_checkpoint_step"]))
    if result.get("error"):
        lines.append(tr(lang, "error_line", error=_error(result["error"])))
    return "\n".join(lines)


def params(described: Iterable[Body], with_values: bool = True, lang: str = EN) -> str:
    """describe's params (spec dicts with 'value') -> one line each, with range and aliases;
    without values for help text, which comes from a cached describe."""
    lines = [tr(lang, "params_head")]
    for spec in _maps(described):
        aliases = "/".join(_aliases(spec))
        lines.append(
            tr(
                lang, "param_row", name=param_name(str(spec.get("name", "?")), lang),
                aliases=f" ({aliases})" if aliases else "",
                current=f" = {value(spec.get('value', spec.get('default')))}" if with_values else "",
                type=spec.get("type", "?"), range=allowed_range(spec), applies=applies(spec, lang),
                help=f" {spec['help']}" if spec.get("help") and not with_values else "",
            )
        )  # fmt: skip
    return "\n".join(lines)


def param_help(spec: Body, lang: str = EN) -> str:
    """`help lr`: what the parameter is, its value and range, when a change takes effect."""
    name, aliases = str(spec.get("name", "?")), "/".join(_aliases(spec))
    example_value = spec.get("value", spec.get("default"))
    return tr(
        lang, "param_help", name=param_name(name, lang),
        aliases=f" ({aliases})" if aliases else "", help=spec.get("help") or "",
        value=value(example_value), type=spec.get("type", "?"), range=allowed_range(spec),
        applies=applies(spec, lang),
        example=f"{(_aliases(spec) or [name])[0]} {value(example_value)}",
    )  # fmt: skip


def applies(spec: Body, lang: str = EN) -> str:
    """When a change of this parameter takes effect, in plain words."""
    how = str(spec.get("applies", ""))
    return i18n.APPLIES[how][lang] if how in i18n.APPLIES else how


def allowed_range(spec: Body) -> str:
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is None and high is None:
        return ""
    return f" {value(low) if low is not None else '-∞'}..{value(high) if high is not None else '∞'}"


def params_set(result: Body, old: Mapping[str, Any] | None = None, lang: str = EN) -> str:
    """A set_params result -> 'OK: learning_rate = 0.01 (was 0.001), from step 120 (the next one)'."""
    at, how, old = as_map(result.get("applies_at_step")), as_map(result.get("applies")), old or {}
    parts = []
    for name, new in as_map(result.get("params")).items():
        when = i18n.APPLIES_AT.get(str(how.get(name, "")), i18n.APPLIES_AT[""])[lang]
        if name in at and at[name] is None:  # still loading: it does not know at which step yet
            when = i18n.APPLIES_AT["loading"][lang]
        was = tr(lang, "was", old=value(old[name])) if name in old and old[name] != new else ""
        parts.append(
            tr(lang, "set_part", name=param_name(name, lang), new=value(new), was=was,
               when=when.format(step=at.get(name, "?")))
        )  # fmt: skip
    return tr(lang, "set_ok", changes=("；" if lang == ZH else "; ").join(parts))


def action(op: str, result: Body, lang: str = EN) -> str:
    """A start/stop/pause/resume result -> reply text."""
    step = result.get("step", result.get("at_step", "?"))
    state = state_name(result.get("state", "?"), lang)
    if result.get("already"):
        return tr(lang, "already", state=state, step=step, op=i18n.label(i18n.OP_WORDS, op, lang))
    return tr(lang, "action", verb=i18n.label(i18n.VERBS, op, lang), step=step, state=state)


def unknown_command(word: str, suggestions: Sequence[str], lang: str = EN) -> str:
    return tr(lang, "unknown_command", word=quote(word), suggestions=", ".join(suggestions))


def connected(result: Body, lang: str = EN) -> str:
    """The first message of a sidecar with no saved cursor."""
    return tr(lang, "connected") + "\n" + status(result, lang)


def catch_up(result: Body, missed: Sequence[Body] | None, partial: bool = False, lang: str = EN) -> str:
    """One summary for a restarted sidecar: what it missed (`missed`: the event bodies since
    its cursor; None when unknown, e.g. the trainer restarted too), then the current status."""
    head = tr(lang, "back")
    if missed is None:
        head += tr(lang, "back_restarted")
    elif missed:
        head += tr(lang, "back_missed", summary=events_summary(missed, lang))
    else:
        head += tr(lang, "back_none")
    if partial:
        head += tr(lang, "back_partial")
    return head + "\n" + status(result, lang)


def events_summary(bodies: Sequence[Body], lang: str = EN) -> str:
    """Event bodies -> 'started, 3× checkpoint saved (last at step 3000), finished (test accuracy 0.9800)'."""
    counts = Counter(str(b.get("event", "?")) for b in bodies)
    last: dict[str, Body] = {str(b.get("event", "?")): b for b in bodies}
    parts = []
    for name in counts:
        body, label = last[name], event_name(name, lang)
        part = f"{counts[name]}× {label}" if counts[name] > 1 else label
        if name in ("finished", "stopped"):
            part = tr(lang, "summary_test", part=part, accuracy=metric(body.get("test_accuracy")))
        elif name == "failed":
            part = tr(lang, "summary_error", part=part, error=_error(body.get("error")))
        else:
            part = tr(lang, "summary_step", part=part, step=body.get("step", "?"))
        parts.append(part)
    return ("，" if lang == ZH else ", ").join(parts)


def history(bodies: Sequence[Body], lang: str = EN) -> str:
    if not bodies:
        return tr(lang, "history_none")
    rows = []
    for b in bodies:
        text = event_name(str(b.get("event", "?")), lang)
        if b.get("event") == "param_changed":
            text += f" {param_name(str(b.get('name')), lang)} {value(b.get('old'))} → {value(b.get('new'))}"
        rows.append(tr(lang, "history_row", step=b.get("step", "?"), event=text))
    return tr(lang, "history_head") + "\n" + "\n".join(rows)
