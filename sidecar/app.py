"""The sidecar: a chat backend, the command router and the runs' feeds, wired together.

Threads: the backend's receive thread calls `on_message` (access check, route, parse, command,
reply queued); each run's feed thread owns its Subscriber and its own ControlClient; the outbox
thread does all sending; the runs thread sends combined progress and (with --discover) picks up
new runs. A run's message-path ControlClient is used by the receive thread only (and is behind
its TrainerLink's lock in case a backend ever calls from more than one thread).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from protocol import UnsafeDirectory, check_private_dir
from protocol.serving import guarded_thread
from sidecar import render_runs
from sidecar.access import AccessPolicy
from sidecar.backend import ChatBackend, IncomingText, Priority
from sidecar.commands import Reply
from sidecar.config import Config
from sidecar.cursor import CursorStore
from sidecar.dispatch import INTERNAL_ERROR_TEXT
from sidecar.feed import FeedHandler
from sidecar.i18n import LanguagePreference
from sidecar.link import Request
from sidecar.outbox import Outbox
from sidecar.routing import Router
from sidecar.runs import RESCAN_INTERVAL_S, Run, RunSet, RunSource, discover
from sidecar.series import MetricSeries
from sidecar.throttle import Clock, Combiner

logger = logging.getLogger(__name__)

FEED_REQUEST_TIMEOUT_MS = 1000
FEED_REQUEST_RETRIES = 1
EXIT_FAILED = 4  # not final: the supervisor starts a sidecar whose threads all work
SCAN_POLL_S = 0.2  # how often combined progress is looked at (and the rescan clock)


class Sidecar:
    """Run with `run()` (blocks in the backend) or `start()` + the backend's callback in tests."""

    def __init__(
        self,
        config: Config,
        backend: ChatBackend,
        *,
        clock: Clock = time.monotonic,
        access: AccessPolicy | None = None,
        language: LanguagePreference | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.outbox = Outbox(backend, on_death=self._thread_died)
        # Why the sidecar ends on a failure (a thread died, the backend failed); None: it was asked to.
        self.failure: str | None = None
        self.access = access or AccessPolicy(config.allow)  # the backend resolves it at login
        self._clock = clock
        self.language = language or LanguagePreference(config.language)  # shared with the backend
        self._client_options: dict[str, Any] = {
            "timeout_ms": config.request_timeout_ms,
            "retries": config.request_retries,
        }
        self._feed_options: dict[str, Any] = {
            "timeout_ms": min(config.request_timeout_ms, FEED_REQUEST_TIMEOUT_MS),
            "retries": FEED_REQUEST_RETRIES,
        }
        # Progress of several runs in one message per interval (one run: sent as it comes).
        self._combiner = Combiner(config.progress_interval_s, clock)
        self._combiner_lock = threading.Lock()
        self.runs = RunSet(self._make_run)
        self.runs.add(config.sources(), start=False)
        where = str(config.runtime_dir) if config.runtime_dir else "--run"
        self.router = Router(self.runs, self.language, where=where)
        self._stopping = threading.Event()
        scan = guarded_thread("sidecar-runs", self._scan, self._stopping, self._thread_died)
        self._scanner = threading.Thread(target=scan, name="sidecar-runs", daemon=True)
        self._unreadable_said: set[Path] = set()  # connection files already said to be unreadable

    @property
    def series(self) -> MetricSeries | None:
        """The first run's metric series (the only one's, with one run)."""
        runs = self.runs.all()
        return runs[0].series if runs else None

    def _make_run(self, source: RunSource) -> Run:
        return Run(
            source,
            self.config.state_dir,
            language=self.language,
            client_options=self._client_options,
            feed_options=self._feed_options,
            make_handler=self._feed_handler,
            on_death=self._thread_died,
        )

    def _feed_handler(self, run: Run, request: Request) -> FeedHandler:
        return FeedHandler(
            lambda text, priority: self._notify_from(run, text, priority),
            request,
            catalog=run.catalog,
            series=run.series,
            cursors=CursorStore(run.state_dir),
            progress_interval_s=self.config.progress_interval_s,
            clock=self._clock,
            language=self.language.current,
            own_changes=run.own_changes,
        )

    def _notify_from(self, run: Run, text: str, priority: Priority) -> None:
        """A run's feed message: as it is with one run; named (progress combined) with several."""
        if not self.runs.several():
            self._notify(text, priority)
            return
        if priority == Priority.PROGRESS:
            with self._combiner_lock:
                due = self._combiner.offer(run.name, text)
            self._send_progress(due)
            return
        if priority == Priority.ALERT:  # a final message carries the run's last progress
            with self._combiner_lock:
                self._combiner.discard(run.name)
        self._notify(render_runs.named(run.name, text), priority)

    def _send_progress(self, lines: dict[str, str]) -> None:
        if lines:
            self._notify(render_runs.combined(lines), Priority.PROGRESS)

    def _scan(self) -> None:
        """Due combined progress, and (with --discover) runs started since the last look."""
        next_scan = time.monotonic() + RESCAN_INTERVAL_S
        while not self._stopping.wait(SCAN_POLL_S):
            with self._combiner_lock:
                due = self._combiner.due()
            self._send_progress(due)
            if self.config.runtime_dir is not None and time.monotonic() >= next_scan:
                next_scan = time.monotonic() + RESCAN_INTERVAL_S
                self._discover(start=True)

    def _discover(self, *, start: bool) -> None:
        if self.config.runtime_dir is None:
            return
        try:
            found, unreadable = discover(
                self.config.runtime_dir, insecure_no_curve=self.config.insecure_no_curve
            )
            self.runs.add(found, start=start)
            for bad in unreadable:
                if bad.path not in self._unreadable_said:  # said once, not at every rescan
                    logger.warning("run %s cannot be followed: %s: %s", bad.name, bad.path, bad.error)
                    self._unreadable_said.add(bad.path)
        except Exception:
            logger.exception("looking for runs failed; trying again")

    def _notify(self, text: str, priority: Priority) -> None:
        """The feed's messages to the owner's chat: unsolicited, so never REPLY."""
        self.outbox.text(text, priority=priority)

    def start(self) -> None:
        """Start the outbox and feed threads (not the backend)."""
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The state dir holds the chat session (a pickle: code) and what we send: ours alone.
        check_private_dir(self.config.state_dir, "state directory")
        self.outbox.start()
        self._discover(start=False)
        for run in self.runs.all():
            run.start()
        self._scanner.start()

    def run(self) -> int:
        """Start, then run the backend until it stops; always closes. The exit code: 0 when it
        stopped as asked (a signal, the console's end of input), EXIT_FAILED when the backend or a
        sidecar thread failed (``failure`` says which)."""
        self.start()
        threading.Thread(target=self._log_ready, name="sidecar-ready", daemon=True).start()
        try:
            self.backend.run(self.on_message)
        except UnsafeDirectory:
            raise  # a configuration error: exit 2, not a restart
        except Exception as exc:
            logger.critical("the chat backend failed", exc_info=True)
            self.failure = f"the chat backend failed ({type(exc).__name__}: {str(exc)[:200]})"
        finally:
            self.close()
        if self.failure is None:
            return 0
        logger.critical(
            "%s: exiting %d so that the supervisor restarts the sidecar", self.failure, EXIT_FAILED
        )
        return EXIT_FAILED

    def stop(self) -> None:
        self.backend.stop()

    def _thread_died(self, name: str, exc: BaseException | None) -> None:
        """A sidecar without its outbox, feed or scanner looks alive and says nothing: end it, so
        that the process exits for a restart (protocol.serving logged the cause)."""
        if self.failure is None:
            self.failure = f"the {name} thread died"
        self.backend.stop()

    def close(self) -> None:
        self._stopping.set()
        if self._scanner.is_alive():
            self._scanner.join(5.0)
        self.runs.close()
        self.outbox.close()

    def on_message(self, message: IncomingText) -> None:
        """The backend's callback: never raises (a failure is logged and answered)."""
        # Our own messages echoed back by web WeChat never get here: the backend that sees the
        # echo (sidecar.wechat, by message id and chat) drops it, once, where it knows which it is.
        role = self.access.check(message)
        if role is None:
            return
        try:
            reply = self.router.handle(
                message.text, lambda spec: self.access.may_run(role, spec.op), sender=message.sender_id
            )
        except Exception:
            logger.exception("handling %r failed", message.text[:80])
            reply = Reply(INTERNAL_ERROR_TEXT)
        if reply is None:
            logger.debug("chatter from %s ignored", message.sender_id)
            return
        if reply.image is not None:
            self.outbox.image(reply.image, to=message.chat_id)
        if reply.text:
            self.outbox.text(reply.text, to=message.chat_id)

    def _log_ready(self) -> None:
        started = time.monotonic()
        self.backend.ready.wait()
        logger.info(
            "sidecar ready (%s backend) after %.2f s", self.config.backend, time.monotonic() - started
        )
