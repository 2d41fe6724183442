"""chattrain's wire contract: msgpack messages over ZeroMQ, and the client library.

Pure Python on pyzmq and msgpack; it never imports TensorFlow. The only code that both the trainer
and the sidecar import. PROTOCOL.md at the repository root is the specification.
"""

from __future__ import annotations

from protocol.client import ControlClient
from protocol.connect import Connection, ConnectionConfigError, resolve_connection, server_curve
from protocol.endpoints import (
    ConnectionInfo,
    UnsafeDirectory,
    check_bind_address,
    check_private_dir,
    default_connection_file,
    default_endpoints,
    default_runtime_dir,
    hold_lock,
)
from protocol.errors import (
    EndpointInUse,
    ErrorCode,
    ProtocolError,
    RemoteError,
    RequestError,
    TrainerUnavailable,
)
from protocol.feed_events import (
    Data,
    FeedEvent,
    Gap,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    TrainerDown,
    Unstalled,
)
from protocol.liveness import NOT_RESPONDING_AFTER_S, UNREACHABLE_AFTER_S, Liveness
from protocol.message import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Message,
    new_id,
    new_session_id,
)
from protocol.params import ParamSpec, coerce_params, resolve_param
from protocol.publisher import Publisher
from protocol.security import ClientCurve, CurveKeyError, KeyPair, ServerCurve, generate_keypair
from protocol.server import ControlServer
from protocol.steps import METRICS_STEPS, step_losses, steps_body
from protocol.subscriber import Subscriber

OPERATIONS = (
    "describe",
    "status",
    "start",
    "stop",
    "pause",
    "resume",
    "get_params",
    "set_params",
    "history",
    "checkpoint",
    "evaluate",
)
STATES = ("loading", "idle", "running", "paused", "stopping", "stopped", "finished", "failed")
EVENTS = (
    "started",
    "param_changed",
    "checkpoint_saved",
    "checkpoint_failed",
    "paused",
    "resumed",
    "stopped",
    "finished",
    "failed",
    "evaluated",
    "state",
)
# Every topic a trainer publishes (PROTOCOL.md §4); subscribe to a prefix ("event.") for a family.
TOPICS = (
    METRICS_STEPS,
    "metrics.report",
    "metrics.val",
    "metrics.test",
    *(f"event.{name}" for name in EVENTS),
    "log",
    "heartbeat",
)

__all__ = [
    "EVENTS",
    "METRICS_STEPS",
    "OPERATIONS",
    "PROTOCOL_VERSION",
    "STATES",
    "SUPPORTED_VERSIONS",
    "TOPICS",
    "ClientCurve",
    "Connection",
    "ConnectionConfigError",
    "ConnectionInfo",
    "ControlClient",
    "ControlServer",
    "CurveKeyError",
    "Data",
    "EndpointInUse",
    "ErrorCode",
    "FeedEvent",
    "Gap",
    "KeyPair",
    "Liveness",
    "Message",
    "NOT_RESPONDING_AFTER_S",
    "NotResponding",
    "Responding",
    "UNREACHABLE_AFTER_S",
    "ParamSpec",
    "ProtocolError",
    "Publisher",
    "RemoteError",
    "RequestError",
    "ServerCurve",
    "SessionChanged",
    "Snapshot",
    "Stalled",
    "Subscriber",
    "TrainerBack",
    "TrainerDown",
    "TrainerUnavailable",
    "UnsafeDirectory",
    "Unstalled",
    "check_bind_address",
    "check_private_dir",
    "coerce_params",
    "hold_lock",
    "default_connection_file",
    "default_endpoints",
    "default_runtime_dir",
    "generate_keypair",
    "new_id",
    "new_session_id",
    "resolve_connection",
    "resolve_param",
    "server_curve",
    "step_losses",
    "steps_body",
]
