"""The `sidecar` CLI: configuration from flags and environment, the console backend, and the
rule that no sidecar module imports TensorFlow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes.trainer import FakeTrainer
from protocol import server_curve
from sidecar.backend import OWNER_CHAT, IncomingText
from sidecar.config import parse_config
from sidecar.console import ConsoleBackend
from tests.sidecar.harness import endpoints

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 30


def test_no_sidecar_module_imports_tensorflow() -> None:
    code = (
        "import importlib, pkgutil, sys, sidecar\n"
        "names = [m.name for m in pkgutil.walk_packages(sidecar.__path__, 'sidecar.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print(len(names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) >= 15


def test_flags_win_over_environment(tmp_path: Path) -> None:
    environ = {
        "CHATTRAIN_CONTROL": "ipc:///env/c",
        "CHATTRAIN_METRICS": "ipc:///env/m",
        "CHATTRAIN_ALLOW": "Ally, Bob ",
        "CHATTRAIN_PROGRESS_INTERVAL": "30",
        "CHATTRAIN_BACKEND": "console",
    }
    config = parse_config(["--control", "tcp://127.0.0.1:5555"], environ)
    assert (config.control, config.metrics) == ("tcp://127.0.0.1:5555", "ipc:///env/m")
    assert config.allow == ("Ally", "Bob")
    assert config.progress_interval_s == 30.0
    assert config.backend == "console"
    config = parse_config(["--allow", "Carol", "--progress-interval", "5"], environ)
    assert config.allow == ("Carol",) and config.progress_interval_s == 5.0


def test_endpoints_come_from_a_connection_file(tmp_path: Path) -> None:
    path = tmp_path / "conn.json"
    path.write_text(
        json.dumps(
            {
                "control": "ipc:///f/c",
                "metrics": "ipc:///f/m",
                "run_id": "r",
                "session": "s",
                "protocol_version": 1,
            }
        )
    )
    config = parse_config(["--connection", str(path), "--state-dir", str(tmp_path)], {})
    assert (config.control, config.metrics) == ("ipc:///f/c", "ipc:///f/m")
    assert config.state_dir == tmp_path and config.backend == "wechat"


def test_console_backend_delivers_lines_as_owner_messages() -> None:
    received: list[IncomingText] = []
    output = io.StringIO()
    backend = ConsoleBackend(stdin=io.StringIO("status\n\nlr 0.01\n"), stdout=output)
    backend.run(received.append)  # returns at EOF
    assert [m.text for m in received] == ["status", "lr 0.01"]
    assert all(m.from_owner and m.chat_id == OWNER_CHAT for m in received)
    backend.send_text("hi")
    backend.send_image(Path("/x/plot.png"))
    assert output.getvalue() == "hi\n[image] /x/plot.png\n"


def test_the_console_prompts_and_redraws_the_prompt_after_each_message() -> None:
    output = io.StringIO()
    backend = ConsoleBackend(stdin=io.StringIO("status\n"), stdout=output, prompt=True)
    backend.run(lambda message: backend.send_text(f"reply to {message.text}"))
    backend.send_text("⏸ Paused at step 3")  # a notice while the owner may be typing
    assert output.getvalue() == ("chattrain> \rreply to status\nchattrain> \r⏸ Paused at step 3\nchattrain> ")


def test_console_sidecar_answers_commands_on_stdout(tmp_path: Path) -> None:
    with endpoints() as (control, metrics):
        runtime = Path(control.removeprefix("ipc://")).parent  # private: the instance's keys go there
        curve, _ = server_curve(runtime / "default.json")
        trainer = FakeTrainer(control, metrics, announce=False, curve=curve).start()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sidecar",
                    "--backend",
                    "console",
                    "--control",
                    control,
                    "--metrics",
                    metrics,
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO_ROOT,
                env={**os.environ, "CHATTRAIN_RUNTIME_DIR": str(runtime)},
            )
            assert process.stdin is not None and process.stdout is not None
            assert process.stdout.readline().startswith("🔗 Sidecar connected")
            process.stdin.write("开始\n")
            process.stdin.flush()
            deadline = time.monotonic() + CLI_TIMEOUT_S
            lines = []
            while time.monotonic() < deadline:
                lines.append(process.stdout.readline())
                if lines[-1].startswith("开始训练（第 0 步"):
                    break
            assert lines[-1].startswith("开始训练（第 0 步"), lines
            process.stdin.close()  # EOF: the sidecar exits
            assert process.wait(CLI_TIMEOUT_S) == 0
            assert trainer.state == "running"
        finally:
            if process.poll() is None:
                process.kill()
            trainer.close()


def test_a_state_dir_others_can_write_exits_2_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)  # another user could plant itchat.pkl there: unpickling it runs their code
    runtime = tmp_path / "rt"
    command = [sys.executable, "-m", "sidecar", "--backend", "console", "--state-dir", str(state)]
    environ = {**os.environ, "CHATTRAIN_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=environ,
                          cwd=REPO_ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "refusing state directory" in errors[0] and "0o777" in errors[0]


def test_a_runtime_dir_others_can_write_exits_2(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    runtime.chmod(0o777)
    command = [sys.executable, "-m", "sidecar", "--backend", "console", "--state-dir", str(tmp_path / "s")]
    environ = {**os.environ, "CHATTRAIN_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=environ,
                          cwd=REPO_ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2 and "refusing runtime directory" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"CHATTRAIN_PROGRESS_INTERVAL": "soon"}, "CHATTRAIN_PROGRESS_INTERVAL='soon': not a number"),
        (
            [],
            {"CHATTRAIN_REQUEST_TIMEOUT_MS": "0"},
            "--request-timeout-ms (CHATTRAIN_REQUEST_TIMEOUT_MS) must be >= 1",
        ),
        ([], {"CHATTRAIN_ILINK_PER_INBOUND": "ten"}, "CHATTRAIN_ILINK_PER_INBOUND='ten': not a whole number"),
        ([], {"CHATTRAIN_INSECURE_NO_CURVE": "yess"}, "CHATTRAIN_INSECURE_NO_CURVE='yess': expected one of"),
        (["--push-url", "ftp://x"], {}, "must be an http(s) URL"),
        (["--curve-secret-key", "/nonexistent.key_secret"], {}, "cannot read the CurveZMQ secret key"),
        (["--curve-server-key", "/nonexistent.key"], {}, "--curve-server-key needs --curve-secret-key"),
    ],
)
def test_configuration_errors_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], message: str
) -> None:
    environ = {"CHATTRAIN_RUNTIME_DIR": str(tmp_path / "rt"), **environ}
    with pytest.raises(SystemExit) as exit_info:
        parse_config([*argv, "--control", "ipc:///c", "--metrics", "ipc:///m"], environ)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]  # one line, naming where the value came from
