"""Every exception that crosses the protocol boundary, and the stable error codes of error replies.

One exception per boundary: `ProtocolError` when bytes cannot be decoded, `RequestError` raised by a
handler for an expected refusal, `RemoteError` when a client receives an error reply, and
`TrainerUnavailable` when a client gives up after its retries.
"""

from __future__ import annotations

from typing import Any


class ErrorCode:
    """Stable codes carried in `error.code` of a reply with `ok: false` (see PROTOCOL.md)."""

    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_OP = "unknown_op"
    INVALID_PARAMS = "invalid_params"
    INVALID_STATE = "invalid_state"
    TOO_OLD = "too_old"
    EXPIRED = "expired"
    NOT_READY = "not_ready"
    INTERNAL = "internal"

    ALL = (
        BAD_REQUEST,
        UNSUPPORTED_VERSION,
        UNKNOWN_OP,
        INVALID_PARAMS,
        INVALID_STATE,
        TOO_OLD,
        EXPIRED,
        NOT_READY,
        INTERNAL,
    )


class ProtocolError(ValueError):
    """Frames that are not a valid message; the text names what was received."""


class RequestError(Exception):
    """Raised by a control handler to refuse a request; becomes an error reply verbatim."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class RemoteError(Exception):
    """The server answered `ok: false`: `code` is one of `ErrorCode`, `message` is for humans."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class TrainerUnavailable(ConnectionError):
    """No reply within the client's bounded retries: the trainer is down, stalled or unreachable."""


class EndpointInUse(RuntimeError):
    """Another live process already serves this endpoint."""
