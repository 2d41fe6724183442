"""A run's control plane: its Controller, Publisher and ControlServer, wired, bound and closed as one.

``python -m trainer``, ``chattrain.keras.Remote`` and the benchmarks' in-process trainer all bind it
with ``bind_control_plane``, so each serves the same handlers (``history`` included), paces requests
(``trainer.pacing``), sends the controller's heartbeat and watches its serving threads
(``ControlPlaneWatch``). No TensorFlow here: the sockets are served while the trainer loads it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import (
    PROTOCOL_VERSION,
    ConnectionInfo,
    ControlServer,
    KeyPair,
    ParamSpec,
    Publisher,
    ServerCurve,
)
from protocol.publisher import DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_HISTORY_SIZE
from trainer.control import Controller, Publish
from trainer.lifecycle import FAIL, FAILED
from trainer.pacing import Pacer, paced

EXIT_CONTROL_PLANE_DIED = 4  # not final: respawn starts a process whose control plane works
CONTROL_PLANE_EXIT_GRACE_S = 60.0


class ControlPlaneWatch:
    """`on_thread_death` for the server and the publisher: fail loudly and stop the run; where the
    process is ours (``exit_after_s``), exit non-zero if the loop does not get there in time."""

    def __init__(self, controller: Controller, publish: Publish, exit_after_s: float | None) -> None:
        self._controller = controller
        self._publish = publish
        self._exit_after_s = exit_after_s
        self.error: dict[str, str] | None = None

    def __call__(self, name: str, exc: BaseException | None) -> None:
        cause = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
        restart = "the trainer restarts" if self._exit_after_s is not None else "the run stops"
        self.error = {
            "type": "ControlPlaneDied",
            "message": f"the {name} thread died ({cause:.200}); {restart}",
            "traceback_tail": "",
        }
        step = self._controller.progress().step
        self._publish("event.failed", {"event": "failed", "step": step, "state": FAILED, "error": self.error})
        self._controller.signal_stop = True  # stop at the next step boundary, as on SIGTERM
        if self._exit_after_s is not None:
            # A loop that does not get there in time must not keep an unsteerable process alive.
            watchdog = threading.Timer(self._exit_after_s, os._exit, args=(EXIT_CONTROL_PLANE_DIED,))
            watchdog.daemon = True
            watchdog.start()

    def exit_code(self, code: int) -> int:
        """The process's exit code: `code`, unless a serving thread died (then the run failed)."""
        if self.error is None:
            return code
        self._controller.fire(FAIL, error=self.error)
        return EXIT_CONTROL_PLANE_DIED


@dataclass
class ControlPlane:
    control: str
    metrics: str
    controller: Controller
    publisher: Publisher
    server: ControlServer
    watch: ControlPlaneWatch
    curve: ServerCurve | None

    @property
    def publish(self) -> Publish:
        return self.publisher.publish

    def write_connection_file(self, path: Path, client_keys: KeyPair | None) -> None:
        """The 0600 file clients find the endpoints and keys in (``protocol.connect``)."""
        ConnectionInfo(
            control=self.control,
            metrics=self.metrics,
            run_id=self.controller.run_id,
            session=self.controller.session,
            protocol_version=PROTOCOL_VERSION,
            server_public_key=self.curve.public_key() if self.curve else None,
            pid=os.getpid(),
            client_public_key=client_keys.public if client_keys else None,
            client_secret_key=client_keys.secret if client_keys else None,
        ).write(path)

    def close(self) -> None:
        self.server.close()
        self.publisher.close()


def bind_control_plane(
    control: str,
    metrics: str,
    specs: Sequence[ParamSpec],
    params: Mapping[str, Any],
    *,
    run_id: str,
    session: str,
    curve: ServerCurve | None,
    allow_remote: bool = False,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    history_size: int = DEFAULT_HISTORY_SIZE,
    max_steps: int | None = None,
    starts_when_loaded: bool = False,
    exit_after_s: float | None = CONTROL_PLANE_EXIT_GRACE_S,
) -> ControlPlane:
    """Build the control plane and start serving; what a failed bind (``EndpointInUse``, a refused
    address's ``ValueError``) started is closed before the error propagates."""
    publisher = Publisher(
        metrics,
        session=session,
        heartbeat_interval_s=heartbeat_interval_s,
        heartbeat_body=lambda: controller.heartbeat_body(),
        history_size=history_size,
        curve=curve,
        allow_remote=allow_remote,
        on_thread_death=lambda name, exc: watch(name, exc),
    )
    controller = Controller(
        specs,
        params,
        run_id=run_id,
        session=session,
        publish=publisher.publish,
        heartbeat_interval_s=heartbeat_interval_s,
        max_steps=max_steps,
        starts_when_loaded=starts_when_loaded,
    )
    controller.last_seq = lambda: publisher.last_seq
    watch = ControlPlaneWatch(controller, publisher.publish, exit_after_s)
    handlers = paced({**controller.handlers(), "history": publisher.history_handler}, Pacer())
    server = ControlServer(
        control, handlers, session=session, curve=curve, allow_remote=allow_remote, on_thread_death=watch
    )
    try:
        publisher.start()
        server.start()
    except BaseException:
        server.close()
        publisher.close()
        raise
    return ControlPlane(control, metrics, controller, publisher, server, watch, curve)
