"""Pure functions turning trainer status, events and metrics into chat text.

Inputs are the plain dicts of the protocol (status results, message bodies); nothing here
touches a socket or the chat. Progress keeps the seed's line
("Iter N, Minibatch Loss= x, Training Accuracy= y") so old habits still read it.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Body = Mapping[str, Any]
QUIET_EVENTS = frozenset({"state"})  # every change already has its own event
MAX_ERROR_CHARS = 300
MAX_ECHO_CHARS = 40
NOT_METRICS = frozenset({"step", "epoch", "eta_s", "steps_per_s", "lr", "finite"})  # shown apart


def quote(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Chat text echoed back in a reply: repr'd and cut, so 5,000 characters never come back."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)


def duration(seconds: float | None) -> str:
    """3725 -> '1h02m', 65 -> '1m05s', None/NaN -> '?'."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def value(v: Any) -> str:
    """A parameter or metric value, short: floats in %g."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _number(body: Body, key: str, fmt: str) -> str:
    v = body.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "?"


def progress(body: Body) -> str:
    """A metrics.report body -> the seed's progress line plus speed and ETA."""
    line = (
        f"Iter {body.get('step', '?')}, Minibatch Loss= {_number(body, 'loss', '.6f')}, "
        f"Training Accuracy= {_number(body, 'accuracy', '.5f')}"
    )
    extras = []
    if isinstance(body.get("steps_per_s"), (int, float)):
        extras.append(f"{body['steps_per_s']:.1f} steps/s")
    if body.get("eta_s") is not None:
        extras.append(f"ETA {duration(body.get('eta_s'))}")
    return line + (" | " + ", ".join(extras) if extras else "")


def _error(error: Body | None) -> str:
    if not error:
        return "unknown error"
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
    return text[:MAX_ERROR_CHARS]


def event(body: Body, last_progress: Body | None = None) -> str | None:
    """An event.* body -> chat text; None for events not worth a message."""
    name = str(body.get("event", "?"))
    step = body.get("step", "?")
    if name in QUIET_EVENTS:
        return None
    if name == "param_changed":
        return param_changes([body])
    if name == "checkpoint_saved":
        where = os.path.basename(str(body.get("path", ""))) or "?"
        return f"💾 Checkpoint saved at step {step} ({where})"
    if name in ("finished", "stopped"):  # both end with the full test set evaluated
        head = "🏁 Training finished" if name == "finished" else "⏹ Stopped"
        text = (
            f"{head} at step {step}: test accuracy "
            f"{_number(body, 'test_accuracy', '.4f')}, test loss {_number(body, 'test_loss', '.4f')}"
        )
    elif name == "failed":
        text = f"❌ Training failed at step {step}: {_error(body.get('error'))}"
    elif name == "evaluated":
        text = (
            f"📊 Evaluation at step {step}: accuracy {_number(body, 'accuracy', '.4f')}, "
            f"loss {_number(body, 'loss', '.4f')}"
        )
    else:
        labels = {
            "started": "▶️ Training started",
            "paused": "⏸ Paused",
            "resumed": "▶️ Resumed",
        }
        text = f"{labels.get(name, f'Event {name}')} at step {step}"
    if last_progress is not None:
        text += "\nLast: " + progress(last_progress)
    return text


def param_changes(bodies: Sequence[Body]) -> str:
    """One or more param_changed bodies -> one message (the first old, the last new value)."""
    merged: dict[str, list[Any]] = {}
    for body in bodies:
        name = str(body.get("name", "?"))
        if name in merged:
            merged[name][1:] = [body.get("new"), body.get("applies_at_step")]
        else:
            merged[name] = [body.get("old"), body.get("new"), body.get("applies_at_step")]
    parts = [
        f"{name}: {value(old)} → {value(new)} (from step {at})" for name, (old, new, at) in merged.items()
    ]
    return "⚙️ Parameter changed: " + "; ".join(parts)


def status(result: Body) -> str:
    """A status result -> a few lines."""
    total = result.get("total_steps")
    lines = [
        f"State: {result['state']}, step {result['step']}"
        + (f"/{total}" if total else "")
        + (f" (epoch {result['epoch']})" if result.get("epoch") is not None else "")
    ]
    metrics = result.get("metrics") or {}
    if set(metrics) - NOT_METRICS:
        shown = {k: v for k, v in metrics.items() if k not in NOT_METRICS}
        lines.append(", ".join(f"{k} {value(float(v))}" for k, v in sorted(shown.items())))
    if result.get("state") == "running":
        lines.append(
            f"Speed {_number(result, 'steps_per_s', '.1f')} steps/s, ETA {duration(result.get('eta_s'))}"
        )
    params = result.get("params") or {}
    if params:
        lines.append("Params: " + ", ".join(f"{k}={value(v)}" for k, v in sorted(params.items())))
    if result.get("last_checkpoint_step") is not None:
        lines.append(f"Last checkpoint: step {result['last_checkpoint_step']}")
    if result.get("error"):
        lines.append("Error: " + _error(result["error"]))
    return "\n".join(lines)


def params(described: Iterable[Body], with_values: bool = True) -> str:
    """describe's params (spec dicts with 'value') -> one line each, with range and aliases;
    without values for help text, which comes from a cached describe."""
    lines = ["Parameters (set with: <name> <value>, e.g. lr 0.01):"]
    for spec in described:
        aliases = "/".join(spec.get("aliases") or ())
        current = f" = {value(spec.get('value', spec.get('default')))}" if with_values else ""
        lines.append(
            f"{spec['name']}"
            + (f" ({aliases})" if aliases else "")
            + current
            + f"  [{spec.get('type', '?')}{allowed_range(spec)}, applies {spec.get('applies', '?')}]"
            + (f" {spec['help']}" if spec.get("help") and not with_values else "")
        )
    return "\n".join(lines)


def allowed_range(spec: Body) -> str:
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is None and high is None:
        return ""
    return f" {value(low) if low is not None else '-∞'}..{value(high) if high is not None else '∞'}"


def _applies_from(step: Any) -> str:
    # None: the trainer is still loading and does not know yet at which step it will resume.
    return "once the trainer has loaded" if step is None else f"from step {step}"


def params_set(result: Body) -> str:
    """A set_params result -> 'lr = 0.01 (from step 120)'."""
    at = result.get("applies_at_step") or {}
    parts = [f"{k} = {value(v)} ({_applies_from(at.get(k, '?'))})" for k, v in result["params"].items()]
    return "OK: " + "; ".join(parts)


def action(op: str, result: Body) -> str:
    """A start/stop/pause/resume result -> reply text."""
    step = result.get("step", result.get("at_step", "?"))
    if result.get("already"):
        return f"Already {result.get('state', '?')} (step {step}); nothing to {op}."
    verbs = {"start": "Starting", "stop": "Stopping", "pause": "Pausing", "resume": "Resuming"}
    return f"{verbs.get(op, op)} at step {step} (state now {result.get('state', '?')})."


def trainer_down(reason: str, silent_s: float, last_step: int | None, checkpoint_step: int | None) -> str:
    """TrainerDown -> what the owner can rely on: which step it had reached, what is saved."""
    if reason == "unreachable":
        return (
            f"⚠️ No trainer reachable for {duration(silent_s)}: is it running? "
            "I will tell you when it appears."
        )
    where = f" at step {last_step}" if last_step else ""
    saved = f"step {checkpoint_step}" if checkpoint_step is not None else "none"
    return (
        f"⚠️ Trainer down{where}: its connection closed (the process ended, or stopped answering "
        f"entirely). Last checkpoint: {saved}. I will tell you when it is back."
    )


def trainer_back(result: Body, restarted: bool, old_step: int | None = None) -> str:
    """The trainer answers again. After a restart (`restarted`), `result` is its first status or
    state event once loaded, and `old_step` the last step the old process was seen at."""
    state = result.get("state", "?")
    if not restarted:
        return f"✅ Trainer back (same process), {state} at step {result.get('step', '?')}."
    if state == "loading":  # still importing or restoring: the step is not known yet
        return "✅ Trainer back (new process), still loading; I will say where it resumes."
    step = result.get("step")
    head = "✅ Trainer back (new process)"
    if state == "failed":
        error = result.get("error")
        return f"{head}, but it failed: " + (_error(error) if error else "the reason follows.")
    verb = "resumed" if state == "running" else f"{state}"
    text = f"{head}, {verb} at step {step}"
    if isinstance(step, int) and isinstance(old_step, int):
        text += lost_steps(step, old_step, running=state == "running")
    return text + "."


def lost_steps(resumed: int, old_step: int, *, running: bool) -> str:
    """'; the 23 steps since the last checkpoint (241–263) are being redone' and its kin."""
    lost = old_step - resumed
    if lost <= 0:
        return "; no steps lost"
    span = f"{resumed + 1}–{old_step}" if lost > 1 else f"{old_step}"
    fate = ("is" if lost == 1 else "are") + " being redone" if running else "will be redone when it runs"
    steps = f"{lost} step{'s' if lost != 1 else ''}"
    if resumed == 0:
        return f"; no checkpoint was saved, so all {steps} ({span}) {fate}"
    return f"; the {steps} since the last checkpoint ({span}) {fate}"


def not_responding(silent_s: float) -> str:
    return (
        f"⏳ Trainer not responding for {duration(silent_s)}, but its connection is open: probably busy "
        "(loading, tracing, checkpointing). I will tell you when it answers again or goes down."
    )


def responding(silent_s: float) -> str:
    return f"✅ Trainer responding again (it was silent for {duration(silent_s)})."


def stalled(loop_age_s: float) -> str:
    return f"🐢 Trainer stalled: the training loop has not moved for {duration(loop_age_s)}."


def unstalled() -> str:
    return "✅ Trainer progressing again."


def unknown_command(word: str, suggestions: Sequence[str]) -> str:
    return f"Unknown command {quote(word)}. Did you mean: {', '.join(suggestions)}? (help lists all)"


def connected(result: Body) -> str:
    """The first message of a sidecar with no saved cursor."""
    return "🔗 Sidecar connected to the trainer.\n" + status(result)


def catch_up(result: Body, missed: Sequence[Body] | None, partial: bool = False) -> str:
    """One summary for a restarted sidecar: what it missed (`missed`: the event bodies since
    its cursor; None when unknown, e.g. the trainer restarted too), then the current status."""
    head = "🔄 Sidecar back."
    if missed is None:
        head += " The trainer restarted meanwhile; earlier events are not known."
    elif missed:
        head += " While I was away: " + events_summary(missed) + "."
    else:
        head += " No events while I was away."
    if partial:
        head += " (Older events are no longer in the trainer's history.)"
    return head + "\n" + status(result)


def events_summary(bodies: Sequence[Body]) -> str:
    """Event bodies -> 'started, 3× checkpoint_saved (last step 3000), finished (test acc 0.98)'."""
    counts = Counter(str(b.get("event", "?")) for b in bodies)
    last: dict[str, Body] = {str(b.get("event", "?")): b for b in bodies}
    parts = []
    for name in counts:
        body = last[name]
        part = f"{counts[name]}× {name}" if counts[name] > 1 else name
        if name in ("finished", "stopped"):
            part += f" (test accuracy {_number(body, 'test_accuracy', '.4f')})"
        elif name == "failed":
            part += f" ({_error(body.get('error'))})"
        else:
            part += f" (last at step {body.get('step', '?')})"
        parts.append(part)
    return ", ".join(parts)


def history(bodies: Sequence[Body]) -> str:
    if not bodies:
        return "No events in the trainer's history."
    return "Recent events:\n" + "\n".join(
        f"step {b.get('step', '?')}: {b.get('event', '?')}"
        + (
            f" {b.get('name')} {value(b.get('old'))}→{value(b.get('new'))}"
            if b.get("event") == "param_changed"
            else ""
        )
        for b in bodies
    )
