"""The sidecar as users run it: start-up time to ready, resident memory, and the chat round trip.

Per repetition, each its own process: a fake chat server (``fakes.wechat``; or ``fakes.ilink``, in
this process, with a long poll held like the real one), an idle ``python -m trainer`` and the real
``python -m sidecar --backend wechat|ilink`` on its endpoints. Start-up: spawn to the ``sidecar
ready`` log line. Round trip: the owner's ``status`` pushed into the fake server to the ``State:``
reply recorded there as sent. Memory: VmRSS after ready and after the messages, VmHWM (peak).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.harness import (
    START_TIMEOUT_S,
    percentiles,
    rss_kib,
    summaries,
    trainer_process,
)
from fakes.processes import REPO, TrainerProcess, python_env, scratch_dir
from fakes.processes import stop as stop_process

REPLY_TIMEOUT_S = 20.0
REPLY_PREFIX = "State:"  # the status reply; unsolicited notices start otherwise
ILINK_HOLD_S = 30.0  # the real getupdates holds ~35 s
MEMORY_AND_STARTUP = ("startup_to_ready_s", "rss_ready_mib", "rss_after_messages_mib", "peak_rss_mib")
Chat = tuple[list[str], Callable[[str], float], Callable[[], None], Callable[[], dict[str, Any]]]


@contextlib.contextmanager
def wechat(trainer: TrainerProcess) -> Iterator[Chat]:
    """The fake web WeChat: the sidecar's flags, one timed round trip, a settle step before timing,
    and figures of its own once the messages are done."""
    from fakes.wechat import FakeWeChatProcess

    with FakeWeChatProcess(stderr=subprocess.DEVNULL) as fake:

        def round_trip(text: str) -> float:
            before, began = len(fake.state()["sent_texts"]), time.perf_counter()
            fake.push_text("owner", "filehelper", text)
            is_reply = lambda sent: sent["to_user"] == "filehelper" and sent["text"].startswith(REPLY_PREFIX)  # noqa: E731
            fake.wait_for_sent(is_reply, timeout_s=REPLY_TIMEOUT_S, after=before)
            return time.perf_counter() - began

        def settle() -> None:
            """Until the trainer is loaded and the sidecar has told the chat it is connected."""
            deadline = time.monotonic() + START_TIMEOUT_S
            with trainer.connection.control_client(timeout_ms=2000) as client:
                while client.status()["state"] == "loading" and time.monotonic() < deadline:
                    time.sleep(0.1)
            with contextlib.suppress(AssertionError):
                fake.wait_for_sent(lambda t: "connected to the trainer" in t["text"], timeout_s=10)

        yield ["--backend", "wechat", "--wechat-base-url", fake.url], round_trip, settle, dict


@contextlib.contextmanager
def ilink(trainer: TrainerProcess) -> Iterator[Chat]:
    """The fake iLink server, as ``wechat``; the requests it found wrong end up in the figures."""
    from fakes.ilink import OWNER, FakeIlinkServer

    with FakeIlinkServer() as fake:
        fake.hold_s = ILINK_HOLD_S

        def round_trip(text: str) -> float:
            before, began = len(fake.texts()), time.perf_counter()
            fake.push(OWNER, text)
            fake.wait_until(
                lambda s: any(t.startswith(REPLY_PREFIX) for t in s.texts()[before:]), REPLY_TIMEOUT_S
            )
            return time.perf_counter() - began

        flags = ["--backend", "ilink", "--ilink-base-url", fake.url, "--ilink-cdn-url", fake.cdn_url]
        yield flags, round_trip, lambda: None, lambda: {"bad_requests": len(fake.bad_requests)}


def start_sidecar(argv: list[str]) -> tuple[subprocess.Popen[str], float]:
    """``python -m sidecar ARGV`` and the seconds from its spawn to its ``sidecar ready`` line."""
    spawned, lines, ready_s, ready = time.monotonic(), [], [], threading.Event()
    process = subprocess.Popen([sys.executable, "-m", "sidecar", *argv], cwd=REPO, env=python_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def watch() -> None:
        for line in process.stderr or ():
            lines.append(line.rstrip())
            if "sidecar ready" in line and not ready_s:
                ready_s.append(time.monotonic() - spawned)
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    if not ready.wait(START_TIMEOUT_S):
        stop_process(process)
        raise TimeoutError(f"sidecar not ready within {START_TIMEOUT_S} s:\n" + "\n".join(lines[-15:]))
    return process, ready_s[0]


def run_once(backend: str, data: str, messages: int) -> dict[str, Any]:
    with scratch_dir("cts-") as work, trainer_process(work, data) as trainer:
        trainer.start()
        with {"wechat": wechat, "ilink": ilink}[backend](trainer) as (flags, round_trip, settle, extra):
            sidecar, startup_s = start_sidecar([
                *flags, "--control", trainer.control, "--metrics", trainer.metrics,
                "--connection", str(trainer.connection_file),  # its CurveZMQ keys
                "--state-dir", str(work / "sidecar"), "--log-level", "INFO",
            ])  # fmt: skip
            try:
                rss_ready = rss_kib(sidecar.pid)
                settle()
                round_trip("status")  # warm-up: first contact, imports on first use
                samples = [round_trip("status") for _ in range(messages)]
                rss_after = rss_kib(sidecar.pid)
            finally:
                stop_process(sidecar)
            figures = extra()
    return {
        "startup_to_ready_s": startup_s, "rss_ready_mib": rss_ready.get("VmRSS", 0) / 1024,
        "rss_after_messages_mib": rss_after.get("VmRSS", 0) / 1024,
        "peak_rss_mib": rss_after.get("VmHWM", 0) / 1024,
        "round_trip_ms": percentiles(samples, 1e3), **figures,
    }  # fmt: skip


def run(backend: str, data: str, messages: int, repeats: int) -> dict[str, Any]:
    runs = [run_once(backend, data, messages) for _ in range(repeats)]
    figures = summaries(runs, MEMORY_AND_STARTUP)
    figures["round_trip_ms"] = summaries([r["round_trip_ms"] for r in runs], ("p50", "p99"))
    return {**figures, "backend": backend, "messages_per_run": messages, "repeats": repeats, "runs": runs}
