"""The TensorFlow side of the throughput benchmark: each variant runs as its own child process.

    python bench/throughput_roles.py fit|inproc-bare|inproc-control --data PATH --warmup 20 --steps 200

prints one JSON line. Every variant trains the seed's CNN (``trainer.tasks.mnist_cnn.build_cnn``) on
the same pipeline (``trainer.data.train_dataset``: shuffled, batch 128, scaled per batch,
prefetched). The clock runs from the end of step ``warmup`` to the end of step ``warmup + steps``,
so tracing and the first pipeline fill are outside it.

- ``fit``: ``keras.Model.fit``, Adam(0.001), sparse CE from logits, ``metrics=["accuracy"]`` (the
  trainer computes the batch accuracy every step too); a Keras callback stamps the batches.
- ``fit-fused``: the same with the trainer's optimizer, ``trainer.optimizers.FusedAdam`` (Keras'
  Adam math in TensorFlow's one-pass kernel), to show how much of the difference is the optimizer.
- ``inproc-bare``: ``trainer.Trainer`` driven in-process with the callbacks ``trainer.session``
  builds, less the two that talk to the control plane (``ControlBridge``, ``PublishMetrics``);
  no sockets.
- ``inproc-control``: the same plus a ``Controller``, ``ControlServer`` and ``Publisher`` wired as
  ``trainer.__main__`` wires them, and two real ``Subscriber``s reading the feed from another
  process (the ``readers`` role), as a sidecar and a ``trainctl watch`` would.

The trainer variants are timed by the trainer's own ``report`` records in its JSONL log; they also
time the callback dispatch of every step (``on_step_end`` over all callbacks) and of every report,
and count the CPU time each kind of thread spent in the timed window (``bench.thread_cpu``), which
measures the control plane's cost below the run-to-run noise of throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import thread_cpu  # noqa: E402
from bench.harness import (  # noqa: E402
    BATCH_SIZE,
    FEED_READERS,
    FeedReader,
    jsonl_times,
    percentiles,
    scratch_dir,
)


def fit(data: str, warmup: int, steps: int, *, fused: bool = False) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from trainer.data import load_mnist, train_dataset
    from trainer.optimizers import FusedAdam
    from trainer.tasks.mnist_cnn import build_cnn

    last = warmup + steps
    times: dict[int, float] = {}

    class BatchClock(keras.callbacks.Callback):  # type: ignore[misc]
        """Stamps batch *begins*: overriding a batch-end hook would make Keras sync the logs every
        step (it dispatches them asynchronously otherwise), and fit is to run as users run it.
        Reading ``optimizer.iterations`` waits for the steps before it, at the two clock points only."""

        def __init__(self) -> None:
            super().__init__()
            self.begun = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            completed, self.begun = self.begun, self.begun + 1
            if completed in (warmup, last):
                self.model.optimizer.iterations.numpy()  # waits for the steps dispatched so far
                times[completed] = time.time()
            if completed >= last:
                self.model.stop_training = True

    model = build_cnn()
    model.compile(
        optimizer=FusedAdam(0.001) if fused else keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    dataset = train_dataset(load_mnist(data).train, BATCH_SIZE)
    epochs = last // int(dataset.cardinality().numpy()) + 1
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[BatchClock()])
    seconds = times[last] - times[warmup]
    return {
        "samples_per_s": steps * BATCH_SIZE / seconds,
        "seconds": seconds,
        "jit_compile": bool(model.jit_compile),
        "gpus_visible": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


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


def inproc(data: str, warmup: int, steps: int, *, control: bool) -> dict[str, Any]:
    from trainer.callbacks.base import Callback
    from trainer.callbacks.control import ControlBridge
    from trainer.callbacks.publish import PublishMetrics
    from trainer.config import Config
    from trainer.control import Controller, Progress
    from trainer.params import PARAM_SPECS, defaults
    from trainer.session import build_callbacks
    from trainer.tasks.mnist_cnn import MnistCnn
    from trainer.trainer import Trainer

    class Clock(Callback):
        """Placed first and last: the time the whole callback list takes per hook call; the last one
        also snapshots every thread's CPU time at the ends of steps `warmup` and `last`."""

        def __init__(self, samples: dict[str, list[float]], opens: bool) -> None:
            self.samples, self.opens, self.began = samples, opens, 0.0

        def _tick(self, hook: str) -> None:
            if self.opens:
                self.samples["_began"] = [time.perf_counter()]
                return
            self.samples[hook].append(time.perf_counter() - self.samples["_began"][0])
            if hook == "step" and len(self.samples["step"]) in (warmup, last):
                cpu.append(thread_cpu.snapshot())

        def on_step_end(self, trainer: Trainer, logs: Any) -> None:
            self._tick("step")

        def on_report(self, trainer: Trainer, logs: Any) -> None:
            self._tick("report")

    last = warmup + steps
    samples: dict[str, list[float]] = {"step": [], "report": []}
    cpu: list[thread_cpu.Snapshot] = []
    readers: subprocess.Popen[str] | None = None
    with scratch_dir("ctb-") as work:
        config = Config(run_dir=work / "run", quiet=True)
        closers: list[Any] = []
        if control:
            controller, publish, closers = _control_plane(work)
            readers = _start_readers(work)
        else:
            publish = lambda topic, body: None  # noqa: E731
            controller = Controller(
                PARAM_SPECS, defaults(PARAM_SPECS), run_id="b", session="b", publish=publish
            )
        callbacks = build_callbacks(config, controller, publish)
        if not control:
            callbacks = [c for c in callbacks if not isinstance(c, (ControlBridge, PublishMetrics))]
        trainer = Trainer(
            MnistCnn(data=data),
            callbacks=[Clock(samples, True), *callbacks, Clock(samples, False)],
            run_dir=config.run_dir,
            max_steps=last,
        )
        # Only training is timed: skip the final test.
        trainer.test = lambda: {}  # type: ignore[method-assign]
        progress = Progress(step=0, epoch=0, total_steps=trainer.total_steps())
        controller.loaded(trainer.specs, trainer.params, progress, autostart=True)
        try:
            trainer.fit()
        finally:
            feed = _stop_readers(readers)
            for item in closers:
                item.close()
        times = jsonl_times(config.run_dir)
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


def _start_readers(work: Path) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "readers", "--workdir", str(work)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _stop_readers(readers: subprocess.Popen[str] | None) -> dict[str, Any] | None:
    """Close the readers' stdin (their signal to stop); what they received."""
    if readers is None:
        return None
    out, _ = readers.communicate(timeout=60)
    return json.loads(out) if readers.returncode == 0 else {"error": f"readers exited {readers.returncode}"}


def read_feed(workdir: str) -> dict[str, Any]:
    """The ``readers`` role: FEED_READERS Subscribers on the in-process trainer until stdin closes."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("fit", "fit-fused", "inproc-bare", "inproc-control", "readers"))
    parser.add_argument("--data", help="mnist.npz (every role but readers)")
    parser.add_argument("--workdir", help="readers: the in-process trainer's socket directory")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if (args.role == "readers") != (args.data is None) or (args.role == "readers") != bool(args.workdir):
        parser.error("readers takes --workdir only; every other role takes --data")
    if args.role == "readers":
        result = read_feed(args.workdir)
    elif args.role in ("fit", "fit-fused"):
        result = fit(args.data, args.warmup, args.steps, fused=args.role == "fit-fused")
    else:
        result = inproc(args.data, args.warmup, args.steps, control=args.role == "inproc-control")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
