"""The results as markdown (BENCHMARKS.md, bench/results/only-*.md) and JSON, from one table formatter.

Each ``Section`` declares its heading, a paragraph, its tables (columns and a function giving the
rows) and closing lines, all pure functions of the results dict; ``render`` draws any of them, so
``python -m bench --render FILE.json`` regenerates the markdown. Every figure is ``median (min..max)``
over the repetitions; a target is checked against the median (or the worst run, where it says so).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import summary

R = dict[str, Any]
Rows = Callable[[R, R], list[list[str]]]  # (the section's results, every section's) -> rows
GPU_COMMAND = "python -m bench throughput overhead --repeats 3"
N0, F2 = "{:,.0f}", "{:.2f}"


def fig(value: R | None, fmt: str = "{:,.1f}") -> str:
    if not value:
        return "n/a"
    median, low, high = (fmt.format(value[k]) for k in ("median", "min", "max"))
    return median if value.get("runs", 1) == 1 else f"{median} ({low}..{high})"


def verdict(value: float | None, ok: bool, text: str) -> str:
    return "n/a" if value is None else f"{'meets' if ok else 'MISSES'} ({text})"


def table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def median_of(values: list[R], key: str) -> float:
    return float(sorted(v[key] for v in values)[len(values) // 2])


def pp(value: R, fmt: str = N0, unit: str = "") -> str:
    return f"p50 {fig(value['p50'], fmt)}{unit}, p99 {fig(value['p99'], fmt)}{unit}"


@dataclass(frozen=True)
class Section:
    key: str  # its entry in results["sections"]
    title: str
    intro: Callable[[R], str] | None = None
    tables: tuple[tuple[tuple[str, ...], Rows], ...] = ()
    notes: Callable[[R, R], list[str]] = lambda s, every: []


def render(section: Section, every: R) -> list[str]:
    lines, value = [f"## {section.title}", ""], every.get(section.key)
    if value is None or "error" in value:
        return [*lines, f"Failed: `{value['error']}`" if value else "Not run in this invocation.", ""]
    lines += [section.intro(value), ""] if section.intro else []
    for header, rows in section.tables:
        lines += table(header, rows(value, every))
    return lines + section.notes(value, every)


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


def throughput_rows(t: R, _: R) -> list[list[str]]:
    rows = []
    for variant, rate in t["samples_per_s"].items():
        ratio = t["ratios"]["vs_fit"].get(variant)
        target = ""
        if variant == "trainer" and ratio:
            target = verdict(ratio["min"], ratio["min"] >= 0.97, "worst >= 0.97") + "; "
            target += verdict(ratio["median"], ratio["median"] >= 1.0, "median >= 1.0")
        ratio_text = fig(ratio, "{:.3f}") if ratio else "1"
        rows.append([VARIANT_TEXT.get(variant, variant), fig(rate, N0), ratio_text, target])
    return rows


def throughput_notes(t: R, _: R) -> list[str]:
    fits = t["runs"].get("fit") or [{}]
    jit = (
        [
            f"`fit` resolved `jit_compile={fits[0]['jit_compile']}` (Keras turns XLA on by itself only when "
            "a GPU is visible).",
            "",
        ]
        if "jit_compile" in fits[0]
        else []
    )
    return [
        *jit,
        "The trainer trains with `trainer.optimizers.FusedAdam`: Keras' Adam math and slots in TensorFlow's "
        "one-pass `ResourceApplyAdam` kernel (the seed's TF1 `AdamOptimizer` used it; Keras' Adam makes "
        "about ten passes per variable). The `fit` + `FusedAdam` row shows that kernel's share.",
        "",
    ]


COST_ROWS = {
    "inproc_control_vs_inproc_bare": "in-process Trainer: with Controller, ControlServer, Publisher, "
    "2 subscribers / without",
    "trainer_no_subscriber_vs_inproc_bare": "trainer process, nobody connected / in-process, no control "
    "plane",
    "trainer_vs_inproc_bare": "trainer process + 2 polling subscribers / in-process, no control plane",
    "trainer_vs_trainer_no_subscriber": "trainer process + 2 polling subscribers / nobody connected",
    "idle_sub_vs_trainer_no_subscriber": "trainer process + SUB that never reads / nobody connected",
    "ckpt_default_vs_off": "trainer process, checkpoints every 60 s or 1000 steps / none",
}
CONTROL_PLANE_THREADS = ("metrics-publisher", "control-server", "zmq-io")


def cost(ratio: R | None) -> str:
    if not ratio:
        return "n/a"
    slower = (1 - ratio["median"]) * 100
    text = f"{slower:.1f}% slower" if slower >= 0 else f"{-slower:.1f}% faster"
    if ratio.get("runs", 1) > 1 and ratio["min"] < 1.0 < ratio["max"]:
        text += "; the runs fall on both sides of 1"  # noise this size hides a 1% cost either way
    return verdict(slower, slower < 1.0, f"median {text}")


def cost_rows(t: R, _: R) -> list[list[str]]:
    return [
        [text, fig(t["ratios"].get(key), "{:.3f}"), cost(t["ratios"].get(key))]
        for key, text in COST_ROWS.items()
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
        threads.append(sum(run["thread_cpu_s"].get(kind, 0.0) for kind in CONTROL_PLANE_THREADS))
        extra.append(max(0.0, run["step_dispatch_us"]["mean"] / 1e6 - bare_s) * steps)
    totals = [sum(run["thread_cpu_s"].values()) for run in runs]
    share = summary([(a + b) / total * 100 for a, b, total in zip(threads, extra, totals, strict=True)])
    ms = lambda values: fig(summary([v * 1e3 for v in values]))  # noqa: E731
    feed = runs[0].get("feed") or {}
    return [
        f"- **Counted in CPU time** (inproc_control, {len(runs)} run(s)): over each {steps}-step window the "
        f"publisher, control-server and ZeroMQ I/O threads used {ms(threads)} ms of CPU, and the control "
        "callbacks' extra dispatch (ControlBridge, PublishMetrics: mean per-step dispatch with minus "
        f"without, times {steps}) {ms(extra)} ms, out of the process's {fig(summary(totals))} s of CPU: "
        f"**{fig(share, F2)}%**, "
        + verdict(share["max"], share["max"] < 1.0, "< 1% in the worst run")
        + f". In the first run the two subscribers received {feed.get('data_messages_per_reader')} messages "
        f"with {feed.get('gaps')} gaps; their own process used {feed.get('cpu_ms_per_s', float('nan')):.1f} "
        "ms of CPU per second (not counted above).",
        "- The throughput ratios above come from separate processes whose speed varies by several percent "
        "from run to run (see each min..max), so they cannot resolve a 1% difference; the CPU count can.",
    ]


def control_plane_notes(t: R, _: R) -> list[str]:
    lines = cpu_accounting(t)
    for name in ("inproc_bare", "inproc_control"):
        runs = [run for run in t["runs"].get(name) or [] if "step_dispatch_us" in run]
        if runs:
            step = [run["step_dispatch_us"] for run in runs]
            lines.append(
                f"- Per-step callback dispatch, {name} ({', '.join(runs[0]['callbacks'])}): p50 "
                f"{median_of(step, 'p50'):.0f} us, p99 {median_of(step, 'p99'):.0f} us, mean "
                f"{median_of(step, 'mean'):.0f} us per step; every report (display_step): p50 "
                f"{median_of([r['report_dispatch_us'] for r in runs], 'p50'):.0f} us."
            )
    if ckpt := t.get("checkpoint_cost"):
        lines.append(
            f"- One checkpoint save costs the loop {fig(ckpt['seconds_per_save'], '{:.3f}')} s; at the "
            f"default cadence that is {fig(ckpt['default_cadence_fraction_per_step'], '{:.4f}')} of each "
            "step."
        )
    return [*lines, ""]


OVERHEAD_TEXT = {
    "fit_spe1": "`keras.Model.fit`, `steps_per_execution=1`",
    "fit_spe32": "`keras.Model.fit`, `steps_per_execution=32`",
    "trainer": "`trainer.Trainer`, steps per call auto, control plane live + 2 subscribers",
    "trainer_spe1": "the same at 1 step per call",
}
OVERHEAD_COMPARISONS = {  # ratio: (label, target for the median or None)
    "trainer_vs_fit_spe32": ("trainer / fit(spe=32)", 1.0),
    "trainer_vs_fit_spe1": ("trainer / fit(spe=1)", 2.0),
    "trainer_spe1_vs_fit_spe1": ("trainer at 1 step per call / fit(spe=1)", None),
    "fit_spe32_vs_fit_spe1": ("fit(spe=32) / fit(spe=1)", None),
}


def overhead_rows(o: R, _: R) -> list[list[str]]:
    rows = []
    for variant, rate in o["steps_per_s"].items():
        first = o["runs"][variant][0]
        how = f"jit {first.get('jit_compile')}" + (
            f", K median {first['k_median']}" if "k_median" in first else ""
        )
        rows.append([OVERHEAD_TEXT[variant], fig(rate, N0), how])
    return rows


def overhead_ratio_rows(o: R, _: R) -> list[list[str]]:
    rows = []
    for key, (label, bound) in OVERHEAD_COMPARISONS.items():
        median = (o["ratios"][key] or {}).get("median")
        target = (
            "" if bound is None else verdict(median, median is not None and median >= bound, f">= {bound}")
        )
        rows.append([label, fig(o["ratios"][key], F2), target])
    return rows


def latency_rows(c: R, _: R) -> list[list[str]]:
    rows = []
    for op in ("status", "set_params"):
        ms, p99 = c[f"{op}_ms"], c[f"{op}_ms"]["p99"]["median"]
        rows.append(
            [
                op,
                fig(ms["p50"], F2),
                fig(ms["p99"], F2),
                fig(ms["max"]),
                verdict(p99, p99 < 20, "p99 < 20 ms"),
            ]
        )
    return rows


def latency_notes(c: R, _: R) -> list[str]:
    after = c["stop_steps_after_request"]
    return [
        "- `stop`: steps executed after the request (final `event.stopped` step minus the last "
        f"`metrics.step` seen when it was sent): {fig(after, N0)} - "
        + verdict(after["max"], after["max"] <= 1, "within one step, worst run"),
        f"- final step minus the reply's `at_step`: {fig(c['stop_final_minus_at_step'], N0)}; stop reply "
        f"{fig(c['stop_reply_ms'])} ms; request sent -> end of the last step executed: "
        f"{fig(c['stop_to_last_step_end_ms'], N0)} ms (trainer's clock).",
        "",
    ]


def feed_rows(f: R, every: R) -> list[list[str]]:
    pb, sent = f["protocol_bench"], f["publisher_sent_per_s"]
    ours, raw = pb["feed"]["throughput"]["ours"], pb["feed"]["throughput"]["raw"]
    lat = pb["feed"]["latency_us"]
    rows = [
        [
            "`Publisher.publish()` per call (the training loop's side: a queue put)",
            pp(f["publish_call_us"], F2, " us"),
        ],
        [
            f"publisher thread, {sent['messages']:,} messages flat out, nobody connected",
            f"{fig(sent['nobody_connected'], N0)} msgs/s",
        ],
        [
            "the same with a SUB that never reads (past its high-water mark)",
            f"{fig(sent['idle_subscriber'], N0)} msgs/s (ratio {fig(sent['ratio'], F2)})",
        ],
        [
            "`publish()` -> one `Subscriber` in another process, flat out",
            f"{fig(ours['delivered_per_s'], N0)} msgs/s delivered (raw pyzmq + msgpack: "
            f"{fig(raw['delivered_per_s'], N0)})",
        ],
        [
            "publish-to-receive latency, 1000 msgs/s paced",
            f"{pp(lat['ours'], unit=' us')} (raw p99 {fig(lat['raw']['p99'], N0)} us)",
        ],
    ]
    t = every.get("throughput") or {}
    if feeds := [run["feed"] for run in t.get("runs", {}).get("trainer", []) if "feed" in run]:
        p99, steps_per_s = (
            median_of([fd["publish_to_receive_ms"] for fd in feeds], "p99"),
            t["samples_per_s"]["trainer"]["median"] / t["batch_size"],
        )
        rows.append(
            [
                "while training (trainer process, 2 subscribers polling)",
                f"~{steps_per_s * 1.1:.1f} msgs/s (metrics.step every step + a report every 10 steps); "
                f"publish-to-receive p99 {p99:.1f} ms; gaps {sum(fd['gaps'] for fd in feeds)}",
            ]
        )
    return [
        *rows,
        [
            "control `status` round trip, ipc, idle server",
            pp(pb["control_rtt_us"]["ipc"]["idle"]["ours"], unit=" us"),
        ],
    ]


SIDECAR_TEXT = {
    "wechat": (
        "web WeChat",
        "`python -m sidecar --backend wechat --wechat-base-url URL` against the fake web-WeChat server "
        "(`python -m fakes.wechat`)",
    ),
    "ilink": (
        "iLink",
        "`python -m sidecar --backend ilink --ilink-base-url URL` against the fake iLink server "
        "(`fakes.ilink`, a long poll held like the real one)",
    ),
}


def sidecar_intro(s: R) -> str:
    return (
        f"The real {SIDECAR_TEXT[s['backend']][1]} and an idle `python -m trainer`, each its own process. "
        "The round trip includes the bench's own calls to the fake server (push, then a wait for the send)."
    )


def sidecar_rows(s: R, _: R) -> list[list[str]]:
    rss = " / ".join(fig(s[k]) for k in ("rss_ready_mib", "rss_after_messages_mib", "peak_rss_mib"))
    rows = [
        [
            f"start-up: spawn -> `sidecar ready` (logged in to the fake {SIDECAR_TEXT[s['backend']][0]})",
            f"{fig(s['startup_to_ready_s'], F2)} s",
        ],
        ["resident memory after ready / after the messages / peak", f"{rss} MiB"],
        [
            f"chat round trip (`status` in -> reply out), {s['messages_per_run']} per run",
            pp(s["round_trip_ms"], "{:.1f}", " ms"),
        ],
    ]
    if "bad_requests" in s["runs"][0]:
        rows.append(["requests the fake server found wrong", str(sum(r["bad_requests"] for r in s["runs"]))])
    return rows


def quality_rows(q: R, _: R) -> list[list[str]]:
    def reached(steps: int | None) -> str:
        return (
            f"not reached within {q['steps_run']} steps"
            if steps is None
            else f"{steps} steps ({steps * 128:,} samples)"
        )

    seed = q["test_accuracy_at_seed_budget"]
    return [
        [
            f"test accuracy after the seed's 200,000 samples ({q['seed_steps']} steps)",
            f"{seed:.4f}" if seed is not None else f"not reached (run capped at {q['steps_run']} steps)",
        ],
        ["steps to 98% test accuracy", reached(q["steps_to"]["0.98"])],
        ["steps to 99% test accuracy", reached(q["steps_to"]["0.99"])],
        [f"final test accuracy (step {q['steps_run']})", f"{q['final_test_accuracy']:.4f}"],
        ["training samples/s in this run (evaluation excluded)", f"{q['train_samples_per_s']:,.0f}"],
    ]


def flood_rows(f: R, _: R) -> list[list[str]]:
    ratio = f["ratio_flood_over_none"]
    return [
        ["steps/s, no control traffic", fig(f["steps_per_s_none"])],
        [f"steps/s, {f['status_clients']} `status` + 1 `set_params` clients", fig(f["steps_per_s_flood"])],
        [
            "flood / none, paired",
            fig(ratio, "{:.3f}") + " - " + verdict(ratio["median"], ratio["median"] >= 0.9, ">= 0.90"),
        ],
        ["requests answered per second during the flood", fig(f["flood_requests_per_s"], N0)],
    ]


def p50_p99(value: R) -> str:
    return f"{fig(value['p50'], N0)} / {fig(value['p99'], N0)}"


def protocol_rows(p: R, _: R) -> list[list[str]]:
    return [
        [f"{transport}, {load}", p50_p99(f["ours"]), p50_p99(f["raw"]), f"{f['ratio_p50']:.2f}"]
        for transport, loads in p["control_rtt_us"].items()
        for load, f in loads.items()
    ]


def protocol_feed_rows(p: R, _: R) -> list[list[str]]:
    throughput, latency = p["feed"]["throughput"], p["feed"]["latency_us"]
    delivered = [fig(throughput[impl]["delivered_per_s"], N0) for impl in ("ours", "raw")]
    return [
        ["delivered msgs/s, flat out", *delivered, f"{throughput['ratio_delivered']:.2f}"],
        [
            "publish-to-receive us, p50 / p99, paced",
            p50_p99(latency["ours"]),
            p50_p99(latency["raw"]),
            f"{latency['ratio_p50']:.2f}",
        ],
    ]


def profile_rows(s: R, _: R) -> list[list[str]]:
    ms = s["ms_per_step"]
    return [
        ["trainer step (finite check, every output read)", f"{fig(ms['trainer_step'], F2)} ms"],
        ["plain tf.function step (one read)", f"{fig(ms['plain_step'], F2)} ms"],
        ["trainer speed / plain", fig(s["trainer_speed_vs_plain"], "{:.3f}")],
        ["input pipeline alone", f"{s['pipeline_samples_per_s']:,.0f} samples/s"],
        ["traces of the trainer's step after a 30-step fit", str(s["train_step_traces_after_fit"])],
    ]


FIGURE = ("figure", "value")
SIDECAR = dict(intro=sidecar_intro, tables=((FIGURE, sidecar_rows),))
# The sections of a full run, in order (the throughput results feed three of them), then the ones
# `python -m bench NAME` runs on request, rendered only when present.
SECTIONS = (
    Section(
        "throughput",
        "Training throughput: the seed CNN on MNIST",
        lambda t: (
            f"Batch {t['batch_size']}; each run times steps "
            f"{t['warmup_steps']}..{t['warmup_steps'] + t['timed_steps']} ({t['timed_steps']} steps after "
            f"{t['warmup_steps']} warm-up steps, so tracing is excluded); {t['repeats']} repetition(s), "
            f"interleaved in the order {', '.join(t['order'])}; every variant its own process. Ratio: "
            "variant / fit within the same repetition. Target for the trainer: >= 1.0, never below 0.97."
        ),
        ((("variant", "samples/s", "ratio vs fit", "target"), throughput_rows),),
        throughput_notes,
    ),
    Section(
        "throughput",
        "Cost of the control plane",
        lambda t: (
            "`python -m trainer` always binds its sockets, so the run without a control plane drives "
            "`trainer.Trainer` in-process with the callbacks `trainer.session.build_callbacks` makes, less "
            "`ControlBridge` and `PublishMetrics`. Paired ratios of samples/s from the throughput run above. "
            "Target: under 1% slower."
        ),
        ((("comparison", "throughput ratio", "target (< 1% slower)"), cost_rows),),
        control_plane_notes,
    ),
    Section(
        "overhead",
        "Where the framework is the cost: a tiny MLP",
        lambda o: (
            f"{o['model']}; each run times {o['timed_steps']} steps after {o['warmup_steps']}; "
            f"{o['repeats']} repetition(s), interleaved in the order {', '.join(o['order'])}; every variant "
            "its own process. Load average at the end: "
            f"{' '.join(f'{v:.2f}' for v in o['load_average_at_end'])}. Rerun alone: `{o['command']}`."
        ),
        (
            (("variant", "steps/s", "ran with"), overhead_rows),
            (("comparison", "paired ratio", "target (median)"), overhead_ratio_rows),
        ),
    ),
    Section(
        "control",
        "Control latency while training at full load",
        lambda c: (
            "A client process against `python -m trainer --autostart` training the seed CNN flat out: "
            f"{c['requests_per_op_per_run']} `status` and {c['requests_per_op_per_run']} `set_params` "
            f"(display_step 10 <-> 11) per run, alternating, one every {c['pace_s'] * 1e3:.0f} ms; "
            f"{c['repeats']} run(s)."
        ),
        ((("request", "p50 ms", "p99 ms", "max ms", "target"), latency_rows),),
        latency_notes,
    ),
    Section(
        "feed",
        "Metrics feed",
        None,
        ((FIGURE, feed_rows),),
        lambda f, _: [
            "The trainer's own per-step reporting cost under training is the callback dispatch line in the "
            "control-plane section.",
            "",
        ],
    ),
    Section("sidecar", "Sidecar over web WeChat", **SIDECAR),
    Section(
        "quality",
        "Quality: the built-in example",
        lambda q: (
            "One run of `trainer.Trainer` with the built-in `MnistCnn` (Adam 0.001, batch 128), capped at "
            f"{q['max_steps']} steps; the full test set (10,000 images) evaluated every {q['eval_every']} "
            f"steps and at step {q['seed_steps']}. A single run: accuracy varies by a few tenths of a "
            "percent between runs."
        ),
        ((FIGURE, quality_rows),),
        lambda q, _: [
            "Curve (step: test accuracy): " + ", ".join(f"{s}: {a:.4f}" for s, a in q["curve"].items()),
            "",
        ],
    ),
)
ON_REQUEST = (
    Section(
        "flood",
        "Training under a control flood",
        lambda f: (
            f"One `python -m trainer --autostart` training throughout; windows of {f['window_s']:.0f} s, "
            "ABBA per repetition, without and with clients sending requests back to back."
        ),
        ((FIGURE, flood_rows),),
    ),
    Section(
        "protocol",
        "The protocol against raw pyzmq + msgpack",
        lambda p: (
            f"`status` round trips, us, p50 / p99; {p['repeats']} repetition(s). The loaded servers run a "
            "pure-Python loop (holds the GIL) or a numpy matmul loop (releases it) in their main thread."
        ),
        (
            (("control", "ours", "raw", "ours/raw p50"), protocol_rows),
            (("metrics feed (ipc)", "ours", "raw", "ours/raw"), protocol_feed_rows),
        ),
    ),
    Section("ilink", "Sidecar over iLink", **SIDECAR),
    Section("profile", "Where a trainer step's time goes", None, ((FIGURE, profile_rows),)),
    Section(
        "distribute",
        "Several devices and workers (tf.distribute)",
        None,
        (
            (
                ("variant", "throughput"),
                lambda s, _: [[v, f"{fig(r)} samples/s"] for v, r in s["samples_per_s"].items()],
            ),
        ),
        lambda s, _: [
            "The two workers ended at the same step with identical weights: "
            f"{'yes' if s['workers_in_step'] else 'NO'}. On 2 shared CPU cores no speed-up is expected (the "
            "replicas split the same cores).",
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
        [
            "Load average (1, 5, 15 min) at start / end",
            f"{load(m['load_average_at_start'])} / {load(results.get('load_average_at_end'))}",
        ],
        *(
            [" / ".join(keys), " / ".join(str(m[k.lower()]) for k in keys)]
            for keys in (("Python", "TensorFlow", "Keras", "NumPy"), ("pyzmq", "libzmq", "msgpack", "itchat"))
        ),
    ]
    return ["## Machine", "", *table(["", ""], rows)]


def gpu(results: R) -> list[str]:
    if results["machine"]["gpus"]:
        return [
            "## GPU",
            "",
            f"GPU present: {', '.join(results['machine']['gpus'])}; the sections above ran with it visible.",
            "",
        ]
    return [
        "## GPU",
        "",
        "No GPU was available for this run, so there are no GPU figures here. On a GPU machine, run the "
        f"throughput comparisons with `{GPU_COMMAND}` (writes `bench/results/only-throughput-overhead.md` "
        "and `.json`, leaving BENCHMARKS.md alone). There, framework overhead per step is no longer hidden "
        "by a compute-bound step, and `fit` turns XLA on by itself (`jit_compile='auto'` resolves to True "
        "when a GPU is visible): the `fit` row of that table says which it used.",
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
    every = results["sections"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results['command']}` on {results['started']} ({results['mode']} mode, "
        f"{results['wall_s'] / 60:.1f} min). Figures: median (min..max) over the repetitions of this one "
        "run. Machine-readable: `bench/results/latest.json` (not committed).",
        "",
        *(
            ["> **Quick mode: a smoke run (one repetition, few steps). Not figures to publish.**", ""]
            * (results["mode"] == "quick")
        ),
        *machine(results),
        *(line for section in SECTIONS for line in render(section, every)),
        *(line for section in ON_REQUEST if section.key in every for line in render(section, every)),
        *gpu(results),
        "## Reproduce",
        "",
        "`python -m bench` (the full run: about 17 min with the default 3 repetitions, 30 min with "
        "`--repeats 6`, on 2 CPU cores; run it on a quiet machine). `python -m bench NAME ...` runs some "
        "sections (also `flood`, `protocol`, `ilink`, `profile`, `distribute`) and writes "
        "`bench/results/only-NAME.md`; `--quick` for a smoke run, `--repeats N`, `--data PATH`, and a flag "
        "per size (`python -m bench --help`).",
        "",
    ]
    return "\n".join(lines)


def write(results: R, markdown_path: Path, json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown_path.write_text(markdown(results))


def read(path: Path) -> Any:
    return json.loads(path.read_text())
