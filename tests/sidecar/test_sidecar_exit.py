"""How the sidecar ends: 0 when asked to stop; EXIT_FAILED, naming the cause, when its backend fails
or one of its threads dies, so that the supervisor restarts it rather than keep a silent sidecar
(or, exiting 0, end the supervisor and with it honcho and the trainer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.app import EXIT_FAILED, Sidecar
from sidecar.backend import MemoryBackend, MessageCallback, Priority
from tests.sidecar.harness import endpoints, make_config

WAIT_S = 30.0


def run_sidecar(backend: MemoryBackend, tmp_path: Path, act: Callable[[Sidecar], Any]) -> tuple[Sidecar, int]:
    """``Sidecar.run()`` in a thread (no trainer: nobody at the endpoints); ``act`` once the
    backend is ready; its exit code once it returns."""
    with endpoints() as eps:
        app = Sidecar(make_config(*eps, tmp_path / "state"), backend)
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.update(code=app.run()), name="sidecar-run")
        thread.start()
        try:
            assert backend.ready.wait(WAIT_S)
            act(app)
            thread.join(WAIT_S)
            assert not thread.is_alive(), "Sidecar.run() did not return"
        finally:
            backend.stop()
            thread.join(WAIT_S)
    return app, result["code"]


def test_a_requested_stop_exits_0(tmp_path: Path) -> None:
    app, code = run_sidecar(MemoryBackend(), tmp_path, lambda app: app.stop())
    assert (code, app.failure) == (0, None)


def test_a_dead_outbox_thread_ends_the_sidecar_with_exit_failed(tmp_path: Path) -> None:
    class SendEndsTheThread(MemoryBackend):
        """A send that ends the outbox thread (``except Exception`` does not stop SystemExit)."""

        def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
            raise SystemExit("injected: a send ended its thread")

    backend = SendEndsTheThread()
    app, code = run_sidecar(backend, tmp_path, lambda app: backend.push_message("help"))
    assert (code, app.failure) == (EXIT_FAILED, "the sidecar-outbox thread died")


def test_a_failed_backend_ends_the_sidecar_with_exit_failed(tmp_path: Path) -> None:
    fail = threading.Event()

    class FailingBackend(MemoryBackend):
        def run(self, on_message: MessageCallback) -> None:
            self.connect(on_message)
            fail.wait(WAIT_S)
            raise RuntimeError("the iLink receiver failed: OSError('disk full')")

    app, code = run_sidecar(FailingBackend(), tmp_path, lambda app: fail.set())
    assert code == EXIT_FAILED
    assert (
        app.failure
        == "the chat backend failed (RuntimeError: the iLink receiver failed: OSError('disk full'))"
    )
