"""The benchmark report renders what was measured and says what was not (no timing here)."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.harness import percentiles, summary

MACHINE = {
    "cpu_model": "Test CPU", "cpu_cores": 2, "cpu_cores_usable": 2, "memory_gib": 8.0, "gpus": [],
    "os": "Linux", "load_average_at_start": [0.1, 0.2, 0.3], "python": "3.11", "tensorflow": "2.21",
    "keras": "3", "numpy": "2", "pyzmq": "27", "libzmq": "4.3.5", "msgpack": "1.2.4", "itchat": "1.3.10",
}  # fmt: skip


def results(sections: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": "python bench/run_all.py", "mode": "full", "started": "today", "wall_s": 60.0,
        "machine": MACHINE, "sections": sections, "load_average_at_end": [0.1, 0.1, 0.1],
    }  # fmt: skip


def throughput_section(trainer_vs_fit: float) -> dict[str, Any]:
    rates = {"fit": summary([1000.0, 1010.0]), "trainer": summary([990.0, 1000.0])}
    return {
        "batch_size": 128, "warmup_steps": 20, "timed_steps": 200, "repeats": 2, "order": ["fit", "trainer"],
        "samples_per_s": rates,
        "ratios": {"vs_fit": {"trainer": summary([trainer_vs_fit, trainer_vs_fit])}},
        "runs": {"fit": [{"samples_per_s": 1000.0, "jit_compile": False}], "trainer": []},
    }  # fmt: skip


def test_missing_and_failed_sections_are_said_not_invented() -> None:
    text = report.markdown(results({"sidecar": {"error": "TimeoutError: sidecar not ready"}}))
    assert "Failed: `TimeoutError: sidecar not ready`" in text
    assert text.count("Not run in this invocation.") >= 4
    assert "No GPU was available" in text and report.GPU_COMMAND in text


def test_throughput_table_checks_the_target_against_the_worst_run() -> None:
    text = report.markdown(results({"throughput": throughput_section(0.96)}))
    assert "MISSES (worst >= 0.97)" in text
    assert "0.960" in text and "1,005 (1,000..1,010)" in text


def test_summary_and_percentiles() -> None:
    assert summary([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}
    figures = percentiles([float(i) for i in range(1, 101)], 1.0)
    assert (figures["p50"], figures["max"], figures["count"]) == (51.0, 100.0, 100)
