"""Run every benchmark in one go and write BENCHMARKS.md plus bench/results/latest.json.

    python bench/run_all.py [--quick] [--repeats N] [--data PATH] [--skip-quality] [--only SECTION ...]

Sections, in order: throughput (with the control-plane cost), overhead (a tiny MLP where the
framework is the cost), control (latency under load), feed,
sidecar, quality. The full run takes about 17 minutes on 2 CPU cores (30 with ``--repeats 6``);
``--quick`` is a smoke run of a few minutes (one repetition, few steps: its figures are not for
publishing). ``--only`` writes ``bench/results/only-<sections>.md`` / ``.json`` instead of
BENCHMARKS.md, so a partial run (e.g. on a GPU machine) never overwrites the committed table. A
section that fails is reported as failed and the others still run.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (  # noqa: E402
    control_latency,
    metrics_feed,
    overhead,
    quality,
    report,
    sidecar_bench,
    throughput,
)
from bench.harness import DEFAULT_DATA, REPO, RESULTS_DIR, machine  # noqa: E402

logger = logging.getLogger("bench")

SECTIONS = ("throughput", "overhead", "control", "feed", "sidecar", "quality")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; ``full`` is what BENCHMARKS.md publishes, ``quick`` a smoke test."""

    repeats: int
    warmup_steps: int
    timed_steps: int
    control_requests: int
    sidecar_messages: int
    quality_max_steps: int
    quality_eval_every: int
    overhead_warmup: int
    overhead_steps: int


FULL = Plan(3, 20, 200, 300, 20, quality.DEFAULT_MAX_STEPS, 100, 128, 1536)
QUICK = Plan(1, 10, 30, 50, 5, 200, 100, 64, 256)


def section_runners(plan: Plan, data: str) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "throughput": lambda: throughput.run(data, plan.timed_steps, plan.warmup_steps, plan.repeats),
        "overhead": lambda: overhead.run(plan.overhead_steps, plan.overhead_warmup, plan.repeats),
        "control": lambda: control_latency.run(data, plan.control_requests, plan.repeats),
        "feed": lambda: metrics_feed.run(plan.repeats),
        "sidecar": lambda: sidecar_bench.run(data, plan.sidecar_messages, plan.repeats),
        "quality": lambda: quality.run(data, plan.quality_max_steps, plan.quality_eval_every),
    }


def run_sections(names: list[str], plan: Plan, data: str) -> dict[str, Any]:
    runners = section_runners(plan, data)
    results: dict[str, Any] = {}
    for name in names:
        began = time.monotonic()
        logger.info("section %s ...", name)
        try:
            results[name] = runners[name]()
        except Exception as exc:  # one broken section must not lose the others' figures
            logger.error("section %s failed:\n%s", name, traceback.format_exc())
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        results[name]["section_wall_s"] = time.monotonic() - began
        logger.info("section %s done in %.0f s", name, results[name]["section_wall_s"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, few steps")
    parser.add_argument("--repeats", type=int, help="repetitions per figure (default 3; quick 1)")
    parser.add_argument("--data", default=os.path.relpath(DEFAULT_DATA, REPO), help="mnist.npz")
    parser.add_argument("--skip-quality", action="store_true", help="skip the slow quality section")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = Plan(args.repeats, *list(vars(plan).values())[1:])
    data = str((REPO / args.data).resolve()) if not os.path.isabs(args.data) else args.data
    names = list(args.only or SECTIONS)
    if args.skip_quality and "quality" in names:
        names.remove("quality")
    started = time.time()
    results: dict[str, Any] = {
        "command": "python bench/run_all.py " + shlex.join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "plan": vars(plan),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine(),
    }
    results["sections"] = run_sections(names, plan, data)
    results["wall_s"] = time.time() - started
    results["load_average_at_end"] = list(os.getloadavg())
    if args.only:
        stem = RESULTS_DIR / f"only-{'-'.join(names)}"
        markdown_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
    else:
        markdown_path, json_path = REPO / "BENCHMARKS.md", RESULTS_DIR / "latest.json"
    report.write(results, markdown_path, json_path)
    logger.info("wrote %s and %s", markdown_path, json_path)


if __name__ == "__main__":
    main()
