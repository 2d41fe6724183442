"""``python -m bench [NAME ...]``: run benchmarks and write their figures and tables.

No NAME: the full run (``FULL_RUN``) writes BENCHMARKS.md and bench/results/latest.json. NAMEs (those,
or flood, ilink, distribute) run only those and write bench/results/only-<names>.md
/ .json, printing their tables. ``--quick``: a smoke run (one repetition, the smallest sizes); every
size has its own flag. A section that fails is reported as failed; the others still run.
``--render FILE.json`` prints saved results' markdown; ``--child`` (internal) runs ``bench.harness.Child``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import DEFAULT_DATA, REPO, RESULTS_DIR, machine
from bench.throughput import VARIANTS

logger = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; the defaults are what BENCHMARKS.md publishes, ``QUICK`` a smoke test."""

    repeats: int = 3
    warmup_steps: int = 20
    timed_steps: int = 200
    overhead_warmup: int = 128
    overhead_steps: int = 1536
    control_requests: int = 300
    flood_window_s: float = 20.0
    sidecar_messages: int = 20
    quality_max_steps: int = 4 * (60_000 // 128)  # 4 epochs of full batches
    quality_eval_every: int = 100
    distribute_steps: int = 60


QUICK = Plan(1, 10, 30, 64, 256, 50, 5.0, 5, 200, 100, 20)
Runner = Callable[[Plan, str, list[str] | None], dict[str, Any]]


def _runners() -> dict[str, Runner]:
    from bench import control, distribute, feed, overhead, quality, sidecar_bench
    from bench import throughput as tp

    return {
        "throughput": lambda p, d, v: tp.run(
            d, p.timed_steps, p.warmup_steps, p.repeats, v or list(tp.VARIANTS)
        ),
        "overhead": lambda p, d, v: overhead.run(p.overhead_steps, p.overhead_warmup, p.repeats),
        "control": lambda p, d, v: control.latency(d, p.control_requests, p.repeats),
        "feed": lambda p, d, v: feed.run(p.repeats),
        "sidecar": lambda p, d, v: sidecar_bench.run("wechat", d, p.sidecar_messages, p.repeats),
        "quality": lambda p, d, v: quality.run(d, p.quality_max_steps, p.quality_eval_every),
        "flood": lambda p, d, v: control.flood(d, p.flood_window_s, p.repeats),
        "ilink": lambda p, d, v: sidecar_bench.run("ilink", d, p.sidecar_messages, p.repeats),
        "distribute": lambda p, d, v: distribute.run(d, p.distribute_steps, p.warmup_steps, p.repeats),
    }


FULL_RUN = ("throughput", "overhead", "control", "feed", "sidecar", "quality")
NAMES = (*FULL_RUN, "flood", "ilink", "distribute")


def run_sections(names: list[str], plan: Plan, data: str, variants: list[str] | None) -> dict[str, Any]:
    """Each section in turn; one broken section must not lose the others' figures."""
    runners = _runners()
    results: dict[str, Any] = {}
    for name in names:
        began = time.monotonic()
        logger.info("section %s ...", name)
        try:
            results[name] = runners[name](plan, data, variants)
        except Exception as exc:
            logger.error("section %s failed:\n%s", name, traceback.format_exc())
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        results[name]["section_wall_s"] = time.monotonic() - began
        logger.info("section %s done in %.0f s", name, results[name]["section_wall_s"])
    return results


def child(target: str, kwargs: str) -> None:
    """One measurement in this (child) process; its result as the last stdout line."""
    module, function = target.split(":")
    result = getattr(importlib.import_module(f"bench.{module}"), function)(**json.loads(kwargs))
    if result is not None:
        print(json.dumps(result), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=" | ".join(NAMES))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, smallest sizes")
    parser.add_argument("--data", default=os.path.relpath(DEFAULT_DATA, REPO), help="mnist.npz")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="throughput: only these variants"
    )
    for field in dataclasses.fields(Plan):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), metavar="N")
    parser.add_argument("--child", nargs=2, metavar=("TARGET", "KWARGS"), help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, metavar="FILE.json", help="print saved results' markdown")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.names if name not in NAMES]:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(NAMES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return
    if args.render:
        print(report.markdown(report.read(args.render)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    sizes = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(Plan) if getattr(args, f.name) is not None
    }
    plan = dataclasses.replace(QUICK if args.quick else Plan(), **sizes)
    data = args.data if os.path.isabs(args.data) else str((REPO / args.data).resolve())
    names = args.names or list(FULL_RUN)
    started = time.time()
    results: dict[str, Any] = {
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "mode": "quick" if args.quick else "full",
        "plan": dataclasses.asdict(plan),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine(),
    }
    results["sections"] = run_sections(names, plan, data, args.variants)
    results["wall_s"] = time.time() - started
    results["load_average_at_end"] = list(os.getloadavg())
    if args.names:
        stem = RESULTS_DIR / f"only-{'-'.join(names)}"
        markdown_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
        print("\n".join(report.section_markdown(results["sections"])))
    else:
        markdown_path, json_path = REPO / "BENCHMARKS.md", RESULTS_DIR / "latest.json"
    report.write(results, markdown_path, json_path)
    logger.info("wrote %s and %s", markdown_path, json_path)


if __name__ == "__main__":
    main()
