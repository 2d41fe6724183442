"""Modules that inject faults into the trainer process they are loaded in (``--module``).

``ControlServerKiller`` arms, once loaded, a fault in the process's control server: the next
``evaluate`` request ends the serving thread with ``SystemExit``, as a handler calling
``sys.exit()`` would. A test in another process can reach that thread no other way, so the module
finds the server among the live objects and replaces one handler.
"""

from __future__ import annotations

import gc
from typing import Any

from protocol import ControlServer
from tests.trainer.ct_test_modules import TinyModule

FAULT_OP = "evaluate"


def _end_the_thread(args: dict[str, Any]) -> dict[str, Any]:
    raise SystemExit("injected fault: a handler called sys.exit()")


def arm_fault(endpoint: str | None = None) -> None:
    """The next FAULT_OP request to this process's control server (the one on ``endpoint``) ends
    its serving thread."""
    servers = [item for item in gc.get_objects()
               if isinstance(item, ControlServer) and endpoint in (None, item.endpoint)]  # fmt: skip
    if len(servers) != 1:
        raise RuntimeError(f"expected one control server in the process, found {len(servers)}")
    servers[0]._handlers[FAULT_OP] = _end_the_thread


class ControlServerKiller(TinyModule):
    def setup(self) -> None:
        super().setup()
        arm_fault()
