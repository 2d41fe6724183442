"""``trainer`` / ``python -m trainer``: bind the control plane first, then load TensorFlow.

Order matters: the control and metrics sockets are bound and served (state ``loading``) before
``trainer.session`` is imported, because that import pulls in TensorFlow (seconds). Nothing in
this file, ``trainer/__init__``, ``trainer.config``, ``trainer.params`` or ``trainer.control``
imports TensorFlow. SIGTERM and SIGINT ask for a graceful stop: the run stops at the next step
boundary, checkpoints, tests, publishes, and the process exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from protocol import (
    PROTOCOL_VERSION,
    ConnectionInfo,
    ControlServer,
    EndpointInUse,
    KeyPair,
    Publisher,
    ServerCurve,
    check_bind_address,
    default_connection_file,
    default_endpoints,
    new_session_id,
    server_curve,
)
from trainer.cluster import CHIEF, WorkerRole, worker_role
from trainer.config import Config, parse_config
from trainer.control import Controller, Publish
from trainer.errors import describe_error
from trainer.lifecycle import FAIL, FAILED
from trainer.native_noise import filtered_stderr
from trainer.pacing import Pacer, paced
from trainer.params import PARAM_SPECS, defaults

logger = logging.getLogger("trainer")

EXIT_ENDPOINT_IN_USE = 3
EXIT_USAGE = 2  # final: respawn does not retry it
EXIT_CONTROL_PLANE_DIED = 4  # not final: respawn starts a process whose control plane works
CONTROL_PLANE_EXIT_GRACE_S = 60.0
IDLE_POLL_S = 0.25


def run_id_for(run_dir: Path) -> str:
    """The run's id: the run directory's name (PROTOCOL.md)."""
    return run_dir.resolve().name


def install_signal_handlers(controller: Controller) -> None:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        if controller.signal_stop:  # a second signal: the user does not want to wait
            os._exit(128 + signum)
        # Only a flag: the loop acts at the next step boundary (or idle poll).
        controller.signal_stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


class ControlPlaneWatch:
    """`on_thread_death` for the server and the publisher: fail loudly, stop, and exit non-zero."""

    def __init__(self, controller: Controller, publish: Publish) -> None:
        self._controller = controller
        self._publish = publish
        self.error: dict[str, str] | None = None

    def __call__(self, name: str, exc: BaseException | None) -> None:
        cause = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
        self.error = {
            "type": "ControlPlaneDied",
            "message": f"the {name} thread died ({cause:.200}); the trainer restarts",
            "traceback_tail": "",
        }
        step = self._controller.progress().step
        self._publish("event.failed", {"event": "failed", "step": step, "state": FAILED, "error": self.error})
        self._controller.signal_stop = True  # stop at the next step boundary, as on SIGTERM
        # A loop that does not get there in time must not keep an unsteerable process alive.
        watchdog = threading.Timer(CONTROL_PLANE_EXIT_GRACE_S, os._exit, args=(EXIT_CONTROL_PLANE_DIED,))
        watchdog.daemon = True
        watchdog.start()

    def exit_code(self, code: int) -> int:
        """The process's exit code: `code`, unless a serving thread died (then the run failed)."""
        if self.error is None:
            return code
        self._controller.fire(FAIL, error=self.error)
        return EXIT_CONTROL_PLANE_DIED


class UsageError(Exception):
    """A configuration the trainer cannot start with: exit 2, one line, no restart."""


def serve(config: Config) -> int:
    try:
        role = worker_role(config.strategy, os.environ)
    except ValueError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    if config.strategy == "multiworker":  # a job runs once launched and ends with its run
        config = dataclasses.replace(config, autostart=True, exit_when_done=True)
    if not role.is_chief:
        return serve_worker(config, role)
    try:
        control, metrics, connection_file, curve, client_keys = _setup(config)
    except UsageError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    session = new_session_id()
    run_id = run_id_for(config.run_dir)
    publisher = Publisher(
        metrics,
        session=session,
        heartbeat_interval_s=config.heartbeat_interval_s,
        heartbeat_body=lambda: controller.heartbeat_body(),
        history_size=config.history_size,
        curve=curve,
        allow_remote=config.allow_remote,
        on_thread_death=lambda name, exc: watch(name, exc),
    )
    controller = Controller(
        PARAM_SPECS,
        defaults(PARAM_SPECS),
        run_id=run_id,
        session=session,
        publish=publisher.publish,
        heartbeat_interval_s=config.heartbeat_interval_s,
        max_steps=config.max_steps,
    )
    controller.last_seq = lambda: publisher.last_seq
    watch = ControlPlaneWatch(controller, publisher.publish)
    handlers = paced({**controller.handlers(), "history": publisher.history_handler}, Pacer())
    server = ControlServer(
        control,
        handlers,
        session=session,
        curve=curve,
        allow_remote=config.allow_remote,
        on_thread_death=watch,
    )
    try:
        publisher.start()
        server.start()
    except EndpointInUse as exc:
        logger.error("%s", exc)
        publisher.close()
        return EXIT_ENDPOINT_IN_USE
    except ValueError as exc:  # a non-loopback address without --allow-remote
        logger.error("%s", exc)
        server.close()
        publisher.close()
        return EXIT_USAGE
    ConnectionInfo(
        control=control,
        metrics=metrics,
        run_id=run_id,
        session=session,
        protocol_version=PROTOCOL_VERSION,
        server_public_key=curve.public_key() if curve else None,
        pid=os.getpid(),
        client_public_key=client_keys.public if client_keys else None,
        client_secret_key=client_keys.secret if client_keys else None,
    ).write(connection_file)
    install_signal_handlers(controller)
    logger.info("serving control on %s, metrics on %s (session %s)", control, metrics, session)
    try:
        return watch.exit_code(_run_session(config, controller, publisher.publish, role))
    finally:
        server.close()
        publisher.close()
        _remove_if_ours(connection_file, session)


def _setup(config: Config) -> tuple[str, str, Path, ServerCurve | None, KeyPair | None]:
    """Endpoints, connection file and CurveZMQ keys; UsageError for what a restart cannot fix."""
    try:
        control, metrics = default_endpoints(config.instance)
        connection_file = config.connection_file or default_connection_file(config.instance)
        for endpoint in (config.control or control, config.metrics or metrics):
            check_bind_address(endpoint, allow_remote=config.allow_remote)
        if config.insecure_no_curve:
            logger.warning(
                "INSECURE: CurveZMQ is off (--insecure-no-curve): whoever can reach %s can steer this run",
                config.control or control,
            )
            return config.control or control, config.metrics or metrics, connection_file, None, None
        curve, client_keys = server_curve(
            connection_file, secret_key_file=config.curve_secret, clients_dir=config.curve_clients
        )
    except (ValueError, OSError) as exc:  # a refused directory, a bad key file, a refused address
        raise UsageError(str(exc)) from None
    return config.control or control, config.metrics or metrics, connection_file, curve, client_keys


def serve_worker(config: Config, role: WorkerRole) -> int:
    """A non-chief worker: the same loop, no sockets, no connection file; the chief steers it
    through the strategy's collectives (``trainer.peers``)."""
    controller = Controller(
        PARAM_SPECS,
        defaults(PARAM_SPECS),
        run_id=run_id_for(config.run_dir),
        session=new_session_id(),
        publish=lambda topic, body: None,  # nobody subscribes to a non-chief worker
        heartbeat_interval_s=config.heartbeat_interval_s,
        max_steps=config.max_steps,
    )
    install_signal_handlers(controller)
    logger.info("%s of %d: no control sockets (the chief serves them)", role.name, role.num_workers)
    return _run_session(config, controller, lambda topic, body: None, role)


def _run_session(config: Config, controller: Controller, publish: Publish, role: WorkerRole = CHIEF) -> int:
    try:
        noise = contextlib.nullcontext() if config.log_level == "DEBUG" else filtered_stderr()
        with noise:
            from trainer.session import Session  # imports TensorFlow: seconds
    except Exception as exc:  # a broken install fails the run; the sockets say why
        logger.exception("cannot load the TensorFlow side")
        error = describe_error(exc)
        controller.fire(FAIL, error=error)
        publish("event.failed", {"event": "failed", "step": 0, "state": FAILED, "error": error})
        while not (controller.signal_stop or config.exit_when_done):
            controller.take_commands(1, timeout_s=IDLE_POLL_S)
        return 1
    return Session(config, controller, publish, role).run()


def _remove_if_ours(path: Path, session: str) -> None:
    try:
        if ConnectionInfo.read(path).session == session:
            path.unlink()
    except (OSError, ValueError, TypeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv, os.environ)
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint timing chatter at INFO
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
