"""The `sidecar` CLI: configuration from flags and environment, the console backend, and the
rule that no sidecar module imports TensorFlow."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

from sidecar.backend import OWNER_CHAT, IncomingText
from sidecar.config import parse_config
from sidecar.console import ConsoleBackend
from tests.fake_trainer import FakeTrainer
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
        trainer = FakeTrainer(control, metrics, announce=False).start()
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
