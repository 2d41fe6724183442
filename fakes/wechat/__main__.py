"""Run the fake web-WeChat server as a process: `python -m fakes.wechat --port N`.

Prints its URL on the first line of stdout (then flushes), so a test that starts it can
read where to point the sidecar (`itchat.config.BASE_URL`). Logs every text the client
sends. Ends on SIGINT/SIGTERM. `client.py` drives it (push texts, read what was sent).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from .server import LONG_POLL_S, FakeWeChatServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--manual-scan", action="store_true", help="never confirm a QR login")
    parser.add_argument("--no-echo", action="store_true", help="do not echo sent texts")
    parser.add_argument("--long-poll-s", type=float, default=LONG_POLL_S)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fakes.wechat %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = FakeWeChatServer(
        host=args.host,
        port=args.port,
        auto_scan=not args.manual_scan,
        echo_sent=not args.no_echo,
        long_poll_s=args.long_poll_s,
    )
    with server:
        print(server.url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
