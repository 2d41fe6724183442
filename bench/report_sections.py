"""The markdown of each benchmark section: pure functions of that section's results dict.

Every figure is ``median (min..max)`` over the repetitions of the run; a target is checked
against the median (or the worst run, where the target says "never") and said in words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.harness import summary

Result = dict[str, Any]
VARIANT_TEXT = {
    "fit": "`keras.Model.fit` (same model and pipeline; `keras.optimizers.Adam`)",
    "fit_fused": "`keras.Model.fit` with the trainer's `FusedAdam` (same Adam math, one-pass kernel)",
    "trainer": "chattrain trainer process, control server + 2 subscribers polling",
    "trainer_no_subscriber": "chattrain trainer process, nobody connected",
    "trainer_idle_sub": "chattrain trainer process + 1 SUB that never reads",
    "inproc_bare": "`trainer.Trainer` in-process, no control plane, no sockets",
    "inproc_control": "`trainer.Trainer` in-process + Controller, ControlServer, Publisher, 2 subscribers",
    "seed_tf1": "the seed's TF1 `feed_dict` loop (`bench/seed_tf1.py`)",
    "trainer_ckpt_off": "chattrain trainer process, nobody connected, periodic checkpoints off",
    "trainer_ckpt_every_25": "chattrain trainer process, nobody connected, a checkpoint every 25 steps",
}
COST_ROWS = (
    (
        "inproc_control_vs_inproc_bare",
        "in-process Trainer: with Controller, ControlServer, Publisher, 2 subscribers / without",
    ),
    (
        "trainer_no_subscriber_vs_inproc_bare",
        "trainer process, nobody connected / in-process, no control plane",
    ),
    ("trainer_vs_inproc_bare", "trainer process + 2 polling subscribers / in-process, no control plane"),
    ("trainer_vs_trainer_no_subscriber", "trainer process + 2 polling subscribers / nobody connected"),
    ("idle_sub_vs_trainer_no_subscriber", "trainer process + SUB that never reads / nobody connected"),
    ("ckpt_default_vs_off", "trainer process, checkpoints every 60 s or 1000 steps / none"),
)


def fig(value: Result | None, fmt: str = "{:,.1f}") -> str:
    if not value:
        return "n/a"
    median, low, high = (fmt.format(value[k]) for k in ("median", "min", "max"))
    return median if value.get("runs", 1) == 1 else f"{median} ({low}..{high})"


def verdict(value: float | None, ok: Callable[[float], bool], text: str) -> str:
    if value is None:
        return "n/a"
    return f"{'meets' if ok(value) else 'MISSES'} ({text})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _median_of(values: list[Result], key: str) -> float:
    ordered = sorted(v[key] for v in values)
    return float(ordered[len(ordered) // 2])


def throughput(t: Result) -> list[str]:
    first, last = t["warmup_steps"], t["warmup_steps"] + t["timed_steps"]
    rows = []
    for variant, rate in t["samples_per_s"].items():
        ratio = t["ratios"]["vs_fit"].get(variant) if variant != "fit" else None
        target = ""
        if variant == "trainer" and ratio:
            worst = verdict(ratio["min"], lambda v: v >= 0.97, "worst >= 0.97")
            target = worst + "; " + verdict(ratio["median"], lambda v: v >= 1.0, "median >= 1.0")
        ratio_text = fig(ratio, "{:.3f}") if ratio else "1"
        rows.append([VARIANT_TEXT.get(variant, variant), fig(rate, "{:,.0f}"), ratio_text, target])
    lines = [
        "## Training throughput: the seed CNN on MNIST",
        "",
        f"Batch {t['batch_size']}; each run times steps {first}..{last} ({t['timed_steps']} steps after "
        f"{first} warm-up steps, so tracing is excluded); {t['repeats']} repetition(s), interleaved in the "
        f"order {', '.join(t['order'])}; every variant its own process. Ratio: variant / fit within the "
        "same repetition. Target for the trainer: >= 1.0, never below 0.97.",
        "",
        *table(["variant", "samples/s", "ratio vs fit", "target"], rows),
    ]
    fits = t["runs"].get("fit") or [{}]
    if "jit_compile" in fits[0]:
        lines += [
            f"`fit` resolved `jit_compile={fits[0]['jit_compile']}` (Keras turns XLA on by itself "
            "only when a GPU is visible).",
            "",
        ]
    lines += [
        "The trainer's built-in task trains with `trainer.optimizers.FusedAdam`: Keras' Adam, same math "
        "and slots, with the update done by TensorFlow's one-pass `ResourceApplyAdam` kernel (the one "
        "the seed's TF1 `AdamOptimizer` used); Keras' own Adam makes about ten passes over each "
        "variable. The `fit` + `FusedAdam` row shows how much of the trainer's lead is that kernel.",
        "",
    ]
    return lines


def _cost(ratio: Result | None) -> str:
    if not ratio:
        return "n/a"
    slower = (1 - ratio["median"]) * 100
    text = f"{slower:.1f}% slower" if slower >= 0 else f"{-slower:.1f}% faster"
    if ratio.get("runs", 1) > 1 and ratio["min"] < 1.0 < ratio["max"]:
        text += "; the runs fall on both sides of 1"  # noise this size hides a 1% cost either way
    return verdict(slower, lambda v: v < 1.0, f"median {text}")


def control_plane(t: Result) -> list[str]:
    ratios = t["ratios"]
    rows = [[text, fig(ratios.get(key), "{:.3f}"), _cost(ratios.get(key))] for key, text in COST_ROWS]
    lines = [
        "## Cost of the control plane",
        "",
        "`python -m trainer` always binds its sockets, so the run without a control plane drives "
        "`trainer.Trainer` in-process with the callbacks `trainer.session.build_callbacks` makes, less "
        "`ControlBridge` and `PublishMetrics`. Paired ratios of samples/s from the throughput run "
        "above. Target: under 1% slower.",
        "",
        *table(["comparison", "throughput ratio", "target (< 1% slower)"], rows),
    ]
    lines += _cpu_accounting(t)
    for name in ("inproc_bare", "inproc_control"):
        runs = t["runs"].get(name) or []
        if runs and "step_dispatch_us" in runs[0]:
            step = [run["step_dispatch_us"] for run in runs]
            report = _median_of([r["report_dispatch_us"] for r in runs], "p50")
            lines.append(
                f"- Per-step callback dispatch, {name} ({', '.join(runs[0]['callbacks'])}): "
                f"p50 {_median_of(step, 'p50'):.0f} us, p99 {_median_of(step, 'p99'):.0f} us, "
                f"mean {_median_of(step, 'mean'):.0f} us per step; every report (display_step): "
                f"p50 {report:.0f} us."
            )
    return lines + [""]


CONTROL_PLANE_THREADS = ("metrics-publisher", "control-server", "zmq-io")


def _cpu_accounting(t: Result) -> list[str]:
    """The control plane's cost counted in CPU time, which run-to-run noise does not blur."""
    runs = [run for run in t["runs"].get("inproc_control") or [] if "thread_cpu_s" in run]
    bare = [run for run in t["runs"].get("inproc_bare") or [] if "step_dispatch_us" in run]
    if not runs or not bare:
        return []
    bare_dispatch_s = _median_of([run["step_dispatch_us"] for run in bare], "mean") / 1e6
    steps = t["timed_steps"]
    threads, callbacks, shares, totals = [], [], [], []
    for run in runs:
        cpu = run["thread_cpu_s"]
        plane = sum(cpu.get(kind, 0.0) for kind in CONTROL_PLANE_THREADS)
        extra = max(0.0, run["step_dispatch_us"]["mean"] / 1e6 - bare_dispatch_s) * steps
        total = sum(cpu.values())
        threads.append(plane * 1e3)
        callbacks.append(extra * 1e3)
        totals.append(total)
        shares.append((plane + extra) / total * 100)
    share = summary(shares)
    feed = runs[0].get("feed") or {}
    return [
        f"- **Counted in CPU time** (inproc_control, {len(runs)} run(s)): over each {steps}-step window "
        f"the publisher, control-server and ZeroMQ I/O threads used {fig(summary(threads))} ms of CPU, "
        "and the control callbacks' extra dispatch (ControlBridge, PublishMetrics: mean per-step "
        f"dispatch with minus without, times {steps}) {fig(summary(callbacks))} ms, out of the "
        f"process's {fig(summary(totals))} s of CPU: **{fig(share, '{:.2f}')}%**, "
        + verdict(share["max"], lambda v: v < 1.0, "< 1% in the worst run")
        + f". In the first run the two subscribers received {feed.get('data_messages_per_reader')} "
        f"messages with {feed.get('gaps')} gaps; their own process used "
        f"{feed.get('cpu_ms_per_s', float('nan')):.1f} ms of CPU per second (not counted above).",
        "- The throughput ratios above come from separate processes whose speed varies by several "
        "percent from run to run on this shared machine (see each min..max), so they cannot resolve a "
        "1% difference; the CPU count can, and bounds what the control plane takes from training.",
    ]


def latency(c: Result) -> list[str]:
    rows = []
    for op in ("status", "set_params"):
        ms = c[f"{op}_ms"]
        ok = verdict(ms["p99"]["median"], lambda v: v < 20, "p99 < 20 ms")
        rows.append([op, fig(ms["p50"], "{:.2f}"), fig(ms["p99"], "{:.2f}"), fig(ms["max"], "{:.1f}"), ok])
    after = c["stop_steps_after_request"]
    count = c["requests_per_op_per_run"]
    return [
        "## Control latency while training at full load",
        "",
        f"A client process against `python -m trainer --autostart` training the seed CNN flat out: "
        f"{count} `status` and {count} `set_params` (display_step 10 <-> 11) per run, alternating, "
        f"one every {c['pace_s'] * 1e3:.0f} ms; {c['repeats']} run(s).",
        "",
        *table(["request", "p50 ms", "p99 ms", "max ms", "target"], rows),
        f"- `stop`: steps executed after the request (final `event.stopped` step minus the last "
        f"`metrics.step` seen when it was sent): {fig(after, '{:.0f}')} - "
        + verdict(after["max"], lambda v: v <= 1, "within one step, worst run"),
        f"- final step minus the reply's `at_step`: {fig(c['stop_final_minus_at_step'], '{:.0f}')}; "
        f"stop reply {fig(c['stop_reply_ms'], '{:.1f}')} ms; request sent -> end of the last step "
        f"executed: {fig(c['stop_to_last_step_end_ms'], '{:.0f}')} ms (trainer's clock).",
        "",
    ]


def _training_feed_row(t: Result | None) -> list[list[str]]:
    feeds = [run["feed"] for run in (t or {}).get("runs", {}).get("trainer", []) if "feed" in run]
    if not t or not feeds:
        return []
    p99 = _median_of([fd["publish_to_receive_ms"] for fd in feeds], "p99")
    steps_per_s = t["samples_per_s"]["trainer"]["median"] / t["batch_size"]
    gaps = sum(fd["gaps"] for fd in feeds)
    return [
        [
            "while training (trainer process, 2 subscribers polling)",
            f"~{steps_per_s * 1.1:.1f} msgs/s (metrics.step every step + a report every 10 steps); "
            f"publish-to-receive p99 {p99:.1f} ms; gaps {gaps}",
        ]
    ]


def feed(f: Result, t: Result | None) -> list[str]:
    pb = f["protocol_bench"]
    ours, raw = pb["feed"]["throughput"]["ours"], pb["feed"]["throughput"]["raw"]
    lat, sent, call = pb["feed"]["latency_us"], f["publisher_sent_per_s"], f["publish_call_us"]
    idle_rtt = pb["control_rtt_us"]["ipc"]["idle"]["ours"]
    n0 = "{:,.0f}"
    rows = [
        [
            "`Publisher.publish()` per call (the training loop's side: a queue put)",
            f"p50 {fig(call['p50'], '{:.2f}')} us, p99 {fig(call['p99'], '{:.2f}')} us",
        ],
        [
            f"publisher thread, {sent['messages']:,} messages flat out, nobody connected",
            f"{fig(sent['nobody_connected'], n0)} msgs/s",
        ],
        [
            "the same with a SUB that never reads (past its high-water mark)",
            f"{fig(sent['idle_subscriber'], n0)} msgs/s (ratio {fig(sent['ratio'], '{:.2f}')})",
        ],
        [
            "`publish()` -> one `Subscriber` in another process, flat out",
            f"{fig(ours['delivered_per_s'], n0)} msgs/s delivered "
            f"(raw pyzmq + msgpack: {fig(raw['delivered_per_s'], n0)})",
        ],
        [
            "publish-to-receive latency, 1000 msgs/s paced",
            f"p50 {fig(lat['ours']['p50'], n0)} us, p99 {fig(lat['ours']['p99'], n0)} us "
            f"(raw p99 {fig(lat['raw']['p99'], n0)} us)",
        ],
        *_training_feed_row(t),
        [
            "control `status` round trip, ipc, idle server",
            f"p50 {fig(idle_rtt['p50'], n0)} us, p99 {fig(idle_rtt['p99'], n0)} us",
        ],
    ]
    return [
        "## Metrics feed",
        "",
        *table(["figure", "value"], rows),
        "The trainer's own per-step reporting cost under training is the callback dispatch line in the "
        "control-plane section.",
        "",
    ]


def quality(q: Result) -> list[str]:
    def reached(steps: int | None) -> str:
        if steps is None:
            return f"not reached within {q['steps_run']} steps"
        return f"{steps} steps ({steps * 128:,} samples)"

    seed = q["test_accuracy_at_seed_budget"]
    seed_text = f"{seed:.4f}" if seed is not None else f"not reached (run capped at {q['steps_run']} steps)"
    rows = [
        [f"test accuracy after the seed's 200,000 samples ({q['seed_steps']} steps)", seed_text],
        ["steps to 98% test accuracy", reached(q["steps_to"]["0.98"])],
        ["steps to 99% test accuracy", reached(q["steps_to"]["0.99"])],
        [f"final test accuracy (step {q['steps_run']})", f"{q['final_test_accuracy']:.4f}"],
        ["training samples/s in this run (evaluation excluded)", f"{q['train_samples_per_s']:,.0f}"],
    ]
    curve = ", ".join(f"{step}: {acc:.4f}" for step, acc in q["curve"].items())
    return [
        "## Quality: the built-in example",
        "",
        f"One run of `trainer.Trainer` with the built-in `MnistCnn` (Adam 0.001, batch 128), capped at "
        f"{q['max_steps']} steps; the full test set (10,000 images) evaluated every {q['eval_every']} "
        f"steps and at step {q['seed_steps']}. A single run: accuracy varies by a few tenths of a "
        "percent between runs.",
        "",
        *table(["figure", "value"], rows),
        f"Curve (step: test accuracy): {curve}",
        "",
    ]
