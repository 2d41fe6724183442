"""Running an IlinkBackend against the fake iLink server, for the iLink tests."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.ilink import VERIFY_CODE, FakeIlinkServer
from sidecar.ilink import IlinkBackend
from tests.sidecar.conftest import Inbox

READY_TIMEOUT_S = 10.0


class RunningIlink:
    """An IlinkBackend in its own thread with its inbox, QR output and prompts asked."""

    def __init__(
        self, backend: IlinkBackend, qr_output: io.StringIO, prompts: list[str], prompted_at: list[float]
    ) -> None:
        self.backend = backend
        self.inbox = Inbox()
        self.qr_output = qr_output
        self.prompts = prompts
        self.prompted_at = prompted_at  # time.monotonic() of each prompt, taken as it was asked
        self.error: BaseException | None = None  # what run() raised, if it did
        self.thread = threading.Thread(target=self._run, name="ilink-run")

    def _run(self) -> None:
        try:
            self.backend.run(self.inbox)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.backend.stop()
        self.thread.join(READY_TIMEOUT_S)
        assert not self.thread.is_alive(), "IlinkBackend.run() did not return after stop()"


@contextmanager
def running_ilink(
    server: FakeIlinkServer,
    state_dir: Path,
    *,
    wait_ready: bool = True,
    code: str = VERIFY_CODE,
    **options: Any,
) -> Iterator[RunningIlink]:
    qr_output = io.StringIO()
    prompts: list[str] = []
    prompted_at: list[float] = []

    def prompt(question: str) -> str:
        prompted_at.append(time.monotonic())
        prompts.append(question)
        return code

    options.setdefault("qr_poll_interval_s", 0.01)
    options.setdefault("backoff_s", (0.05,))
    backend = IlinkBackend(
        state_dir, base_url=server.url, cdn_url=server.cdn_url, qr_stream=qr_output, prompt=prompt, **options
    )
    running = RunningIlink(backend, qr_output, prompts, prompted_at)
    running.thread.start()
    try:
        if wait_ready:
            assert backend.ready.wait(READY_TIMEOUT_S), "iLink backend did not log in"
        yield running
    finally:
        running.stop()
