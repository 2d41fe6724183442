"""CurveZMQ: encryption plus an allow-list of client keys, on every endpoint by default.

Keys are Z85 text (40 characters), as `zmq.curve_keypair()` makes them and ZeroMQ's certificate
files (`zmq.auth.create_certificates`) hold them. Without a ZAP authenticator a CURVE server
accepts any client key, so the server always starts one, and it admits only the keys it is
given: the client key of the trainer's own connection file, plus the public key files of an
explicit clients directory. pyzmq's "allow any" (`'*'` as the directory) is refused.

`protocol.connect` decides where the keys come from; this module only loads, checks and applies
them. A key that cannot work (a public key file given as a secret key, a malformed key) is
refused here, before any socket exists, so a client can never hang on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

Z85_KEY_CHARS = 40
ALLOW_ANY = "*"  # pyzmq's configure_curve(location='*'): any key at all


class CurveKeyError(ValueError):
    """A key or key file that cannot be used: said in one line, naming the file."""


def check_key(text: object, what: str) -> str:
    """`text` if it is a Z85 CurveZMQ key, else CurveKeyError naming `what`."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str) or len(text) != Z85_KEY_CHARS:
        raise CurveKeyError(f"{what} is not a CurveZMQ key (40 Z85 characters)")
    try:
        z85.decode(text.encode("ascii"))
    except (ValueError, KeyError, UnicodeEncodeError):
        raise CurveKeyError(f"{what} is not a CurveZMQ key (40 Z85 characters)") from None
    return text


@dataclass(frozen=True)
class KeyPair:
    """A public key and its secret key, both Z85 text."""

    public: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        check_key(self.public, "the public key")
        check_key(self.secret, "the secret key")
        if zmq.curve_public(self.secret.encode()).decode() != self.public:
            raise CurveKeyError("the public key does not belong to the secret key")

    @classmethod
    def generate(cls) -> KeyPair:
        public, secret = zmq.curve_keypair()
        return cls(public.decode(), secret.decode())

    @classmethod
    def from_secret_file(cls, path: Path) -> KeyPair:
        """A `*.key_secret` certificate file; a public key file here is refused, not hung on."""
        try:
            public, secret = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError) as exc:
            raise CurveKeyError(f"cannot read the CurveZMQ secret key file {path}: {exc}") from None
        if not secret:
            raise CurveKeyError(f"{path} holds no secret key (is it the public .key file?)")
        return cls(check_key(public, f"the public key in {path}"), check_key(secret, f"the key in {path}"))


def load_public_key(path: Path) -> str:
    """The public key of a certificate file (public or secret), as Z85 text."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read the CurveZMQ key file {path}: {exc}") from None
    return check_key(public, f"the key in {path}")


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write `<name>.key` (public) and `<name>.key_secret` (mode 0600) into `directory`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_file, 0o600)  # create_certificates leaves it to the umask (0644 here)
    return Path(public_file), Path(secret_file)


class _AllowedKeys:
    """pyzmq's ZAP credentials provider: `callback(domain, z85_key)` says yes for listed keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = frozenset(key.encode() for key in keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._keys


@dataclass(frozen=True)
class ServerCurve:
    """The server's key pair and the client keys it admits (and nothing else)."""

    keys: KeyPair
    client_keys: frozenset[str] = frozenset()
    clients_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.clients_dir is not None and str(self.clients_dir).strip() == ALLOW_ANY:
            raise CurveKeyError(
                f"refusing CurveZMQ clients {ALLOW_ANY!r}: it admits any key; name a directory of "
                "allowed clients' public key files"
            )
        if self.clients_dir is not None and not self.clients_dir.is_dir():
            raise CurveKeyError(f"CurveZMQ clients directory {self.clients_dir} does not exist")
        for key in self.client_keys:
            check_key(key, "an allowed client key")

    @classmethod
    def from_files(cls, secret_key_file: Path, clients_dir: Path | None = None) -> ServerCurve:
        return cls(KeyPair.from_secret_file(secret_key_file), clients_dir=clients_dir)

    def public_key(self) -> str:
        return self.keys.public

    def admitted(self) -> frozenset[str]:
        """The client keys admitted now: the given ones plus the clients directory's files."""
        keys = set(self.client_keys)
        if self.clients_dir is not None:
            for path in sorted(self.clients_dir.glob("*.key")):
                keys.add(load_public_key(path))
        return frozenset(keys)

    def start_authenticator(self, context: zmq.Context[zmq.Socket[bytes]]) -> ThreadAuthenticator:
        """One per context: only `admitted()` keys may connect to CURVE sockets of it."""
        provider = _AllowedKeys(self.admitted())
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve_callback(domain="*", credentials_provider=provider)
        return authenticator

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        socket.curve_secretkey = self.keys.secret.encode()
        socket.curve_publickey = self.keys.public.encode()
        socket.curve_server = True


@dataclass(frozen=True)
class ClientCurve:
    """A client's key pair and the server's public key."""

    keys: KeyPair
    server_public_key: str

    def __post_init__(self) -> None:
        check_key(self.server_public_key, "the server's public key")

    @classmethod
    def from_files(cls, secret_key_file: Path, server_key_file: Path) -> ClientCurve:
        return cls(KeyPair.from_secret_file(secret_key_file), load_public_key(server_key_file))

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        socket.curve_secretkey = self.keys.secret.encode()
        socket.curve_publickey = self.keys.public.encode()
        socket.curve_serverkey = self.server_public_key.encode()
