"""The sidecar over iLink: chat round trip against the fake iLink server, and its memory.

    .venv/bin/python bench/ilink_bench.py [--data PATH] [--messages 20] [--repeats 3]

Per repetition: the fake iLink server (fakes/ilink, HTTP on 127.0.0.1, in this process), an
idle trainer (``python -m trainer``, not started) and the real ``python -m sidecar --backend
ilink --ilink-base-url URL``, each its own process. Start-up: spawn -> ``sidecar ready`` (QR
login confirmed by the fake server on its third status poll, ~1 s apart). Round trip: the
owner's ``status`` queued in the fake server -> the sidecar's ``State:`` reply accepted by its
sendmessage (long-poll getupdates, the command, a control request to the trainer, sendmessage
with the context token). Memory: VmRSS after ready and after the messages, VmHWM (peak).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import sidecar_bench  # noqa: E402
from bench.harness import DEFAULT_DATA, TrainerProcess, percentiles, rss_kib, scratch_dir  # noqa: E402
from bench.sidecar_bench import REPLY_PREFIX, REPLY_TIMEOUT_S, SidecarProcess  # noqa: E402
from fakes.ilink import OWNER, FakeIlinkServer  # noqa: E402


def _round_trip(fake: FakeIlinkServer, text: str) -> float:
    before = len(fake.texts())
    began = time.perf_counter()
    fake.push(OWNER, text)
    fake.wait_until(lambda s: any(t.startswith(REPLY_PREFIX) for t in s.texts()[before:]), REPLY_TIMEOUT_S)
    return time.perf_counter() - began


def run_once(data: str, messages: int) -> dict[str, Any]:
    with scratch_dir("cti-") as work, FakeIlinkServer() as fake:
        fake.hold_s = 30.0  # a long poll that holds like the real one (~35 s)
        trainer = TrainerProcess(work, data).start()
        sidecar: SidecarProcess | None = None
        try:
            sidecar = SidecarProcess(
                [
                    "--backend", "ilink", "--ilink-base-url", fake.url, "--ilink-cdn-url", fake.cdn_url,
                    "--control", trainer.control, "--metrics", trainer.metrics,
                    "--connection", str(trainer.connection_file),  # its CurveZMQ keys
                    "--state-dir", str(work / "sidecar"), "--log-level", "INFO",
                ]
            )  # fmt: skip
            startup_s = sidecar.wait_ready()
            rss_ready = rss_kib(sidecar.process.pid)
            _round_trip(fake, "status")  # warm-up: first contact, the held 'connected' summary
            samples = [_round_trip(fake, "status") for _ in range(messages)]
            rss_after = rss_kib(sidecar.process.pid)
        finally:
            if sidecar is not None:
                sidecar.close()
            trainer.close()
    return {
        "startup_to_ready_s": startup_s,
        "rss_ready_mib": rss_ready.get("VmRSS", 0) / 1024,
        "rss_after_messages_mib": rss_after.get("VmRSS", 0) / 1024,
        "peak_rss_mib": rss_after.get("VmHWM", 0) / 1024,
        "round_trip_ms": percentiles(samples, 1e3),
        "bad_requests": len(fake.bad_requests),
    }


def run(data: str = str(DEFAULT_DATA), messages: int = 20, repeats: int = 3) -> dict[str, Any]:
    return sidecar_bench.run(data, messages, repeats, once=run_once)


if __name__ == "__main__":
    sidecar_bench.main(run_once, __doc__)
