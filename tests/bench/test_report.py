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
        "command": "python -m bench", "mode": "full", "started": "today", "wall_s": 60.0,
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


def with_cpu_accounting(publisher_s: float) -> dict[str, Any]:
    section = throughput_section(1.0)
    dispatch = {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    common = {"callbacks": ["JsonlLog"], "report_dispatch_us": dispatch}
    section["runs"]["inproc_bare"] = [{**common, "step_dispatch_us": {**dispatch, "mean": 20.0}}]
    section["runs"]["inproc_control"] = [
        {
            **common,
            "step_dispatch_us": {**dispatch, "mean": 70.0},  # 50 us more, 200 steps: 10 ms
            "thread_cpu_s": {"metrics-publisher": publisher_s, "zmq-io": 0.01, "other": 3.99 - publisher_s},
            "feed": {"data_messages_per_reader": [200, 200], "gaps": 0, "cpu_ms_per_s": 2.0},
        }
    ]
    return section


def test_control_plane_cpu_share_adds_threads_and_extra_dispatch_against_the_target() -> None:
    cheap = report.markdown(results({"throughput": with_cpu_accounting(0.01)}))
    assert "**0.75%**, meets" in cheap  # (10 + 10 + 10 ms) of 4 s of CPU
    costly = report.markdown(results({"throughput": with_cpu_accounting(0.05)}))
    assert "**1.75%**, MISSES" in costly


def test_thread_cpu_counts_each_kind_of_thread_including_threads_born_in_between() -> None:
    import threading
    import time

    from bench import tf_roles as thread_cpu

    def burn(cpu_s: float) -> None:
        began = time.thread_time()
        while time.thread_time() - began < cpu_s:
            pass

    burned, release = threading.Event(), threading.Event()

    def publisher_like() -> None:
        burn(0.2)
        burned.set()
        release.wait(10)

    before = thread_cpu.snapshot()
    worker = threading.Thread(target=publisher_like, name="metrics-publisher")
    worker.start()  # born after `before`: all of its time counts
    burn(0.1)
    assert burned.wait(10)
    after = thread_cpu.snapshot()
    release.set()
    worker.join()
    spent = thread_cpu.spent_by_kind(before, after)
    assert 0.2 <= spent["metrics-publisher"] < 0.3
    assert spent["main"] >= 0.1
    assert after[worker.native_id or 0][0] == "metrics-publisher"


def test_a_cost_ratio_whose_runs_straddle_one_says_so() -> None:
    section = throughput_section(1.0)
    section["ratios"]["trainer_vs_trainer_no_subscriber"] = summary([0.94, 0.95, 1.02])
    section["ratios"]["idle_sub_vs_trainer_no_subscriber"] = summary([0.95, 0.96, 0.97])
    text = report.markdown(results({"throughput": section}))
    assert "MISSES (median 5.0% slower; the runs fall on both sides of 1)" in text
    assert "MISSES (median 4.0% slower) |" in text  # every run slower: no such hedge


def test_fill_writes_summaries_as_median_and_range_numbers_and_lists_as_they_are() -> None:
    figures = {"rate": summary([1.0, 2.0, 30.0]), "one": summary([5.0]), "steps": 200, "order": ["a", "b"]}
    text = report.fill("{rate:.1f}; {one:.2f}; {steps}; {order}", figures)
    assert text == "2.0 (1.0..30.0); 5.00; 200; a, b"


def test_a_row_whose_computed_cell_is_none_is_left_out() -> None:
    rows = report.rows(("kept", "{x:.0f}"), ("dropped", lambda s, every: None))
    assert rows({"x": 3.0}, {}) == [["kept", "3"]]
