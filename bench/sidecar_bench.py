"""The sidecar as users run it: resident memory, start-up time to ready, and the chat round trip.

    python -m bench sidecar [--sidecar-messages 20] [--repeats 3]     (web WeChat, through itchat)
    python -m bench ilink [--sidecar-messages 20] [--repeats 3]       (the iLink bot API)

Per repetition: a fake chat server (``fakes.wechat`` as its own process; ``fakes.ilink`` in this
process, HTTP on 127.0.0.1, with a long poll that holds like the real one), an idle trainer
(``python -m trainer``, not started) and the real ``python -m sidecar --backend wechat|ilink`` on
its endpoints, each its own process. Start-up: from spawning the sidecar to its ``sidecar ready``
log line (logged in to the fake server; iLink's QR login is confirmed on the third status poll,
~1 s apart). Round trip: the owner's ``status`` pushed into the fake server -> the sidecar's
``State:`` reply recorded there as sent (the backend's receive path, the command, a control
request to the trainer, the reply through the backend's send). Memory: VmRSS after ready and
after the messages, VmHWM (peak).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.harness import START_TIMEOUT_S, percentiles, rss_kib, scratch_dir, summaries
from bench.processes import SidecarProcess, TrainerProcess

REPLY_TIMEOUT_S = 20.0
CONNECTED_MARK = "connected to the trainer"
REPLY_PREFIX = "State:"  # the status reply; unsolicited notices start otherwise
ILINK_HOLD_S = 30.0  # the real getupdates holds ~35 s
RoundTrip = Callable[[str], float]


@dataclass(frozen=True)
class Chat:
    """A fake chat server as the benchmark uses it: the sidecar's flags for it, one timed round
    trip, a settle step before timing, and figures of its own once the messages are done."""

    flags: list[str]
    round_trip: RoundTrip
    settle: Callable[[], None] = lambda: None
    extra: Callable[[], dict[str, Any]] = dict


@contextlib.contextmanager
def wechat(trainer: TrainerProcess) -> Iterator[Chat]:
    """The fake web WeChat: the sidecar's flags, a round trip, and a settle step before timing."""
    from fakes.wechat import FakeWeChatProcess

    with FakeWeChatProcess(stderr=subprocess.DEVNULL) as fake:

        def is_reply(sent: dict[str, Any]) -> bool:
            return bool(sent["to_user"] == "filehelper" and sent["text"].startswith(REPLY_PREFIX))

        def round_trip(text: str) -> float:
            before = len(fake.state()["sent_texts"])
            began = time.perf_counter()
            fake.push_text("owner", "filehelper", text)
            fake.wait_for_sent(is_reply, timeout_s=REPLY_TIMEOUT_S, after=before)
            return time.perf_counter() - began

        def settle() -> None:
            """Until the trainer is loaded and the sidecar has told the chat it is connected."""
            deadline = time.monotonic() + START_TIMEOUT_S
            with trainer.connection().control_client(timeout_ms=2000) as client:
                while client.status()["state"] == "loading" and time.monotonic() < deadline:
                    time.sleep(0.1)
            with contextlib.suppress(AssertionError):
                fake.wait_for_sent(lambda t: CONNECTED_MARK in t["text"], timeout_s=10)

        yield Chat(["--backend", "wechat", "--wechat-base-url", fake.url], round_trip, settle)


@contextlib.contextmanager
def ilink(trainer: TrainerProcess) -> Iterator[Chat]:
    """The fake iLink server, as ``wechat``; the requests it found wrong end up in the figures."""
    from fakes.ilink import OWNER, FakeIlinkServer

    with FakeIlinkServer() as fake:
        fake.hold_s = ILINK_HOLD_S

        def round_trip(text: str) -> float:
            before = len(fake.texts())
            began = time.perf_counter()
            fake.push(OWNER, text)
            fake.wait_until(
                lambda s: any(t.startswith(REPLY_PREFIX) for t in s.texts()[before:]), REPLY_TIMEOUT_S
            )
            return time.perf_counter() - began

        flags = ["--backend", "ilink", "--ilink-base-url", fake.url, "--ilink-cdn-url", fake.cdn_url]
        yield Chat(flags, round_trip, extra=lambda: {"bad_requests": len(fake.bad_requests)})


BACKENDS = {"wechat": wechat, "ilink": ilink}


def run_once(backend: str, data: str, messages: int) -> dict[str, Any]:
    with scratch_dir("cts-") as work, TrainerProcess(work, data) as trainer:
        trainer.start()
        with BACKENDS[backend](trainer) as chat:
            sidecar = SidecarProcess(
                [
                    *chat.flags, "--control", trainer.control, "--metrics", trainer.metrics,
                    "--connection", str(trainer.connection_file),  # its CurveZMQ keys
                    "--state-dir", str(work / "sidecar"), "--log-level", "INFO",
                ]
            )  # fmt: skip
            try:
                startup_s = sidecar.wait_ready()
                rss_ready = rss_kib(sidecar.process.pid)
                chat.settle()
                chat.round_trip("status")  # warm-up: first contact, imports on first use
                samples = [chat.round_trip("status") for _ in range(messages)]
                rss_after = rss_kib(sidecar.process.pid)
            finally:
                sidecar.close()
            extra = chat.extra()
    return {
        "startup_to_ready_s": startup_s,
        "rss_ready_mib": rss_ready.get("VmRSS", 0) / 1024,
        "rss_after_messages_mib": rss_after.get("VmRSS", 0) / 1024,
        "peak_rss_mib": rss_after.get("VmHWM", 0) / 1024,
        "round_trip_ms": percentiles(samples, 1e3),
        **extra,
    }


def run(backend: str, data: str, messages: int, repeats: int) -> dict[str, Any]:
    runs = [run_once(backend, data, messages) for _ in range(repeats)]
    keys = ("startup_to_ready_s", "rss_ready_mib", "rss_after_messages_mib", "peak_rss_mib")
    figures: dict[str, Any] = summaries(runs, keys)
    figures["round_trip_ms"] = summaries([r["round_trip_ms"] for r in runs], ("p50", "p99"))
    figures.update({"backend": backend, "messages_per_run": messages, "repeats": repeats, "runs": runs})
    return figures
