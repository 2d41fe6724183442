"""The protocol package stays light: clients (the sidecar, trainctl) must never load TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_protocol_never_imports_tensorflow() -> None:
    code = (
        "import sys\n"
        "import protocol, protocol.client, protocol.server, protocol.subscriber, protocol.publisher\n"
        "heavy = ('tensorflow', 'keras', 'numpy')\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in heavy)\n"
        "print(loaded)\n"
        "assert 'tensorflow' not in sys.modules, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_protocol_imports_only_stdlib_zmq_and_msgpack() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import protocol\n"
        "roots = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "third = sorted(r for r in roots if r not in sys.stdlib_module_names and not r.startswith('_'))\n"
        "import json; print(json.dumps(third))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    # cython_runtime is a module that Cython extensions (msgpack's, pyzmq's) register themselves
    assert set(json.loads(result.stdout)) <= {"protocol", "zmq", "msgpack", "cython_runtime"}
