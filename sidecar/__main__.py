"""`sidecar` / `python -m sidecar`: parse the configuration, set up logging, run.

The only place logging is configured. The WeChat backend (and with it itchat) and the iLink
backend are imported only when chosen.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from protocol import UnsafeDirectory
from sidecar.access import AccessPolicy
from sidecar.app import Sidecar
from sidecar.backend import ChatBackend
from sidecar.config import Config, parse_config
from sidecar.i18n import LanguagePreference

logger = logging.getLogger(__name__)

EXIT_USAGE = 2  # final: respawn does not retry it
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def make_ilink_backend(config: Config, access: AccessPolicy, language: LanguagePreference) -> ChatBackend:
    from sidecar.ilink import IlinkBackend
    from sidecar.ilink_api import DEFAULT_BASE_URL, DEFAULT_CDN_URL
    from sidecar.push import PushChannel
    from sidecar.window import ReplyWindows

    windows = ReplyWindows(config.state_dir, config.ilink_window_s, config.ilink_per_inbound)
    push = PushChannel(config.push_url, config.push_format) if config.push_url else None
    return IlinkBackend(
        config.state_dir,
        access=access,
        base_url=config.ilink_base_url or DEFAULT_BASE_URL,
        cdn_url=config.ilink_cdn_url or DEFAULT_CDN_URL,
        windows=windows,
        push=push,
        language=language,
    )


def make_backend(
    config: Config, access: AccessPolicy, language: LanguagePreference | None = None
) -> ChatBackend:
    if config.backend == "ilink":
        return make_ilink_backend(config, access, language or LanguagePreference(config.language))
    if config.backend == "console":
        from sidecar.console import ConsoleBackend

        return ConsoleBackend()
    from sidecar.wechat import WeChatBackend  # imports itchat: only when asked for

    return WeChatBackend(config.state_dir, base_url=config.wechat_base_url, access=access)


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # everything it writes (the chat session, cursor, plots) is the user's alone
    config = parse_config(argv, os.environ)
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT, stream=sys.stderr)
    # urllib3 logs request URLs at DEBUG: QR codes and webhook keys travel in them.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLogger().level))
    access = AccessPolicy(config.allow)  # one policy: the backend resolves it, the app applies it
    language = LanguagePreference(config.language)  # one preference: the app sets it, the backend reads it
    backend = make_backend(config, access, language)
    app = Sidecar(config, backend, access=access, language=language)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        app.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logger.info(
        "sidecar: runs %s%s, state %s, allow %s",
        ", ".join(f"{s.name} ({s.connection.control})" for s in config.sources()) or "none yet",
        f", and every connection file in {config.runtime_dir}" if config.runtime_dir else "",
        config.state_dir,
        list(config.allow) or "owner only",
    )
    try:
        return app.run()
    except UnsafeDirectory as exc:  # a configuration error: the supervisor must not retry it
        logger.error("%s", exc)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
