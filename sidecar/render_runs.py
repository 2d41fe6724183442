"""Chat text for several runs: the `runs` list, a run's name on a message, combined progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.i18n import EN, tr
from sidecar.render import as_map, duration, metric, state_name


@dataclass(frozen=True)
class RunRow:
    """What the list shows of one run: its status reply, or why there is none."""

    name: str
    status: Mapping[str, Any] | None = None
    down: bool = False  # its connection closed, or its process is gone
    last_step: int | None = None
    chosen: bool = False


def named(name: str, text: str) -> str:
    """A message about run `name`, when there are several: '[name] text'."""
    return f"[{name}] {text}"


def row(run: RunRow, lang: str = EN) -> str:
    mark = tr(lang, "run_chosen") if run.chosen else ""
    status = run.status
    if status is None or run.down:
        state = tr(lang, "run_down" if run.down else "run_unreachable")
        step = tr(lang, "run_step", step=run.last_step) if run.last_step is not None else ""
        return tr(lang, "run_row_short", name=run.name, mark=mark, state=state, step=step)
    total = status.get("total_steps")
    metrics = as_map(status.get("metrics"))
    eta = duration(status.get("eta_s"), lang) if status.get("state") == "running" else "-"
    return tr(
        lang, "run_row", name=run.name, mark=mark, state=state_name(status.get("state", "?"), lang),
        step=status.get("step", "?"), total=f"/{total}" if total else "",
        loss=metric(metrics.get("loss")), eta=eta,
    )  # fmt: skip


def runs_list(rows: Sequence[RunRow], lang: str = EN, *, hint: bool = True) -> str:
    lines = [tr(lang, "runs_head", count=len(rows))] + [row(r, lang) for r in rows]
    if hint and len(rows) > 1:
        lines.append(tr(lang, "runs_hint", name=rows[-1].name))
    return "\n".join(lines)


def combined(texts: Mapping[str, str]) -> str:
    """One message from several runs' texts (progress lines, or replies of `stop all`)."""
    return "\n".join(named(name, text) for name, text in texts.items())


def blocks(texts: Mapping[str, str]) -> str:
    """Several multi-line replies (`status all`), one block per run, a blank line between."""
    return "\n\n".join(named(name, text) for name, text in texts.items())
