"""CPU time spent by each kind of thread in this process, from the kernel's per-thread CPU clocks.

End-to-end throughput on a shared 2-core machine varies by several percent from run to run, far
more than the 1% the control plane may cost, so the benchmark also counts that cost directly: the
CPU time of the publisher and control-server threads and of ZeroMQ's I/O threads, next to the
whole process's. Linux only (it reads /proc/self/task); elsewhere `snapshot()` returns nothing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

CONTROL_PLANE_THREADS = ("metrics-publisher", "control-server")
ZMQ_THREAD_PREFIX = "ZMQbg"  # libzmq names its I/O and reaper threads ZMQbg/IO/0, ZMQbg/Reaper
TASKS = Path("/proc/self/task")

Snapshot = dict[int, tuple[str, float]]  # thread id -> (kind, CPU seconds so far)


def _thread_clock(tid: int) -> int:
    # Linux's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): any thread's CPU clock in this process,
    # what pthread_getcpuclockid would return, with nanosecond resolution.
    return (~tid << 3) | 6


def _kind(tid: int, comm: str, python_names: dict[int, str]) -> str:
    name = python_names.get(tid, "")
    if name in CONTROL_PLANE_THREADS:
        return name
    if comm.startswith(ZMQ_THREAD_PREFIX):
        return "zmq-io"
    if name == "MainThread":
        return "main"
    return "other"  # TensorFlow's thread pools, tf.data, the logging threads


def snapshot() -> Snapshot:
    """Every live thread of this process, with its kind and the CPU time it has used."""
    if not TASKS.is_dir():
        return {}
    python_names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    threads: Snapshot = {}
    for entry in os.listdir(TASKS):
        tid = int(entry)
        try:
            comm = (TASKS / entry / "comm").read_text().strip()
            threads[tid] = (_kind(tid, comm, python_names), time.clock_gettime(_thread_clock(tid)))
        except OSError:
            continue  # the thread ended between the listing and the read
    return threads


def spent_by_kind(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per kind of thread between two snapshots (threads born in between count whole)."""
    spent: dict[str, float] = {}
    for tid, (kind, seconds) in after.items():
        spent[kind] = spent.get(kind, 0.0) + seconds - before.get(tid, (kind, 0.0))[1]
    return spent
