"""Writing the results: ``bench/results/*.json`` (everything) and the markdown (BENCHMARKS.md).

Pure functions of the results dict, every table through ``report_sections.table`` / ``fig``, so the
markdown can be regenerated from a saved JSON: ``python -m bench --render bench/results/latest.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import distribute
from bench import report_sections as sections
from bench.report_sections import Result, fig, table, verdict

GPU_COMMAND = "python -m bench throughput overhead --repeats 3"
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


def overhead(o: Result) -> list[str]:
    rows = []
    for variant, rate in o["steps_per_s"].items():
        first = o["runs"][variant][0]
        how = f"jit {first.get('jit_compile')}" + (
            f", K median {first['k_median']}" if "k_median" in first else ""
        )
        rows.append([OVERHEAD_TEXT[variant], fig(rate, "{:,.0f}"), how])
    compared = []
    for key, (label, bound) in OVERHEAD_COMPARISONS.items():
        ratio = o["ratios"][key]
        target = "" if bound is None else verdict(ratio["median"], lambda v, b=bound: v >= b, f">= {bound}")
        compared.append([label, fig(ratio, "{:.2f}"), target])
    load = " ".join(f"{value:.2f}" for value in o["load_average_at_end"])
    return [
        "## Where the framework is the cost: a tiny MLP",
        "",
        f"{o['model']}; each run times {o['timed_steps']} steps after {o['warmup_steps']}; "
        f"{o['repeats']} repetition(s), interleaved in the order {', '.join(o['order'])}; every "
        f"variant its own process. Load average at the end: {load}. Rerun alone: `{o['command']}`.",
        "",
        *table(["variant", "steps/s", "ran with"], rows),
        *table(["comparison", "paired ratio", "target (median)"], compared),
    ]


def AT_LEAST_90(value: float) -> bool:  # noqa: N802 (a named target)
    return value >= 0.9


def p50_p99(value: Result, fmt: str = "{:,.0f}") -> str:
    return f"{fig(value['p50'], fmt)} / {fig(value['p99'], fmt)}"


def flood(f: Result) -> list[str]:
    ratio = f["ratio_flood_over_none"]
    rows = [
        ["steps/s, no control traffic", fig(f["steps_per_s_none"])],
        [f"steps/s, {f['status_clients']} `status` + 1 `set_params` clients", fig(f["steps_per_s_flood"])],
        [
            "flood / none, paired",
            fig(ratio, "{:.3f}") + " - " + verdict(ratio["median"], AT_LEAST_90, ">= 0.90"),
        ],
        ["requests answered per second during the flood", fig(f["flood_requests_per_s"], "{:,.0f}")],
    ]
    return [
        "## Training under a control flood",
        "",
        f"One `python -m trainer --autostart` training throughout; windows of {f['window_s']:.0f} s, "
        "ABBA per repetition, without and with clients sending requests back to back.",
        "",
        *table(["figure", "value"], rows),
    ]


def protocol(p: Result) -> list[str]:
    rows = []
    for transport, loads in p["control_rtt_us"].items():
        for load, f in loads.items():
            rows.append(
                [f"{transport}, {load}", p50_p99(f["ours"]), p50_p99(f["raw"]), f"{f['ratio_p50']:.2f}"]
            )
    throughput, latency = p["feed"]["throughput"], p["feed"]["latency_us"]
    delivered = [fig(throughput[impl]["delivered_per_s"], "{:,.0f}") for impl in ("ours", "raw")]
    feed_rows = [
        ["delivered msgs/s, flat out", *delivered, f"{throughput['ratio_delivered']:.2f}"],
        [
            "publish-to-receive us, p50 / p99, paced",
            p50_p99(latency["ours"]),
            p50_p99(latency["raw"]),
            f"{latency['ratio_p50']:.2f}",
        ],
    ]
    return [
        "## The protocol against raw pyzmq + msgpack",
        "",
        f"`status` round trips, us, p50 / p99; {p['repeats']} repetition(s). The loaded servers run a "
        "pure-Python loop (holds the GIL) or a numpy matmul loop (releases it) in their main thread.",
        "",
        *table(["control", "ours", "raw", "ours/raw p50"], rows),
        *table(["metrics feed (ipc)", "ours", "raw", "ours/raw"], feed_rows),
    ]


def profile(s: Result) -> list[str]:
    ms = s["ms_per_step"]
    rows = [
        ["trainer step (finite check, every output read)", f"{fig(ms['trainer_step'], '{:.2f}')} ms"],
        ["plain tf.function step (one read)", f"{fig(ms['plain_step'], '{:.2f}')} ms"],
        ["trainer speed / plain", fig(s["trainer_speed_vs_plain"], "{:.3f}")],
        ["input pipeline alone", f"{s['pipeline_samples_per_s']:,.0f} samples/s"],
        ["traces of the trainer's step after a 30-step fit", str(s["train_step_traces_after_fit"])],
    ]
    return ["## Where a trainer step's time goes", "", *table(["figure", "value"], rows)]


SIDECAR_TEXT = {
    "wechat": ("web WeChat", "`python -m sidecar --backend wechat --wechat-base-url URL` against the fake "
               "web-WeChat server (`python -m fakes.wechat`)"),
    "ilink": ("iLink", "`python -m sidecar --backend ilink --ilink-base-url URL` against the fake iLink "
              "server (`fakes.ilink`, a long poll held like the real one)"),
}  # fmt: skip


def sidecar(s: Result) -> list[str]:
    name, how = SIDECAR_TEXT[s.get("backend", "wechat")]
    rss = " / ".join(fig(s[k]) for k in ("rss_ready_mib", "rss_after_messages_mib", "peak_rss_mib"))
    trip = s["round_trip_ms"]
    rows = [
        [
            f"start-up: spawn -> `sidecar ready` (logged in to the fake {name})",
            f"{fig(s['startup_to_ready_s'], '{:.2f}')} s",
        ],
        ["resident memory after ready / after the messages / peak", f"{rss} MiB"],
        [
            f"chat round trip (`status` in -> reply out), {s['messages_per_run']} per run",
            f"p50 {fig(trip['p50'], '{:.1f}')} ms, p99 {fig(trip['p99'], '{:.1f}')} ms",
        ],
    ]
    if "bad_requests" in s["runs"][0]:
        rows.append(["requests the fake server found wrong", str(sum(r["bad_requests"] for r in s["runs"]))])
    return [
        f"## Sidecar over {name}",
        "",
        f"The real {how} and an idle `python -m trainer`, each its own process. The round trip "
        "includes the bench's own calls to the fake server (push, then a wait for the send).",
        "",
        *table(["figure", "value"], rows),
    ]


VERSIONS = (("Python", "TensorFlow", "Keras", "NumPy"), ("pyzmq", "libzmq", "msgpack", "itchat"))


def machine(results: Result) -> list[str]:
    m = results["machine"]

    def load(values: list[float] | None) -> str:
        return " ".join(f"{v:.2f}" for v in values) if values else "n/a"

    rows = [
        ["CPU", f"{m['cpu_model']}, {m['cpu_cores']} cores ({m['cpu_cores_usable']} usable)"],
        ["Memory", f"{m['memory_gib']} GiB"],
        ["GPU", ", ".join(m["gpus"]) or "none"],
        ["OS", m["os"]],
        [
            "Load average (1, 5, 15 min) at start / end",
            f"{load(m['load_average_at_start'])} / {load(results.get('load_average_at_end'))}",
        ],
        *([" / ".join(keys), " / ".join(str(m[k.lower()]) for k in keys)] for keys in VERSIONS),
    ]
    return ["## Machine", "", *table(["", ""], rows)]


def gpu(results: Result) -> list[str]:
    if results["machine"]["gpus"]:
        names = ", ".join(results["machine"]["gpus"])
        return ["## GPU", "", f"GPU present: {names}; the sections above ran with it visible.", ""]
    return [
        "## GPU",
        "",
        "No GPU was available for this run, so there are no GPU figures here. On a GPU machine, run "
        f"the throughput comparisons with `{GPU_COMMAND}` (writes `bench/results/only-throughput-overhead"
        ".md` and `.json`, leaving BENCHMARKS.md alone). There, framework overhead per step is no longer "
        "hidden by a compute-bound step, and `fit` turns XLA on by itself (`jit_compile='auto'` "
        "resolves to True when a GPU is visible): the `fit` row of that table says which it used.",
        "",
    ]


Render = Callable[[Result, Result], list[str]]  # (the section, every section) -> lines
# The sections of a full run, in order (the throughput results feed two of them), then the ones
# `python -m bench NAME` runs on request, rendered only when present.
SECTIONS: tuple[tuple[str, str, Render], ...] = (
    ("throughput", "Training throughput", lambda s, _: sections.throughput(s)),
    ("throughput", "Cost of the control plane", lambda s, _: sections.control_plane(s)),
    ("overhead", "Where the framework is the cost", lambda s, _: overhead(s)),
    ("control", "Control latency", lambda s, _: sections.latency(s)),
    ("feed", "Metrics feed", lambda s, every: sections.feed(s, _ok(every.get("throughput")))),
    ("sidecar", "Sidecar", lambda s, _: sidecar(s)),
    ("quality", "Quality", lambda s, _: sections.quality(s)),
)
ON_REQUEST: tuple[tuple[str, str, Render], ...] = (
    ("flood", "Control flood", lambda s, _: flood(s)),
    ("protocol", "Protocol", lambda s, _: protocol(s)),
    ("ilink", "Sidecar over iLink", lambda s, _: sidecar(s)),
    ("profile", "Step profile", lambda s, _: profile(s)),
    ("distribute", "Several devices and workers", lambda s, _: distribute.markdown(s)),
)


def _ok(section: Result | None) -> Result | None:
    return section if section and "error" not in section else None


def render(name: str, title: str, draw: Render, every: Result) -> list[str]:
    value = every.get(name)
    if value is None:
        return [f"## {title}", "", "Not run in this invocation.", ""]
    if "error" in value:
        return [f"## {title}", "", f"Failed: `{value['error']}`", ""]
    return draw(value, every)


def section_markdown(every: Result) -> list[str]:
    """The sections that ran (or failed), for a partial run's console output."""
    return [line for entry in (*SECTIONS, *ON_REQUEST) if entry[0] in every for line in render(*entry, every)]


def markdown(results: Result) -> str:
    every = results["sections"]
    quick = results["mode"] == "quick"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results['command']}` on {results['started']} ({results['mode']} mode, "
        f"{results['wall_s'] / 60:.1f} min). Figures: median (min..max) over the repetitions of this "
        "one run. Machine-readable: `bench/results/latest.json` (not committed).",
        "",
        *(["> **Quick mode: a smoke run (one repetition, few steps). Not figures to publish.**", ""] * quick),
        *machine(results),
        *(line for entry in SECTIONS for line in render(*entry, every)),
        *(line for entry in ON_REQUEST if entry[0] in every for line in render(*entry, every)),
        *gpu(results),
        "## Reproduce",
        "",
        "`python -m bench` (the full run: about 17 min with the default 3 repetitions, 30 min with "
        "`--repeats 6`, on 2 CPU cores; run it on a quiet machine). `python -m bench NAME ...` runs "
        "some sections (also `flood`, `protocol`, `ilink`, `profile`) and writes "
        "`bench/results/only-NAME.md`; `--quick` for a smoke run, `--repeats N`, `--data PATH`, and a "
        "flag per size (`python -m bench --help`).",
        "",
    ]
    return "\n".join(lines)


def write(results: Result, markdown_path: Path, json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown_path.write_text(markdown(results))


def read(path: Path) -> Any:
    return json.loads(path.read_text())
