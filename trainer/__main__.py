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
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from protocol import (
    ConnectionInfo,
    EndpointInUse,
    KeyPair,
    ServerCurve,
    check_bind_address,
    default_connection_file,
    default_endpoints,
    hold_lock,
    new_session_id,
    server_curve,
)
from trainer.cluster import CHIEF, WorkerRole, worker_role
from trainer.config import Config, parse_config
from trainer.control import Controller, Publish
from trainer.control_plane import bind_control_plane
from trainer.errors import describe_error
from trainer.lifecycle import FAILED
from trainer.native_noise import filtered_stderr
from trainer.params import PARAM_SPECS, defaults

logger = logging.getLogger("trainer")

EXIT_ENDPOINT_IN_USE = 3
EXIT_USAGE = 2  # final: respawn does not retry it
IDLE_POLL_S = 0.25
RUN_DIR_LOCK = "trainer.lock"


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
    try:
        # Held for the process's life: two trainers on one run dir would write, prune and
        # restore each other's checkpoints (a second `--instance` without its own --run-dir).
        run_lock = hold_run_dir(role.log_dir(config.run_dir))
    except UsageError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except EndpointInUse as exc:
        logger.error("%s", exc)
        return EXIT_ENDPOINT_IN_USE
    with run_lock:
        return serve_holding_run_dir(config, role)


def serve_holding_run_dir(config: Config, role: WorkerRole) -> int:
    if not role.is_chief:
        return serve_worker(config, role)
    try:
        control, metrics, connection_file, curve, client_keys = _setup(config)
    except UsageError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    try:
        plane = bind_control_plane(
            control,
            metrics,
            PARAM_SPECS,
            defaults(PARAM_SPECS),
            run_id=run_id_for(config.run_dir),
            session=new_session_id(),
            curve=curve,
            allow_remote=config.allow_remote,
            heartbeat_interval_s=config.heartbeat_interval_s,
            history_size=config.history_size,
            max_steps=config.max_steps,
            starts_when_loaded=config.strategy == "multiworker",
        )
    except EndpointInUse as exc:
        logger.error("%s", exc)
        return EXIT_ENDPOINT_IN_USE
    except ValueError as exc:  # a non-loopback address without --allow-remote
        logger.error("%s", exc)
        return EXIT_USAGE
    plane.write_connection_file(connection_file, client_keys)
    controller, session = plane.controller, plane.controller.session
    install_signal_handlers(controller)
    logger.info("serving control on %s, metrics on %s (session %s)", control, metrics, session)
    try:
        return plane.watch.exit_code(_run_session(config, controller, plane.publish, role))
    finally:
        plane.close()
        _remove_if_ours(connection_file, session)


def hold_run_dir(run_dir: Path) -> IO[str]:
    """The run directory, made if need be and locked for this process (``hold_lock``); UsageError
    when it is not a directory this process can write."""
    busy = f"run dir {run_dir} is in use by trainer process {{holder}}; stop it or give this one --run-dir"
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return hold_lock(Path(run_dir) / RUN_DIR_LOCK, busy)
    except OSError as exc:
        raise UsageError(f"run dir {run_dir} is not a directory this trainer can write: {exc}") from None


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
        controller.setup_failed(error)  # start is refused with the reason: it could only fail again
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
