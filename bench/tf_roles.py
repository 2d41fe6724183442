"""The TensorFlow side of the throughput benchmarks, each variant a child process (``bench.harness.Child``).

- ``fit_cnn``: ``keras.Model.fit`` on the seed's CNN (``trainer.tasks.mnist_cnn.build_cnn``) and the
  trainer's pipeline (``trainer.data.train_dataset``: shuffled, batch 128, scaled per batch,
  prefetched), Adam(0.001) or the trainer's ``FusedAdam`` (Keras' Adam math in TensorFlow's
  one-pass kernel), sparse CE from logits, ``metrics=["accuracy"]`` (the trainer computes the
  batch accuracy every step too).
- ``inproc_cnn``: ``trainer.Trainer`` driven in-process with the callbacks ``trainer.session``
  builds; bare (less ``ControlBridge`` and ``PublishMetrics``, no sockets) or with the control plane
  wired as ``trainer.__main__`` wires it and ``FEED_READERS`` real ``Subscriber``s reading the feed
  from another process (``read_feed``), as a sidecar and a ``trainctl watch`` would. It also times
  the callback dispatch of every step and report, and counts the CPU time of each kind of thread in
  the timed window (``bench.thread_cpu``), which measures the control plane's cost below the
  run-to-run noise of throughput.

``time_fit`` and ``train_inproc`` are shared with ``bench.overhead``. Clocks run between two host
points where every step before them has finished, so tracing and the first pipeline fill are
outside the window.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import thread_cpu
from bench.harness import BATCH_SIZE, Child, percentiles, scratch_dir
from bench.processes import FEED_READERS, FeedReader, report_times

Marks = dict[str, tuple[int, float]]  # "start" / "end" -> (optimizer steps done, perf_counter)


def rate(marks: Marks, batch_size: int) -> dict[str, Any]:
    (s0, t0), (s1, t1) = marks["start"], marks["end"]
    steps_per_s = (s1 - s0) / (t1 - t0)
    return {"steps_per_s": steps_per_s, "samples_per_s": steps_per_s * batch_size, "timed_steps": s1 - s0,
            "seconds": t1 - t0}  # fmt: skip


def time_fit(model: Any, dataset: Any, warmup: int, steps: int, spe: int, epochs: int) -> Marks:
    """``model.fit`` until ``warmup + steps`` optimizer steps, marking the two clock points."""
    import keras

    last, marks = warmup + steps, {}

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        """Stamps batch *begins* (once per execution): overriding a batch-end hook would make Keras
        sync the logs every step, and fit is to run as users run it. Reading
        ``optimizer.iterations`` waits for the steps before it, at the two clock points only."""

        executions = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            done, self.executions = self.executions * spe, self.executions + 1
            for name, at in (("start", warmup), ("end", last)):
                if done >= at and name not in marks:
                    marks[name] = (int(self.model.optimizer.iterations.numpy()), time.perf_counter())
            if done >= last:
                self.model.stop_training = True

    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[Clock()])
    return marks


def fit_cnn(data: str, warmup: int, steps: int, fused: bool) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from trainer.data import load_mnist, train_dataset
    from trainer.optimizers import FusedAdam
    from trainer.tasks.mnist_cnn import build_cnn

    model = build_cnn()
    model.compile(
        optimizer=FusedAdam(0.001) if fused else keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    dataset = train_dataset(load_mnist(data).train, BATCH_SIZE)
    epochs = (warmup + steps) // int(dataset.cardinality().numpy()) + 1
    marks = time_fit(model, dataset, warmup, steps, 1, epochs)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {**rate(marks, BATCH_SIZE), "jit_compile": bool(model.jit_compile), "gpus_visible": gpus}


def _control_plane(workdir: Path) -> tuple[Any, Any, list[Any]]:
    """Controller + Publisher + ControlServer as ``trainer.__main__.serve`` wires them."""
    from protocol import ControlServer, Publisher, new_session_id
    from trainer.control import Controller
    from trainer.params import PARAM_SPECS, defaults

    session = new_session_id()
    holder: dict[str, Any] = {}
    publisher = Publisher(
        f"ipc://{workdir}/metrics", session=session, heartbeat_body=lambda: holder["c"].heartbeat_body()
    )
    controller = Controller(
        PARAM_SPECS, defaults(PARAM_SPECS), run_id="bench", session=session, publish=publisher.publish
    )
    holder["c"] = controller
    controller.last_seq = lambda: publisher.last_seq
    handlers = {**controller.handlers(), "history": publisher.history_handler}
    server = ControlServer(f"ipc://{workdir}/control", handlers, session=session)
    publisher.start()
    server.start()
    return controller, publisher.publish, [server, publisher]


def train_inproc(module: Any, work: Path, control: bool, first: Any, last: Any, **kwargs: Any) -> Any:
    """``Trainer.fit`` in this process with ``python -m trainer``'s callbacks between ``first`` and
    ``last`` (lists of clocks); ``control``: the control plane live and read (else none of it).
    Returns (trainer, its callbacks less the clocks, the readers' figures or None)."""
    from trainer.callbacks.control import ControlBridge
    from trainer.callbacks.publish import PublishMetrics
    from trainer.config import Config
    from trainer.control import Controller, Progress
    from trainer.params import PARAM_SPECS, defaults
    from trainer.session import build_callbacks
    from trainer.trainer import Trainer

    config = Config(run_dir=work / "run", quiet=True)
    closers: list[Any] = []
    readers: Child | None = None
    if control:
        controller, publish, closers = _control_plane(work)
        readers = Child("tf_roles:read_feed", workdir=str(work))
    else:
        publish = lambda topic, body: None  # noqa: E731
        controller = Controller(PARAM_SPECS, defaults(PARAM_SPECS), run_id="b", session="b", publish=publish)
    callbacks = build_callbacks(config, controller, publish)
    if not control:
        callbacks = [c for c in callbacks if not isinstance(c, (ControlBridge, PublishMetrics))]
    trainer = Trainer(module, callbacks=[*first, *callbacks, *last], run_dir=config.run_dir, **kwargs)
    trainer.test = lambda: {}  # only training is timed: skip the final test
    progress = Progress(step=0, epoch=0, total_steps=trainer.total_steps())
    controller.loaded(trainer.specs, trainer.params, progress, autostart=True)
    feed = None
    try:
        trainer.fit()
    finally:
        if readers is not None:
            try:
                feed = readers.result(60)
            except RuntimeError as exc:
                feed = {"error": str(exc)}
        for item in closers:
            item.close()
    return trainer, callbacks, feed


def inproc_cnn(data: str, warmup: int, steps: int, control: bool) -> dict[str, Any]:
    from trainer.callbacks.base import Callback
    from trainer.tasks.mnist_cnn import MnistCnn

    last = warmup + steps
    samples: dict[str, list[float]] = {"step": [], "report": [], "began": [0.0]}
    cpu: list[thread_cpu.Snapshot] = []

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
                cpu.append(thread_cpu.snapshot())

        def on_step_end(self, trainer: Any, logs: Any) -> None:
            self._tick("step")

        def on_report(self, trainer: Any, logs: Any) -> None:
            self._tick("report")

    with scratch_dir("ctb-") as work:
        _, callbacks, feed = train_inproc(
            MnistCnn(data=data), work, control, [Clock(True)], [Clock(False)], max_steps=last
        )
        times = report_times(work / "run")
    seconds = times[last] - times[warmup]
    window = samples["step"][warmup:last]
    result: dict[str, Any] = {
        "samples_per_s": steps * BATCH_SIZE / seconds,
        "seconds": seconds,
        "callbacks": [type(c).__name__ for c in callbacks],
        "step_dispatch_us": {**percentiles(window, 1e6), "mean": 1e6 * sum(window) / len(window)},
        "report_dispatch_us": percentiles(samples["report"], 1e6),
    }
    if len(cpu) == 2 and cpu[0]:
        result["thread_cpu_s"] = thread_cpu.spent_by_kind(*cpu)
    if feed is not None:
        result["feed"] = feed
    return result


def read_feed(workdir: str) -> dict[str, Any]:
    """FEED_READERS Subscribers on the in-process trainer until stdin closes; what they received."""
    from protocol.connect import Connection

    # The in-process control plane (``_control_plane``) serves without CurveZMQ.
    connection = Connection(f"ipc://{workdir}/control", f"ipc://{workdir}/metrics", curve=None)
    began_cpu, began = time.process_time(), time.monotonic()
    readers = [FeedReader(connection).start() for _ in range(FEED_READERS)]
    sys.stdin.read()
    for reader in readers:
        reader.close()
    return {
        "data_messages_per_reader": [reader.data_messages for reader in readers],
        "gaps": sum(reader.gaps for reader in readers),
        "cpu_ms_per_s": 1e3 * (time.process_time() - began_cpu) / (time.monotonic() - began),
    }
