"""Several runs from the command line: `--run`, `--discover`, the console sidecar, and one-line
connection errors (the same in the sidecar and trainctl)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar.config import parse_config
from fakes.trainer import FakeTrainer
from tests.sidecar.harness import endpoints
from tests.sidecar.test_runs import write_connection_file

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 30


def test_run_options_name_the_runs(private_runtime_dir: Path, tmp_path: Path) -> None:
    with endpoints() as eps:
        fake = FakeTrainer(*eps)  # not started: only its connection file is read
        try:
            path = write_connection_file(private_runtime_dir, "exp1", fake, *eps)
            config = parse_config(
                ["--run", f"a={path}", "--run", "tcp://127.0.0.1:5701,tcp://127.0.0.1:5702"], {}
            )
        finally:
            fake.close()
    assert not config.primary  # only --run: the default instance is not followed as well
    assert [(s.name, s.connection.control) for s in config.runs] == [
        ("a", eps[0]),
        ("5701", "tcp://127.0.0.1:5701"),
    ]
    assert parse_config(["--discover"], {}).runtime_dir == private_runtime_dir
    # An instance's connection file is in the runtime directory: --discover finds it, once.
    assert not parse_config(["--instance", "exp1", "--discover"], {}).primary
    assert parse_config(["--control", "ipc:///c", "--metrics", "ipc:///m", "--discover"], {}).primary


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run", "tcp://127.0.0.1:1"], "endpoints are CONTROL,METRICS"),
        (["--run", "/nonexistent.json"], "connection file /nonexistent.json does not exist"),
        (["--run", "a b=/x.json"], "run name 'a b'"),
        (
            [
                "--run",
                "x=tcp://127.0.0.1:1,tcp://127.0.0.1:2",
                "--run",
                "x=tcp://127.0.0.1:3,tcp://127.0.0.1:4",
            ],
            "two runs are named alike",
        ),
    ],
)
def test_a_bad_run_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, {})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("program", ["sidecar", "trainctl"])
@pytest.mark.parametrize("content", ["{not json", None])
def test_a_corrupt_or_absent_connection_file_is_one_line_exit_2(
    tmp_path: Path, private_runtime_dir: Path, program: str, content: str | None
) -> None:
    path = tmp_path / "c.json"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    command = [sys.executable, "-m", program, "--connection", str(path)]
    command += (
        ["--backend", "console", "--state-dir", str(tmp_path / "s")] if program == "sidecar" else ["status"]
    )
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "CHATTRAIN_RUNTIME_DIR": str(private_runtime_dir)},
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert str(path) in lines[0] and ("cannot read" in lines[0] or "does not exist" in lines[0])


def test_console_sidecar_follows_two_discovered_runs(private_runtime_dir: Path, tmp_path: Path) -> None:
    with endpoints() as first, endpoints() as second:
        fakes = {
            name: FakeTrainer(*eps, state="running", announce=False).start()
            for name, eps in (("a", first), ("b", second))
        }
        process = None
        try:
            for name, eps in (("a", first), ("b", second)):
                write_connection_file(private_runtime_dir, name, fakes[name], *eps)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sidecar",
                    "--backend",
                    "console",
                    "--discover",
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO_ROOT,
                env={**os.environ, "CHATTRAIN_RUNTIME_DIR": str(private_runtime_dir)},
            )
            assert process.stdin is not None and process.stdout is not None
            lines: list[str] = []

            def read_until(fragment: str) -> None:
                deadline = time.monotonic() + CLI_TIMEOUT_S
                while time.monotonic() < deadline and not any(fragment in line for line in lines):
                    line = process.stdout.readline()  # type: ignore[union-attr]
                    if not line:
                        break
                    lines.append(line)
                assert any(fragment in line for line in lines), lines

            read_until("[a] 🔗 Sidecar connected")
            read_until("[b] 🔗 Sidecar connected")
            for text in ("@a lr 0.01", "停止", "stop all"):
                process.stdin.write(text + "\n")
                process.stdin.flush()
            read_until("[a] OK: learning_rate = 0.01")
            read_until("请指定")
            read_until("[b] Stopping at step 0")
            process.stdin.close()  # EOF: the sidecar exits
            assert process.wait(CLI_TIMEOUT_S) == 0
            assert fakes["a"].params["learning_rate"] == 0.01 and fakes["b"].params["learning_rate"] == 0.001
            assert (fakes["a"].state, fakes["b"].state) == ("stopped", "stopped")
        finally:
            if process is not None and process.poll() is None:
                process.kill()
            for fake in fakes.values():
                fake.close()
