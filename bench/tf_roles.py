"""The TensorFlow side of the throughput benchmarks, each call in a child process (``bench.harness.Child``).

``fit_cnn``: ``keras.Model.fit`` on the seed's CNN and the trainer's pipeline. ``inproc_cnn``:
``trainer.Trainer`` in-process with the callbacks ``trainer.session`` builds, bare or with the control
plane bound as ``python -m trainer`` binds it (``trainer.control_plane``) and ``FEED_READERS``
subscribers in another process (``read_feed``); it times every step's callback dispatch and counts
each kind of thread's CPU time in the timed window (``snapshot``), which resolves the control
plane's cost below run-to-run noise.
``time_fit`` and ``train_inproc`` serve ``bench.overhead`` too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    BATCH_SIZE,
    FEED_READERS,
    Child,
    feed_figures,
    feed_reader,
    percentiles,
    report_times,
)
from fakes.processes import scratch_dir

Marks = dict[str, tuple[int, float]]  # "start" / "end" -> (optimizer steps done, perf_counter)
Snapshot = dict[int, tuple[str, float]]  # thread id -> (kind, CPU seconds so far)
CONTROL_PLANE_THREADS = ("metrics-publisher", "control-server")
ZMQ_IO = "zmq-io"  # libzmq's own threads
TASKS = Path("/proc/self/task")


def snapshot() -> Snapshot:
    """Every live thread of this process, its kind and the CPU time it has used (Linux; else {})."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    threads: Snapshot = {}
    for tid in map(int, os.listdir(TASKS) if TASKS.is_dir() else []):
        name = names.get(tid, "")
        try:  # libzmq names its I/O and reaper threads ZMQbg/IO/0, ZMQbg/Reaper
            zmq_io = (TASKS / str(tid) / "comm").read_text().startswith("ZMQbg")
            # Linux's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): that thread's CPU clock, in ns.
            seconds = time.clock_gettime((~tid << 3) | 6)
        except OSError:
            continue  # the thread ended between the listing and the read
        kind = {"MainThread": "main"}.get(name, name if name in CONTROL_PLANE_THREADS else "other")
        threads[tid] = (ZMQ_IO if zmq_io and kind == "other" else kind, seconds)
    return threads


def spent_by_kind(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per kind of thread between two snapshots (threads born in between count whole)."""
    spent: dict[str, float] = {}
    for tid, (kind, seconds) in after.items():
        spent[kind] = spent.get(kind, 0.0) + seconds - before.get(tid, (kind, 0.0))[1]
    return spent


def rate(marks: Marks, batch_size: int) -> dict[str, Any]:
    (s0, t0), (s1, t1) = marks["start"], marks["end"]
    return {"steps_per_s": (s1 - s0) / (t1 - t0), "samples_per_s": (s1 - s0) / (t1 - t0) * batch_size,
            "timed_steps": s1 - s0, "seconds": t1 - t0}  # fmt: skip


def time_fit(model: Any, dataset: Any, warmup: int, steps: int, spe: int, epochs: int) -> Marks:
    """``model.fit`` until ``warmup + steps`` optimizer steps, marking the two clock points."""
    import keras

    last, marks = warmup + steps, {}

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        """Stamps batch *begins* (once per execution): a batch-end hook would make Keras sync the logs
        every step. Reading ``optimizer.iterations`` waits for the steps before it, at the marks only."""

        executions = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            done, self.executions = self.executions * spe, self.executions + 1
            for name, at in (("start", warmup), ("end", last)):
                if done >= at and name not in marks:
                    marks[name] = (int(self.model.optimizer.iterations.numpy()), time.perf_counter())
            self.model.stop_training = done >= last

    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[Clock()])
    return marks


def fit_cnn(data: str, warmup: int, steps: int, fused: bool) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from trainer.data import load_mnist, train_dataset
    from trainer.optimizers import FusedAdam
    from trainer.tasks.mnist_cnn import build_cnn

    model = build_cnn()
    model.compile(optimizer=FusedAdam(0.001) if fused else keras.optimizers.Adam(0.001), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    dataset = train_dataset(load_mnist(data).train, BATCH_SIZE)
    marks = time_fit(model, dataset, warmup, steps, 1, (warmup + steps) // int(dataset.cardinality()) + 1)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {**rate(marks, BATCH_SIZE), "jit_compile": bool(model.jit_compile), "gpus_visible": gpus}


def train_inproc(module: Any, work: Path, control: bool, first: Any, last: Any, **kwargs: Any) -> Any:
    """``Trainer.fit`` in this process with ``python -m trainer``'s callbacks between ``first`` and
    ``last`` (lists of clocks); ``control``: the control plane live and read (else none of it).
    Returns (trainer, its callbacks less the clocks, the readers' figures or None)."""
    from protocol import new_session_id
    from trainer.callbacks.control import ControlBridge
    from trainer.callbacks.publish import PublishMetrics
    from trainer.config import Config
    from trainer.control import Controller, Progress
    from trainer.control_plane import bind_control_plane
    from trainer.params import PARAM_SPECS, defaults
    from trainer.session import build_callbacks
    from trainer.trainer import Trainer

    config, plane, readers = Config(run_dir=work / "run", quiet=True), None, None
    if control:  # as python -m trainer binds it, less CurveZMQ
        endpoints, session = (f"ipc://{work}/control", f"ipc://{work}/metrics"), new_session_id()
        plane = bind_control_plane(*endpoints, PARAM_SPECS, defaults(PARAM_SPECS), run_id="b",
                                   session=session, curve=None)  # fmt: skip
        controller, publish = plane.controller, plane.publish
        readers = Child("tf_roles:read_feed", workdir=str(work))
    else:
        publish = lambda topic, body: None  # noqa: E731
        controller = Controller(PARAM_SPECS, defaults(PARAM_SPECS), run_id="b", session="b", publish=publish)
    callbacks = build_callbacks(config, controller, publish)
    if not control:
        callbacks = [c for c in callbacks if not isinstance(c, (ControlBridge, PublishMetrics))]
    trainer = Trainer(module, callbacks=[*first, *callbacks, *last], run_dir=config.run_dir, progress=False,
                      **kwargs)  # quiet, as python -m trainer --quiet and fit(verbose=0)  # fmt: skip
    trainer.test = lambda: {}  # only training is timed: skip the final test
    controller.loaded(trainer.specs, trainer.params, Progress(0, 0, trainer.total_steps()), autostart=True)
    feed = None
    try:
        trainer.fit()
    finally:
        if readers is not None:
            try:
                feed = readers.result(60)
            except RuntimeError as exc:
                feed = {"error": str(exc)}
        if plane is not None:
            plane.close()
    return trainer, callbacks, feed


def inproc_cnn(data: str, warmup: int, steps: int, control: bool) -> dict[str, Any]:
    from trainer.callbacks.base import Callback
    from trainer.tasks.mnist_cnn import MnistCnn

    last = warmup + steps
    samples: dict[str, list[float]] = {"step": [], "report": [], "began": [0.0]}
    cpu: list[Snapshot] = []

    class Clock(Callback):
        """Placed first and last: the time the whole callback list takes per hook call; the last one
        also snapshots every thread's CPU time at the ends of steps ``warmup`` and ``last``."""

        def __init__(self, opens: bool) -> None:
            self.opens = opens

        def _tick(self, hook: str) -> None:
            if self.opens:
                samples["began"][0] = time.perf_counter()
                return
            samples[hook].append(time.perf_counter() - samples["began"][0])
            if hook == "step" and len(samples["step"]) in (warmup, last):
                cpu.append(snapshot())

        def on_step_end(self, trainer: Any, logs: Any) -> None:
            self._tick("step")

        def on_report(self, trainer: Any, logs: Any) -> None:
            self._tick("report")

    with scratch_dir("ctb-") as work:
        clocks = [Clock(True)], [Clock(False)]
        _, callbacks, feed = train_inproc(MnistCnn(data=data), work, control, *clocks, max_steps=last)
        times = report_times(work / "run")
    seconds, window = times[last] - times[warmup], samples["step"][warmup:last]
    return {
        "samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds,
        "callbacks": [type(c).__name__ for c in callbacks],
        "step_dispatch_us": {**percentiles(window, 1e6), "mean": 1e6 * sum(window) / len(window)},
        "report_dispatch_us": percentiles(samples["report"], 1e6),
        **({"thread_cpu_s": spent_by_kind(*cpu)} if len(cpu) == 2 and cpu[0] else {}),
        **({"feed": feed} if feed is not None else {}),
    }  # fmt: skip


def read_feed(workdir: str) -> dict[str, Any]:
    """FEED_READERS Subscribers on the in-process trainer until stdin closes; what they received."""
    from protocol.connect import Connection

    # The in-process control plane (``train_inproc``) serves without CurveZMQ.
    connection = Connection(f"ipc://{workdir}/control", f"ipc://{workdir}/metrics", curve=None)
    began_cpu, began = time.process_time(), time.monotonic()
    readers = [feed_reader(connection).start() for _ in range(FEED_READERS)]
    sys.stdin.read()
    for reader in readers:
        reader.stop()
    cpu_ms_per_s = 1e3 * (time.process_time() - began_cpu) / (time.monotonic() - began)
    return {**feed_figures(readers), "cpu_ms_per_s": cpu_ms_per_s}
