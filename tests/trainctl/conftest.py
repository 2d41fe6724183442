"""Fixtures for the trainctl tests: private ipc endpoints, a started fake trainer, the CLI in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakes.processes import scratch_dir
from fakes.trainer import FakeTrainer
from protocol import ConnectionInfo, KeyPair, ServerCurve, server_curve
from trainctl.__main__ import main


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short, private directory under /tmp: ipc paths must stay under ~100 characters."""
    with scratch_dir("tc-") as path:
        yield path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, ipc_dir: Path) -> None:
    """No CHATTRAIN_* from the developer's shell; default endpoints live in the private dir."""
    for name in list(os.environ):
        if name.startswith("CHATTRAIN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(ipc_dir))


@pytest.fixture
def endpoints(ipc_dir: Path) -> tuple[str, str]:
    return f"ipc://{ipc_dir}/t.control", f"ipc://{ipc_dir}/t.metrics"


@pytest.fixture
def trainer_curve(ipc_dir: Path) -> tuple[ServerCurve, KeyPair]:
    """The keys a trainer of the default instance uses, by protocol's rules, and its client pair."""
    return server_curve(ipc_dir / "default.json")


@pytest.fixture
def trainer(endpoints: tuple[str, str], trainer_curve: tuple[ServerCurve, KeyPair]) -> Iterator[FakeTrainer]:
    # These tests stop back to idle; CurveZMQ as a real trainer has it by default.
    fake = FakeTrainer(*endpoints, stopped_state="idle", curve=trainer_curve[0]).start()
    yield fake
    fake.close()


@pytest.fixture
def connection_file(
    endpoints: tuple[str, str], trainer: FakeTrainer, trainer_curve: tuple[ServerCurve, KeyPair]
) -> Callable[[Path], Path]:
    """`connection_file(path)`: write the trainer's connection file (keys included) there."""

    def write(path: Path) -> Path:
        curve, client = trainer_curve
        ConnectionInfo(
            *endpoints, run_id="run-1", session=trainer.session, protocol_version=1,
            server_public_key=curve.public_key(), client_public_key=client.public,
            client_secret_key=client.secret,
        ).write(path)  # fmt: skip
        return path

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], endpoints: tuple[str, str]) -> Callable[..., CliResult]:
    """`cli("status", "--json")`: run trainctl in-process against the test endpoints."""

    def run(*argv: str, connect: bool = True) -> CliResult:
        capsys.readouterr()
        prefix = (
            ["--control", endpoints[0], "--metrics", endpoints[1], "--timeout-ms", "500"] if connect else []
        )
        code = main([*prefix, *argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
