"""The results as markdown (BENCHMARKS.md, bench/results/only-*.md) and JSON, from one table formatter.

Each ``Section`` is a heading, one sentence, tables and closing lines, all pure functions of the
results dict, so ``python -m bench --render FILE.json`` redraws the markdown. Every figure is
``median (min..max)`` over the repetitions; a target is checked against the median, or the worst run
where it says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import overhead, throughput
from bench.harness import summary
from bench.tf_roles import CONTROL_PLANE_THREADS, ZMQ_IO

R = dict[str, Any]
Cell = Callable[[R, R], str | None]  # (the section's results, every section's) -> text; None: no row
Rows = Callable[[R, R], list[list[str]]]
GPU_COMMAND = "python -m bench throughput overhead --repeats 3"
N0, F2, F3 = "{:,.0f}", "{:.2f}", "{:.3f}"
FIELD = re.compile(r"\{([\w.]+)(:[^}]*)?\}")


def fig(value: Any, fmt: str = "{:,.1f}") -> str:
    """A ``summary`` as ``median (min..max)`` (the median alone for one run); a list comma-separated."""
    if not value and not isinstance(value, int | float):  # None, {}, []
        return "n/a"
    if isinstance(value, list):
        return ", ".join(fmt.format(v) for v in value)
    if not isinstance(value, dict):
        return fmt.format(value)
    median, low, high = (fmt.format(value[k]) for k in ("median", "min", "max"))
    return median if value.get("runs", 1) == 1 else f"{median} ({low}..{high})"


def fill(template: str, results: R) -> str:
    """``template`` with each ``{dotted.path:spec}`` replaced by ``fig`` of that entry of ``results``."""

    def figure(match: re.Match[str]) -> str:
        value: Any = results
        for key in match[1].split("."):
            value = value[key]
        return fig(value, "{" + (match[2] or "") + "}")

    return FIELD.sub(figure, template)


def verdict(value: float | None, ok: bool, text: str) -> str:
    return "n/a" if value is None else f"{'meets' if ok else 'MISSES'} ({text})"


def at_least(ratio: R | None, bound: str, key: str = "median", label: str = "") -> str:
    """The target ``ratio[key] >= bound`` checked (``key``: "median", or "min" for the worst run)."""
    value = (ratio or {}).get(key)
    return verdict(value, value is not None and value >= float(bound), f"{label}>= {bound}")


def table(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def rows(*templates: tuple[str | Cell, ...]) -> Rows:
    """Table rows of ``fill`` templates or computed cells; a row with a cell computed as None is left out."""
    cell = lambda value, s, every: fill(value, s) if isinstance(value, str) else value(s, every)  # noqa: E731
    return lambda s, every: [
        row for cells in templates if None not in (row := [cell(value, s, every) for value in cells])
    ]


def figures(*templates: tuple[str, str | Cell]) -> tuple[tuple[str, ...], Rows]:
    return ("figure", "value"), rows(*templates)


def median_of(values: list[R], key: str) -> float:
    return float(sorted(v[key] for v in values)[len(values) // 2])


@dataclass(frozen=True)
class Section:
    key: str  # its entry in results["sections"], and `python -m bench KEY`
    title: str
    intro: str  # a ``fill`` template: what was measured, and the target
    tables: tuple[tuple[tuple[str, ...], Rows], ...] = ()
    notes: Callable[[R, R], list[str]] = lambda s, every: []


def render(section: Section, every: R) -> list[str]:
    lines, value = [f"## {section.title}", ""], every.get(section.key)
    if value is None or "error" in value:
        return [*lines, f"Failed: `{value['error']}`" if value else "Not run in this invocation.", ""]
    lines += [f"{fill(section.intro, value)} (`python -m bench {section.key}`).", ""]
    for header, rows in section.tables:
        lines += table(header, rows(value, every))
    return lines + section.notes(value, every)


def throughput_rows(t: R, _: R) -> list[list[str]]:
    rows = []
    for variant, rate in t["samples_per_s"].items():
        ratio, target = t["ratios"]["vs_fit"].get(variant), ""
        if variant == "trainer" and ratio:
            target = at_least(ratio, "0.97", "min", "worst ") + "; " + at_least(ratio, "1.0", label="median ")
        rows.append(
            [
                throughput.VARIANTS.get(variant, variant),
                fig(rate, N0),
                fig(ratio, F3) if ratio else "1",
                target,
            ]
        )
    return rows


def throughput_notes(t: R, _: R) -> list[str]:
    fit = (t["runs"].get("fit") or [{}])[0]
    jit = f"`fit` resolved `jit_compile={fit['jit_compile']}`. " if "jit_compile" in fit else ""
    return [
        f"{jit}The trainer uses `FusedAdam`: Keras' Adam in one `ResourceApplyAdam` kernel, as the seed's.",
        "",
    ]


def cost(ratio: R | None) -> str:
    if not ratio:
        return "n/a"
    slower = (1 - ratio["median"]) * 100
    text = f"{slower:.1f}% slower" if slower >= 0 else f"{-slower:.1f}% faster"
    if ratio.get("runs", 1) > 1 and ratio["min"] < 1.0 < ratio["max"]:
        text += "; the runs fall on both sides of 1"  # noise this size hides a 1% cost either way
    return verdict(slower, slower < 1.0, f"median {text}")


def cost_rows(t: R, _: R) -> list[list[str]]:
    ratios = t["ratios"]
    return [
        [text, fig(ratios.get(key), F3), cost(ratios.get(key))]
        for key, (*_, text) in throughput.RATIOS.items()
    ]


def cpu_accounting(t: R) -> list[str]:
    """The control plane's cost counted in CPU time, which run-to-run noise does not blur."""
    runs = [run for run in t["runs"].get("inproc_control") or [] if "thread_cpu_s" in run]
    bare = [run for run in t["runs"].get("inproc_bare") or [] if "step_dispatch_us" in run]
    if not runs or not bare:
        return []
    bare_s, steps = median_of([run["step_dispatch_us"] for run in bare], "mean") / 1e6, t["timed_steps"]
    threads, extra = [], []  # CPU seconds of the control-plane threads / of the control callbacks
    for run in runs:
        threads.append(sum(run["thread_cpu_s"].get(kind, 0.0) for kind in (*CONTROL_PLANE_THREADS, ZMQ_IO)))
        extra.append(max(0.0, run["step_dispatch_us"]["mean"] / 1e6 - bare_s) * steps)
    totals = [sum(run["thread_cpu_s"].values()) for run in runs]
    share = summary([(a + b) / total * 100 for a, b, total in zip(threads, extra, totals, strict=True)])
    ms = lambda values: fig(summary([v * 1e3 for v in values]))  # noqa: E731
    feed = runs[0].get("feed") or {}
    return [
        f"- **Counted in CPU time** (inproc_control, {len(runs)} run(s), {steps} steps): the publisher, "
        f"control-server and ZeroMQ I/O threads {ms(threads)} ms, the control callbacks' extra dispatch "
        f"{ms(extra)} ms, of the process's {fig(summary(totals))} s: **{fig(share, F2)}%**, "
        + verdict(share["max"], share["max"] < 1.0, "< 1% in the worst run")
        + f". The subscribers got {feed.get('data_messages_per_reader')} messages, {feed.get('gaps')} gaps, "
        f"using {feed.get('cpu_ms_per_s', float('nan')):.1f} ms CPU/s in their own process (not counted).",
        "- The ratios come from processes whose speed varies by several percent; the CPU count resolves 1%.",
    ]


def control_plane_notes(t: R, _: R) -> list[str]:
    lines = cpu_accounting(t)
    for name in ("inproc_bare", "inproc_control"):
        if runs := [run for run in t["runs"].get(name) or [] if "step_dispatch_us" in run]:
            step, report = [r["step_dispatch_us"] for r in runs], [r["report_dispatch_us"] for r in runs]
            lines.append(
                f"- Callback dispatch per step, {name} ({', '.join(runs[0]['callbacks'])}): p50 "
                f"{median_of(step, 'p50'):.0f} us, p99 {median_of(step, 'p99'):.0f} us, mean "
                f"{median_of(step, 'mean'):.0f} us; per report: p50 {median_of(report, 'p50'):.0f} us."
            )
    if t.get("checkpoint_cost"):
        lines.append(
            fill(
                "- One checkpoint save costs the loop {checkpoint_cost.seconds_per_save:.3f} s: "
                "{checkpoint_cost.default_cadence_share:.4f} of a run's time at the default cadence (1/min).",
                t,
            )
        )
    return [*lines, ""]  # fmt: skip


def overhead_rows(o: R, _: R) -> list[list[str]]:
    rows = []
    for variant, rate in o["steps_per_s"].items():
        first = o["runs"][variant][0]
        k = f", K median {first['k_median']}" if "k_median" in first else ""
        rows.append([overhead.VARIANTS[variant], fig(rate, N0), f"jit {first.get('jit_compile')}{k}"])
    return rows


def overhead_ratio_rows(o: R, _: R) -> list[list[str]]:
    return [
        [label, fig(o["ratios"][key], F2), at_least(o["ratios"][key], bound) if bound else ""]
        for key, (_, _, label, bound) in overhead.RATIOS.items()
    ]


P99 = "p99 < 20 ms"


def latency_rows(c: R, _: R) -> list[list[str]]:
    return [
        [op, *(fill(t, ms) for t in ("{p50:.2f}", "{p99:.2f}", "{max:,.1f}")), verdict(p99, p99 < 20, P99)]
        for op in ("status", "set_params")
        if (p99 := (ms := c[f"{op}_ms"])["p99"]["median"]) is not None
    ]  # fmt: skip


def latency_notes(c: R, _: R) -> list[str]:
    after = c["stop_steps_after_request"]
    return [
        fill("- `stop`: steps run after the request (final `event.stopped` step minus the last "
             "`metrics.steps` step seen when sent): {stop_steps_after_request:,.0f} - ", c)
        + verdict(after["max"], after["max"] <= 1, "within one step, worst run"),
        fill("- final step minus the reply's `at_step`: {stop_final_minus_at_step:,.0f}; stop reply "
             "{stop_reply_ms:,.1f} ms; request -> end of the last step {stop_to_last_step_end_ms:,.0f} ms.",
             c),
        "",
    ]  # fmt: skip


def while_training(f: R, every: R) -> str | None:
    """The feed under a real training run, from the throughput section's trainer runs."""
    t = every.get("throughput") or {}
    if not (feeds := [run["feed"] for run in t.get("runs", {}).get("trainer", []) if "feed" in run]):
        return None
    p99 = median_of([fd["publish_to_receive_ms"] for fd in feeds], "p99")
    steps_per_s = t["samples_per_s"]["trainer"]["median"] / t["batch_size"]
    return (
        f"~{steps_per_s * 1.1:.1f} msgs/s (metrics.steps once per call, here a step per call, + a report "
        "every 10 steps); "
        f"publish-to-receive p99 {p99:.1f} ms; gaps {sum(fd['gaps'] for fd in feeds)}"
    )


def reached(target: str) -> Cell:
    def cell(q: R, _: R) -> str:
        steps = q["steps_to"][target]
        return (
            f"{steps} steps ({steps * 128:,} samples)" if steps else f"not reached in {q['steps_run']} steps"
        )

    return cell


def seed_budget(q: R, _: R) -> str:
    seed = q["test_accuracy_at_seed_budget"]
    return f"{seed:.4f}" if seed is not None else f"not reached (run capped at {q['steps_run']} steps)"


def flood_ratio(f: R, _: R) -> str:
    return fig(f["ratio_flood_over_none"], F3) + " - " + at_least(f["ratio_flood_over_none"], "0.90")


def bad_requests(s: R, _: R) -> str | None:
    return str(sum(r["bad_requests"] for r in s["runs"])) if "bad_requests" in s["runs"][0] else None


def protocol_rows(p: R, _: R) -> list[list[str]]:
    cell = "{ours.p50:,.0f} / {ours.p99:,.0f}", "{raw.p50:,.0f} / {raw.p99:,.0f}", "{ratio_p50:.2f}"
    return [[f"{tr}, {load}", *(fill(c, f) for c in cell)] for tr, loads in p["control_rtt_us"].items()
            for load, f in loads.items()]  # fmt: skip


PROTOCOL_FEED = ("metrics feed (ipc)", "ours", "raw", "ours/raw"), rows(
    ("delivered msgs/s, flat out", "{feed.throughput.ours.delivered_per_s:,.0f}",
     "{feed.throughput.raw.delivered_per_s:,.0f}", "{feed.throughput.ratio_delivered:.2f}"),
    ("publish-to-receive us, p50 / p99, paced",
     "{feed.latency_us.ours.p50:,.0f} / {feed.latency_us.ours.p99:,.0f}",
     "{feed.latency_us.raw.p50:,.0f} / {feed.latency_us.raw.p99:,.0f}", "{feed.latency_us.ratio_p50:.2f}"),
)  # fmt: skip
SIDECAR_TABLE = figures(
    ("start-up: spawn -> `sidecar ready`", "{startup_to_ready_s:.2f} s"),
    ("resident memory after ready / after the messages / peak",
     "{rss_ready_mib:,.1f} / {rss_after_messages_mib:,.1f} / {peak_rss_mib:,.1f} MiB"),
    ("chat round trip (`status` in -> reply out), {messages_per_run} per run",
     "p50 {round_trip_ms.p50:,.1f} ms, p99 {round_trip_ms.p99:,.1f} ms"),
    ("requests the fake server found wrong", bad_requests),
)  # fmt: skip
FEED_TABLE = figures(
    ("`Publisher.publish()` per call (a queue put)",
     "p50 {publish_call_us.p50:.2f} us, p99 {publish_call_us.p99:.2f} us"),
    ("publisher thread, {publisher_sent_per_s.messages:,} messages flat out, nobody connected",
     "{publisher_sent_per_s.nobody_connected:,.0f} msgs/s"),
    ("the same with a SUB that never reads (past its high-water mark)",
     "{publisher_sent_per_s.idle_subscriber:,.0f} msgs/s (ratio {publisher_sent_per_s.ratio:.2f})"),
    ("while training (trainer process, 2 subscribers polling)", while_training),
)  # fmt: skip
QUALITY_TABLE = figures(
    ("test accuracy after the seed's 200,000 samples ({seed_steps} steps)", seed_budget),
    ("steps to 98% test accuracy", reached("0.98")),
    ("steps to 99% test accuracy", reached("0.99")),
    ("final test accuracy (step {steps_run})", "{final_test_accuracy:.4f}"),
    ("training samples/s in this run (evaluation excluded)", "{train_samples_per_s:,.0f}"),
)
FLOOD_TABLE = figures(
    ("steps/s, no control traffic", "{steps_per_s_none:,.1f}"),
    ("steps/s, {status_clients} `status` + 1 `set_params` clients", "{steps_per_s_flood:,.1f}"),
    ("flood / none, paired", flood_ratio),
    ("requests answered per second during the flood", "{flood_requests_per_s:,.0f}"),
)
SIDECAR_INTRO = (
    "The real `python -m sidecar --backend {backend}` against the fake server `fakes.{backend}` and an idle "
    "`python -m trainer`, each its own process; the round trip includes the bench's calls to the fake"
)
# The sections of a full run, in order (the throughput results feed three of them), then the ones
# `python -m bench NAME` runs on request, rendered only when present.
SECTIONS = (
    Section(
        "throughput",
        "Training throughput: the seed CNN on MNIST",
        "Samples/s at batch {batch_size}, {timed_steps} steps timed after {warmup_steps}; {repeats} "
        "repetition(s) in the order {order}, each variant its own process; ratio: variant / fit within a "
        "repetition; target for the trainer: >= 1.0, never below 0.97",
        ((("variant", "samples/s", "ratio vs fit", "target"), throughput_rows),),
        throughput_notes,
    ),
    Section(
        "throughput",
        "Cost of the control plane",
        "Paired ratios from the run above (without a control plane: `trainer.Trainer` in-process less "
        "`ControlBridge` and `PublishMetrics`); target: under 1% slower",
        ((("comparison", "throughput ratio", "target (< 1% slower)"), cost_rows),),
        control_plane_notes,
    ),
    Section(
        "overhead",
        "Where the framework is the cost: a tiny MLP",
        "Steps/s of a {model}, {timed_steps} steps timed after {warmup_steps}; {repeats} repetition(s) in "
        "the order {order}, each variant its own process",
        (
            (("variant", "steps/s", "ran with"), overhead_rows),
            (("comparison", "paired ratio", "target (median)"), overhead_ratio_rows),
        ),
    ),
    Section(
        "control",
        "Control latency while training at full load",
        "A client process against `python -m trainer --autostart` training flat out: "
        "{requests_per_op_per_run} `status` and `set_params` each per run, alternating, one every {pace_s} "
        "s, then `stop`; {repeats} run(s); target: p99 < 20 ms, stop within one step",
        ((("request", "p50 ms", "p99 ms", "max ms", "target"), latency_rows),),
        latency_notes,
    ),
    Section(
        "feed",
        "Metrics feed and control round trip",
        "What `publish()` costs the loop, what subscribers receive, and `status` round trips in us (p50 / "
        "p99; a loaded server's main thread runs a Python loop, holding the GIL, or a numpy matmul), "
        "against raw pyzmq + msgpack; {repeats} repetition(s)",
        (FEED_TABLE, PROTOCOL_FEED, (("control", "ours", "raw", "ours/raw p50"), protocol_rows)),
    ),
    Section("sidecar", "Sidecar over web WeChat", SIDECAR_INTRO, (SIDECAR_TABLE,)),
    Section(
        "quality",
        "Quality: the built-in example",
        "One run of the built-in `MnistCnn` (Adam 0.001, batch 128) capped at {max_steps} steps, the 10,000 "
        "test images evaluated every {eval_every} steps; runs vary by a few tenths of a percent",
        (QUALITY_TABLE,),
        lambda q, _: [
            "Curve (step: accuracy): " + ", ".join(f"{s}: {a:.4f}" for s, a in q["curve"].items()),
            "",
        ],
    ),
)
ON_REQUEST = (
    Section(
        "flood",
        "Training under a control flood",
        "One `python -m trainer --autostart` throughout; {window_s:.0f} s windows, ABBA per repetition, "
        "without and with clients sending requests back to back; target: flood / none >= 0.90",
        (FLOOD_TABLE,),
    ),
    Section("ilink", "Sidecar over iLink", SIDECAR_INTRO, (SIDECAR_TABLE,)),
    Section(
        "distribute",
        "Several devices and workers (tf.distribute)",
        "Samples/s of `python -m trainer` on 1 device, 2 mirrored devices and 2 workers, interleaved; on 2 "
        "shared CPU cores no speed-up is expected",
        ((("variant", "samples/s"), lambda s, _: [[v, fig(r)] for v, r in s["samples_per_s"].items()]),),
        lambda s, _: [
            f"The two workers ended at the same step with the same weights: {s['workers_in_step']}.",
            "",
        ],
    ),
)


def machine(results: R) -> list[str]:
    m, load = results["machine"], lambda values: " ".join(f"{v:.2f}" for v in values) if values else "n/a"
    rows = [
        ["CPU", f"{m['cpu_model']}, {m['cpu_cores']} cores ({m['cpu_cores_usable']} usable)"],
        ["Memory", f"{m['memory_gib']} GiB"],
        ["GPU", ", ".join(m["gpus"]) or "none"],
        ["OS", m["os"]],
        ["Load average (1, 5, 15 min) at start / end",
         f"{load(m['load_average_at_start'])} / {load(results.get('load_average_at_end'))}"],
        *([" / ".join(keys), " / ".join(str(m[k.lower()]) for k in keys)]
          for keys in (("Python", "TensorFlow", "Keras", "NumPy"), ("pyzmq", "libzmq", "msgpack", "itchat"))),
    ]  # fmt: skip
    return ["## Machine", "", *table(("", ""), rows)]


def gpu(results: R) -> list[str]:
    if gpus := results["machine"]["gpus"]:
        return ["## GPU", "", f"GPU present: {', '.join(gpus)}; the sections above ran with it visible.", ""]
    return [
        "## GPU",
        "",
        f"No GPU was available for this run. On a GPU machine, `{GPU_COMMAND}` writes "
        "`bench/results/only-throughput-overhead.md`: there a step no longer hides the framework's overhead, "
        "and `fit` turns XLA on by itself (its row says which it used).",
        "",
    ]


def section_markdown(every: R) -> list[str]:
    """The sections that ran (or failed), for a partial run's console output."""
    return [
        line
        for section in (*SECTIONS, *ON_REQUEST)
        if section.key in every
        for line in render(section, every)
    ]


def markdown(results: R) -> str:
    every, quick = results["sections"], results["mode"] == "quick"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results['command']}` on {results['started']} ({results['mode']} mode, "
        f"{results['wall_s'] / 60:.1f} min). Figures: median (min..max) over the repetitions of this one "
        "run. Machine-readable: `bench/results/latest.json` (not committed).",
        "",
        *["> **Quick mode: a smoke run (one repetition, few steps). Not figures to publish.**", ""] * quick,
        *machine(results),
        *(line for section in SECTIONS for line in render(section, every)),
        *(line for section in ON_REQUEST if section.key in every for line in render(section, every)),
        *gpu(results),
        "## Reproduce",
        "",
        "`python -m bench`: the full run (about 17 min at 3 repetitions on 2 CPU cores; on a quiet machine). "
        "`python -m bench NAME ...` runs only those sections (also `flood`, `ilink`, `distribute`) into "
        "`bench/results/only-NAME.md`; `--quick`, `--repeats N`, `--data PATH`, a flag per size (`--help`).",
        "",
    ]
    return "\n".join(lines)


def write(results: R, markdown_path: Path, json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown_path.write_text(markdown(results))


def read(path: Path) -> Any:
    return json.loads(path.read_text())
