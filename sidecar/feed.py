"""From the trainer's metrics feed to the owner's chat.

`FeedHandler` turns the protocol Subscriber's FeedEvents into notifications: events as they come
(param_changed coalesced, bursts capped), progress throttled to one message per interval with the
latest values winning, one 'trainer down' and one 'trainer back' per outage (down only when the
connection closed, never for a busy trainer: that is 'not responding', after a long silence), one
catch-up summary when the sidecar (re)starts. After a restart, 'back' waits until the new process
has loaded, so it can say at which step it resumed and how many steps are redone. It persists the
cursor (session, seq) it has told the owner about, so a restarted sidecar never re-sends old events
as new. `FeedThread` owns the sockets: its own ControlClient and the Subscriber, in one thread.

Order per poll: handle each FeedEvent, then `tick()` (due progress, due parameter changes, the 'N
events not shown' note, a lazy cursor save).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from protocol import (
    Connection,
    Data,
    Gap,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    Subscriber,
    TrainerBack,
    TrainerDown,
    TrainerUnavailable,
    Unstalled,
)
from protocol.serving import ThreadDeath, guarded_thread
from sidecar import render
from sidecar.backend import Priority
from sidecar.cursor import Cursor, CursorStore
from sidecar.i18n import EN, tr
from sidecar.link import Catalog, OwnChanges, Request, fetch_history
from sidecar.series import MetricSeries
from sidecar.throttle import Clock, EventLimiter, Throttle

logger = logging.getLogger(__name__)

PARAM_COALESCE_S = 2.0
EVENT_BURST = 10
EVENT_WINDOW_S = 60.0
CURSOR_SAVE_INTERVAL_S = 2.0
BACKFILL_SEQ = 5000
POLL_TIMEOUT_MS = 200
TERMINAL_EVENTS = frozenset({"finished", "failed", "stopped"})
ALERT_EVENTS = frozenset({"checkpoint_failed"})  # not the end of a run, but work a crash would lose
# A restarted trainer that is still loading after this long gets a 'back, still loading' note.
BACK_LOADING_NOTE_S = 60.0
Notify = Callable[[str, Priority], None]


class FeedHandler:
    """The feed's decisions; no sockets (requests go through `request`)."""

    def __init__(
        self,
        notify: Notify,
        request: Request,
        *,
        catalog: Catalog,
        series: MetricSeries,
        cursors: CursorStore,
        progress_interval_s: float,
        clock: Clock = time.monotonic,
        language: Callable[[], str] = lambda: EN,
        own_changes: OwnChanges | None = None,
    ) -> None:
        self._notify = notify
        self._lang = language
        self._own_changes = own_changes or OwnChanges(clock)
        self._request = request
        self._catalog = catalog
        self._series = series
        self._cursors = cursors
        self._clock = clock
        self._progress: Throttle[dict[str, Any]] = Throttle(progress_interval_s, clock)
        self._limiter = EventLimiter(EVENT_BURST, EVENT_WINDOW_S, clock)
        self._params: list[dict[str, Any]] = []
        self._params_since = 0.0
        self._cursor: Cursor | None = None
        self._cursor_saved_at = clock()
        self._synced = False
        self._down = False
        self._last_step: int | None = None  # the furthest step this session was seen at
        self._checkpoint_step: int | None = None
        # A restart whose 'back' waits for the new process to load: (old step, since, noted).
        self._pending_back: tuple[int | None, float, bool] | None = None

    @property
    def down(self) -> bool:
        """Whether the trainer's connection closed and has not come back."""
        return self._down

    @property
    def last_step(self) -> int | None:
        return self._last_step

    def handle(self, event: object) -> None:
        """Act on one FeedEvent."""
        if isinstance(event, Data):
            self._on_data(event.message)
        elif isinstance(event, Snapshot):
            self._on_snapshot(event.status)
        elif isinstance(event, SessionChanged):
            self._on_session_changed(event.status)
        elif isinstance(event, TrainerDown):
            if not self._down:
                self._down = True
                step, saved = self._last_step, self._checkpoint_step
                self._notify(
                    render.trainer_down(event.reason, event.silent_s, step, saved, lang=self._lang()),
                    Priority.ALERT,
                )
        elif isinstance(event, TrainerBack):
            # After a restart the Subscriber reports SessionChanged first, which handled it.
            if self._down:
                self._down = False
                self._notify(
                    render.trainer_back(event.status, restarted=event.restarted, lang=self._lang()),
                    Priority.ALERT,
                )
        elif isinstance(event, NotResponding):
            self._notify(render.not_responding(event.silent_s, lang=self._lang()), Priority.EVENT)
        elif isinstance(event, Responding):
            self._notify(render.responding(event.silent_s, lang=self._lang()), Priority.EVENT)
        elif isinstance(event, Stalled):
            self._send_event(render.stalled(event.loop_age_s, lang=self._lang()))
        elif isinstance(event, Unstalled):
            self._send_event(render.unstalled(lang=self._lang()))
        elif isinstance(event, Gap):
            logger.warning("metrics %d..%d lost for good", event.first_seq, event.last_seq)

    def tick(self) -> None:
        """Send what has come due; call after each poll."""
        due = self._progress.due()
        if due is not None:
            self._notify(render.progress(due, lang=self._lang()), Priority.PROGRESS)
        if self._params and self._clock() - self._params_since >= PARAM_COALESCE_S:
            self._flush_params()
        pending = self._pending_back
        if pending is not None and not pending[2] and self._clock() - pending[1] >= BACK_LOADING_NOTE_S:
            self._pending_back = (pending[0], pending[1], True)
            self._notify(
                render.trainer_back({"state": "loading"}, restarted=True, lang=self._lang()), Priority.ALERT
            )
        held = self._limiter.suppressed()
        if held:
            self._notify(tr(self._lang(), "more_events", count=held), Priority.EVENT)
        if self._clock() - self._cursor_saved_at >= CURSOR_SAVE_INTERVAL_S:
            self.save_cursor()

    def save_cursor(self) -> None:
        if self._cursor is not None:
            self._cursors.save(self._cursor)
        self._cursor_saved_at = self._clock()

    # -- feed events ------------------------------------------------------------------

    def _on_snapshot(self, status: dict[str, Any]) -> None:
        cursor = Cursor(str(status["session"]), int(status.get("last_seq") or 0))
        if self._synced:  # a re-sync inside a session: nothing to tell
            self._cursor = cursor
            return
        self._synced, self._down = True, False
        self._note_status(status)
        self._refresh_catalog(cursor.session)
        self._notify(self._catch_up(status, self._cursors.load()), Priority.EVENT)
        self._cursor = cursor
        self.save_cursor()

    def _on_session_changed(self, status: dict[str, Any]) -> None:
        self._series.clear()
        self._progress.reset()
        self._params.clear()
        session = str(status["session"])
        self._refresh_catalog(session)
        old_step, self._last_step, self._checkpoint_step = self._last_step, None, None
        # One message per return, once the new process knows its step (its messages follow as
        # Data from seq 1, the state event that ends 'loading' among them).
        if status.get("state") == "loading":
            self._pending_back = (old_step, self._clock(), False)
        else:
            self._note_status(status)
            self._notify(
                render.trainer_back(status, restarted=True, old_step=old_step, lang=self._lang()),
                Priority.ALERT,
            )
        self._down = False
        self._cursor = Cursor(session, 0)  # its messages follow as Data from seq 1
        self.save_cursor()

    def _on_data(self, message: Any) -> None:
        topic, body = str(message.topic), dict(message.body)
        self._cursor = Cursor(str(message.session), int(message.seq))
        step = body.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            self._last_step = max(step, self._last_step or 0)
        if topic.startswith("metrics."):
            self._series.add(topic, body)
            if topic == "metrics.report":
                due = self._progress.offer(body)
                if due is not None:
                    self._notify(render.progress(due, lang=self._lang()), Priority.PROGRESS)
        elif topic.startswith("event."):
            self._series.add(topic, body)  # parameter changes mark the plot
            self._on_trainer_event(body)
        elif topic == "log":
            logger.info("trainer log: %s", body.get("message"))

    def _on_trainer_event(self, body: dict[str, Any]) -> None:
        name = body.get("event")
        if name == "checkpoint_saved" and isinstance(body.get("step"), int):
            self._checkpoint_step = body["step"]
        if name == "state" and self._pending_back is not None and body.get("state") != "loading":
            old_step = self._pending_back[0]
            self._pending_back = None
            self._notify(
                render.trainer_back(body, restarted=True, old_step=old_step, lang=self._lang()),
                Priority.ALERT,
            )
            return
        if name == "param_changed":
            if self._own_changes.consume(str(body.get("name")), body.get("new")):
                self.save_cursor()  # already answered in the chat: one message per change
                return
            if not self._params:
                self._params_since = self._clock()
            self._params.append(body)
            return
        self._flush_params()
        if name in TERMINAL_EVENTS:
            # The final state always gets through: pending progress rides on this message.
            text = render.event(body, last_progress=self._progress.take(), lang=self._lang())
            if text:
                self._notify(text, Priority.ALERT)
        elif name in ALERT_EVENTS:  # never held back by the flood guard
            text = render.event(body, lang=self._lang())
            if text:
                self._notify(text, Priority.ALERT)
        else:
            text = render.event(body, lang=self._lang())
            if text:
                self._send_event(text)
        self.save_cursor()

    def _note_status(self, status: dict[str, Any]) -> None:
        step, saved = status.get("step"), status.get("last_checkpoint_step")
        if isinstance(step, int):
            self._last_step = max(step, self._last_step or 0)
        if isinstance(saved, int):
            self._checkpoint_step = saved

    def _flush_params(self) -> None:
        if self._params:
            bodies, self._params = self._params, []
            self._send_event(render.param_changes(bodies, lang=self._lang()))
            self.save_cursor()

    def _send_event(self, text: str) -> None:
        if self._limiter.allow():
            self._notify(text, Priority.EVENT)
        else:
            logger.warning("event not sent (flood guard): %s", text)

    # -- catching up ------------------------------------------------------------------

    def _catch_up(self, status: dict[str, Any], saved: Cursor | None) -> str:
        session, last_seq = str(status["session"]), int(status.get("last_seq") or 0)
        same = saved is not None and saved.session == session and saved.seq <= last_seq
        since = min(saved.seq, last_seq - BACKFILL_SEQ) if same and saved else last_seq - BACKFILL_SEQ
        messages, lost = self._history(max(0, since), last_seq)
        for m in messages:
            self._series.add(str(m.get("topic", "")), m.get("body") or {})
        if saved is None:
            return render.connected(status, lang=self._lang())
        if not same:
            return render.catch_up(status, None, lang=self._lang())
        missed = [
            m["body"]
            for m in messages
            if int(m["seq"]) > saved.seq
            and str(m.get("topic", "")).startswith("event.")
            and m["body"].get("event") not in render.QUIET_EVENTS
        ]
        partial = lost and (not messages or int(messages[0]["seq"]) > saved.seq + 1)
        return render.catch_up(status, missed, partial=partial, lang=self._lang())

    def _history(self, since: int, until: int) -> tuple[list[dict[str, Any]], bool]:
        try:
            return fetch_history(self._request, since, until)
        except Exception:
            logger.exception("could not fetch the trainer's history")
            return [], True

    def _refresh_catalog(self, session: str) -> None:
        try:
            self._catalog.update(self._request("describe"), session)
        except Exception:
            logger.exception("could not refresh the trainer's describe")
            self._catalog.invalidate()


class FeedThread:
    """Runs a FeedHandler on the Subscriber in its own thread (which owns both sockets)."""

    def __init__(
        self,
        make_handler: Callable[[Request], FeedHandler],
        connection: Connection,
        *,
        client_options: dict[str, Any] | None = None,
        on_death: ThreadDeath | None = None,
    ) -> None:
        self._make_handler = make_handler
        self._connection = connection  # one factory: the client and the feed get the same keys
        self._client_options = client_options or {}
        self._stopping = threading.Event()
        target = guarded_thread("sidecar-feed", self._run, self._stopping, on_death)
        self._thread = threading.Thread(target=target, name="sidecar-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            client = self._connection.control_client(**self._client_options)
            subscriber = self._connection.subscriber(client)
            handler = self._make_handler(client.request)
        except Exception:
            # Not a silent sidecar: the thread's death ends the process, and the supervisor retries.
            logger.error("the trainer feed could not start: no notifications could be sent")
            raise
        try:
            while not self._stopping.is_set():
                self._poll_once(subscriber, handler)
        finally:
            handler.save_cursor()
            subscriber.close()
            client.close()

    @staticmethod
    def _poll_once(subscriber: Subscriber, handler: FeedHandler) -> None:
        try:
            events = subscriber.poll(POLL_TIMEOUT_MS)
        except TrainerUnavailable:
            events = []  # the Subscriber reports outages as TrainerDown; just poll again
        except Exception:
            logger.exception("metrics subscriber failed; carrying on")
            time.sleep(POLL_TIMEOUT_MS / 1000)
            events = []
        for event in events:
            try:
                handler.handle(event)
            except Exception:
                logger.exception("feed event %r failed; carrying on", type(event).__name__)
        try:
            handler.tick()
        except Exception:
            logger.exception("feed tick failed; carrying on")
