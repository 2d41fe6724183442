"""Optional CurveZMQ: encryption plus an allow-list of client keys, for endpoints on a network.

Key files are the ZeroMQ certificate format (`zmq.auth.create_certificates`). The server loads its
secret key and admits only the public keys found in a directory; without that authenticator CURVE
would accept any client key, so the server always starts one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write `<name>.key` (public) and `<name>.key_secret` (mode 0600) into `directory`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_public_key(path: Path) -> bytes:
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def _use_keypair(socket: zmq.Socket[bytes], secret_key_file: Path) -> None:
    """Give `socket` the key pair stored in a secret key file."""
    public, secret = zmq.auth.load_certificate(str(secret_key_file))
    if secret is None:
        raise ValueError(f"{secret_key_file} holds no secret key")
    socket.curve_publickey = public
    socket.curve_secretkey = secret


@dataclass(frozen=True)
class ServerCurve:
    """The server's secret key file and the directory of allowed clients' public key files."""

    secret_key_file: Path
    clients_dir: Path

    def public_key(self) -> str:
        public, _ = zmq.auth.load_certificate(str(self.secret_key_file))
        return public.decode()

    def start_authenticator(self, context: zmq.Context[zmq.Socket[bytes]]) -> ThreadAuthenticator:
        """One per context: only keys in `clients_dir` may connect to CURVE sockets of it."""
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.clients_dir))
        return authenticator

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        _use_keypair(socket, self.secret_key_file)
        socket.curve_server = True


@dataclass(frozen=True)
class ClientCurve:
    """The client's own secret key file, and the server's public key: a key file, or the Z85 text
    that a connection file carries (`server_public_key`)."""

    secret_key_file: Path
    server_public_key_file: Path | None = None
    server_public_key: str | None = None

    def __post_init__(self) -> None:
        if (self.server_public_key_file is None) == (self.server_public_key is None):
            raise ValueError("give the server's public key as a file or as text, exactly one")

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        _use_keypair(socket, self.secret_key_file)
        if self.server_public_key is not None:
            socket.curve_serverkey = self.server_public_key.encode()
        else:
            assert self.server_public_key_file is not None
            socket.curve_serverkey = load_public_key(self.server_public_key_file)
