"""The sidecar as users run it: resident memory, start-up time to ready, and the chat round trip.

    .venv/bin/python bench/sidecar_bench.py [--data PATH] [--messages 20] [--repeats 3]

Per repetition: a fake web-WeChat server (``python -m fakes.wechat``), an idle trainer
(``python -m trainer``, not started) and the real ``python -m sidecar --backend wechat
--wechat-base-url URL`` on its endpoints, each its own process. Start-up: from spawning the
sidecar to its ``sidecar ready`` log line (itchat logged in to the fake server). Round trip: the
owner's ``status`` pushed into the fake server -> the sidecar's reply recorded there as sent to
``filehelper`` (itchat's synccheck/webwxsync, the command, a control request to the trainer, the
reply through webwxsendmsg). Memory: VmRSS after ready and after the messages, VmHWM (peak).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    DEFAULT_DATA,
    REPO,
    TrainerProcess,
    percentiles,
    python_env,
    rss_kib,
    scratch_dir,
    summary,
)
from fakes.wechat.client import FakeWeChatClient  # noqa: E402

READY_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 20.0
READY_MARK = "sidecar ready"
CONNECTED_MARK = "connected to the trainer"
REPLY_PREFIX = "State:"  # the status reply; unsolicited notices start otherwise


class FakeWeChat(FakeWeChatClient):
    """``python -m fakes.wechat`` as a child, its log discarded (it logs every sent text)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fakes.wechat"],
            cwd=REPO,
            env=python_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        url = self.process.stdout.readline().strip()
        if not url.startswith("http://"):
            self.close()
            raise RuntimeError(f"fake WeChat server did not start: first line {url!r}")
        super().__init__(url)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(15)

    def __enter__(self) -> FakeWeChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SidecarProcess:
    """``python -m sidecar`` with its stderr watched for the ready line."""

    def __init__(self, argv: list[str]) -> None:
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *argv],
            cwd=REPO,
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready_at: float | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if READY_MARK in line and not self._ready.is_set():
                self.ready_at = time.monotonic()
                self._ready.set()

    def wait_ready(self) -> float:
        if not self._ready.wait(READY_TIMEOUT_S):
            tail = "\n".join(self.lines[-15:])
            raise TimeoutError(f"sidecar not ready within {READY_TIMEOUT_S} s:\n{tail}")
        assert self.ready_at is not None
        return self.ready_at - self.spawned

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _is_reply(sent: dict[str, Any]) -> bool:
    return bool(sent["to_user"] == "filehelper" and sent["text"].startswith(REPLY_PREFIX))


def _round_trip(fake: FakeWeChatClient, text: str) -> float:
    before = len(fake.state()["sent_texts"])
    began = time.perf_counter()
    fake.push_text("owner", "filehelper", text)
    fake.wait_for_sent(_is_reply, timeout_s=REPLY_TIMEOUT_S, after=before)
    return time.perf_counter() - began


def _settle(fake: FakeWeChatClient, connection: Any) -> None:
    """Wait until the trainer is loaded and the sidecar has told the chat it is connected."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with connection.control_client(timeout_ms=2000) as client:
        while client.status()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(AssertionError):
        fake.wait_for_sent(lambda t: CONNECTED_MARK in t["text"], timeout_s=10)


def run_once(data: str, messages: int) -> dict[str, Any]:
    with scratch_dir("cts-") as work, FakeWeChat() as fake:
        trainer = TrainerProcess(work, data).start()
        sidecar: SidecarProcess | None = None
        try:
            sidecar = SidecarProcess(
                [
                    "--backend", "wechat", "--wechat-base-url", fake.url,
                    "--control", trainer.control, "--metrics", trainer.metrics,
                    "--connection", str(trainer.connection_file),  # its CurveZMQ keys
                    "--state-dir", str(work / "sidecar"), "--log-level", "INFO",
                ]
            )  # fmt: skip
            startup_s = sidecar.wait_ready()
            rss_ready = rss_kib(sidecar.process.pid)
            _settle(fake, trainer.connection())
            _round_trip(fake, "status")  # warm-up: first contact, imports on first use
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
    }


RunOnce = Callable[[str, int], dict[str, Any]]


def run(
    data: str = str(DEFAULT_DATA), messages: int = 20, repeats: int = 3, *, once: RunOnce | None = None
) -> dict[str, Any]:
    """`repeats` runs of `once` (this file's itchat run by default; bench/ilink_bench.py passes its own)."""
    runs = [(once or run_once)(data, messages) for _ in range(repeats)]
    keys = ("startup_to_ready_s", "rss_ready_mib", "rss_after_messages_mib", "peak_rss_mib")
    figures: dict[str, Any] = {key: summary([r[key] for r in runs]) for key in keys}
    figures["round_trip_ms"] = {q: summary([r["round_trip_ms"][q] for r in runs]) for q in ("p50", "p99")}
    figures.update({"messages_per_run": messages, "repeats": repeats, "runs": runs})
    return figures


def main(once: RunOnce | None = None, description: str | None = __doc__) -> None:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.data, args.messages, args.repeats, once=once), indent=2))


if __name__ == "__main__":
    main()
