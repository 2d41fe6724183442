"""Where the sockets live: safe defaults, the loopback rule, the bind guard and the connection file.

Defaults are ipc sockets inside a 0700 runtime directory, so only the same user can connect. TCP on
a loopback address is allowed; any other address needs `allow_remote=True` (and then CurveZMQ).
A second bind to an ipc path would silently take it over, so every ipc bind holds an flock on a
lock file beside the socket for as long as the socket lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import zmq

from protocol.errors import EndpointInUse


class UnsafeDirectory(PermissionError):
    """A runtime or state directory (or a file in it) that others could write: refused."""


ENV_CONTROL = "CHATTRAIN_CONTROL"
ENV_METRICS = "CHATTRAIN_METRICS"
ENV_CONNECTION = "CHATTRAIN_CONNECTION"
ENV_INSTANCE = "CHATTRAIN_INSTANCE"
ENV_RUNTIME_DIR = "CHATTRAIN_RUNTIME_DIR"
DEFAULT_INSTANCE = "default"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def default_runtime_dir() -> Path:
    """A private (0700) directory for ipc sockets, the connection file and the instance's keys.

    A directory we create is made 0700; an existing one must already be ours and writable by
    nobody else, since chmod-ing whatever a variable names (say /tmp) would be worse than refusing.
    """
    override = os.environ.get(ENV_RUNTIME_DIR)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif xdg:
        path = Path(xdg) / "chattrain"
    else:
        path = Path(tempfile.gettempdir()) / f"chattrain-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        check_private_dir(path, f"runtime directory (set {ENV_RUNTIME_DIR} to use another)", forbidden=0o077)
    return path


def check_private_dir(path: Path, what: str, *, forbidden: int = 0o022) -> None:
    """Refuse a directory that is not ours or whose mode has a `forbidden` bit (by default: others
    may write, so they could plant a socket, a connection file, a key or a pickle in it).
    Raises UnsafeDirectory, one line."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise UnsafeDirectory(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory")
    if info.st_uid != os.getuid() or info.st_mode & forbidden:
        wanted = "0700" if forbidden & 0o055 else "writable by nobody else"
        raise UnsafeDirectory(
            f"refusing {what} {path}: it must belong to you (uid {os.getuid()}) with mode {wanted}; "
            f"it belongs to uid {info.st_uid} with mode {oct(info.st_mode & 0o777)}"
        )


def check_private_file(path: Path, what: str) -> None:
    """Refuse a file that is not ours or that others may read or write (a key, a session)."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UnsafeDirectory(
            f"refusing {what} {path}: it must be a regular file of yours with mode 0600; it has "
            f"uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}"
        )


def default_endpoints(instance: str | None = None) -> tuple[str, str]:
    """(control, metrics) endpoints for an instance name, honouring CHATTRAIN_CONTROL / _METRICS."""
    name = instance or os.environ.get(ENV_INSTANCE) or DEFAULT_INSTANCE
    runtime = default_runtime_dir()
    control = os.environ.get(ENV_CONTROL) or f"ipc://{runtime}/{name}.control"
    metrics = os.environ.get(ENV_METRICS) or f"ipc://{runtime}/{name}.metrics"
    return control, metrics


def default_connection_file(instance: str | None = None) -> Path:
    """Where a trainer writes, and clients look for, its connection file."""
    override = os.environ.get(ENV_CONNECTION)
    if override:
        return Path(override)
    name = instance or os.environ.get(ENV_INSTANCE) or DEFAULT_INSTANCE
    return default_runtime_dir() / f"{name}.json"


def check_bind_address(endpoint: str, *, allow_remote: bool = False) -> None:
    """Refuse wildcard and non-loopback TCP binds unless explicitly allowed."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return
    if transport != "tcp":
        raise ValueError(f"unsupported endpoint {endpoint!r}: use ipc:// or tcp://")
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in _LOOPBACK_NAMES or _is_loopback_ip(host) or allow_remote:
        return
    raise ValueError(
        f"refusing to bind {endpoint}: not a loopback address; pass --allow-remote "
        "(and configure CurveZMQ keys) to listen on a network"
    )


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BoundEndpoint:
    """A socket bound to an endpoint, plus the ipc lock that keeps a second process off it."""

    def __init__(self, socket: zmq.Socket[bytes], endpoint: str) -> None:
        self._lock: IO[str] | None = None
        self._socket_path: Path | None = None
        if endpoint.startswith("ipc://"):
            self._socket_path = Path(endpoint[len("ipc://") :])
            self._lock = _take_ipc_lock(self._socket_path)
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket_path = None  # not bound: whatever is at that path is not ours to remove
            self.release()
            if exc.errno == zmq.EADDRINUSE:
                raise EndpointInUse(f"{endpoint} is already in use by another process") from exc
            raise
        self.endpoint = endpoint

    def release(self) -> None:
        """Give the endpoint up; an ipc socket file and its lock file are removed, while the lock
        is still held (so they can only be another process's once this one has let go)."""
        if self._lock is None:
            return
        if self._socket_path is not None:
            with contextlib.suppress(OSError):
                self._socket_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(self._lock.name).unlink(missing_ok=True)
        self._lock.close()
        self._lock = None


def _take_ipc_lock(socket_path: Path) -> IO[str]:
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    busy = f"ipc://{socket_path} is already served by process {{holder}}; stop it or choose another "
    busy += "--instance / endpoint"
    return hold_lock(socket_path.with_name(socket_path.name + ".lock"), busy)


def hold_lock(lock_path: Path, busy: str) -> IO[str]:
    """An exclusive flock on ``lock_path`` (this pid written in it), held while the returned file
    is open; the kernel drops it when the process dies, kill -9 included. Another live holder:
    ``EndpointInUse(busy.format(holder=its pid))``. OSError when the file cannot be opened."""
    handle = open(lock_path, "a+")  # noqa: SIM115 (held open for the holder's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise EndpointInUse(busy.format(holder=holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to attach to one trainer process; written as JSON, mode 0600."""

    control: str
    metrics: str
    run_id: str
    session: str
    protocol_version: int
    server_public_key: str | None = None  # None: the trainer runs without CurveZMQ
    pid: int | None = None
    client_public_key: str | None = None  # the key pair the trainer admits, for local clients
    client_secret_key: str | None = None

    def write(self, path: Path) -> None:
        """Atomically replace `path`; created 0600 because it may hold key material."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(temporary, path)

    @classmethod
    def read(cls, path: Path) -> ConnectionInfo:
        data: dict[str, Any] = json.loads(Path(path).read_text())
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})
