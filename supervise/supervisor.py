"""A restart supervisor for one Procfile entry: `python -m supervise [options] -- COMMAND...`.

honcho stops every process as soon as one exits (by design), so an entry that must survive its
process's crash restarts that process itself. This runs COMMAND, and when it dies restarts it after a
backoff that doubles from `--initial-backoff` up to `--max-backoff` and starts over once a run lasted
`--stable-after` seconds. A clean exit (code 0) ends the supervisor with 0, unless `--always`; an exit
code given with `--no-restart-on` (say 2, a usage error that a restart cannot fix) ends it too.

SIGINT, SIGTERM and SIGHUP are forwarded to the child's process group (the child runs in its own, so
that it gets each signal once); the supervisor then waits up to `--stop-timeout` for the whole group,
SIGKILLs what is left, reaps it and exits. So Ctrl-C in honcho (which sends SIGTERM to every entry's
group) still stops everything, and no grandchild that ignores SIGTERM is left behind as an orphan:
whenever the child exits, crash or stop, the rest of its group is ended the same way before anything
else happens (on Linux the supervisor is the group's subreaper, so it reaps them too). On Linux the
child also gets SIGTERM if the supervisor itself is killed (SIGKILL).

Standard library only: no TensorFlow, no zmq.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
STOP_TIMEOUT_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
GROUP_POLL_S = 0.1  # how often a group's leftover members are checked (SIGCHLD also wakes the wait)
KILLED_GONE_S = 5.0  # how long SIGKILLed members may take to disappear before we stop waiting


@dataclass(frozen=True)
class RespawnConfig:
    """How to run and restart one command."""

    command: tuple[str, ...]
    name: str
    initial_backoff_s: float = INITIAL_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    stable_after_s: float = STABLE_AFTER_S
    stop_timeout_s: float = STOP_TIMEOUT_S
    always: bool = False
    final_codes: frozenset[int] = frozenset()


def next_backoff(config: RespawnConfig, previous_s: float, ran_s: float) -> float:
    """The wait before the next start: the first wait after a stable run, else double the last one."""
    if previous_s <= 0 or ran_s >= config.stable_after_s:
        return config.initial_backoff_s
    return min(previous_s * 2, config.max_backoff_s)


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'signal SIGKILL' for a Popen return code."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Runs the command until it exits cleanly or a stop signal arrives; `run()` returns the exit code."""

    def __init__(self, config: RespawnConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.restarts = 0
        self._clock = clock
        self._stop_signal: int | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._prctl = _find_prctl()  # looked up before fork: the child may only make plain calls
        self._pid = os.getpid()

    def run(self) -> int:
        if self._prctl is not None:  # orphaned grandchildren become ours to reap, not init's
            self._prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        previous_handlers = self._install_handlers()
        try:
            return self._loop()
        finally:
            signal.set_wakeup_fd(-1)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _loop(self) -> int:
        backoff_s = 0.0
        while True:
            started = self._clock()
            try:
                self._child = subprocess.Popen(self.config.command, preexec_fn=self._child_setup)
            except OSError as exc:
                logger.error("[%s] cannot start %s: %s", self.config.name, self.config.command[0], exc)
                return 127
            stop_deadline = self._wait_child()
            returncode = self._child.returncode
            self._end_group(self._child.pid, stop_deadline)
            ran_s = self._clock() - started
            if self._stop_signal is not None:
                return self._stopped_code(returncode)
            if returncode == 0 and not self.config.always:
                logger.info("[%s] exited cleanly after %.1f s; not restarting", self.config.name, ran_s)
                return 0
            if returncode in self.config.final_codes:
                logger.error(
                    "[%s] %s: not restarting (--no-restart-on)", self.config.name, describe_exit(returncode)
                )
                return returncode
            backoff_s = next_backoff(self.config, backoff_s, ran_s)
            self.restarts += 1
            logger.warning(
                "[%s] %s after %.1f s; restart #%d in %.2f s",
                self.config.name,
                describe_exit(returncode),
                ran_s,
                self.restarts,
                backoff_s,
            )
            if self._sleep(backoff_s):
                return self._stopped_code(None)

    def _wait_child(self) -> float | None:
        """Wait for the child; forward a stop signal to its group, and kill it past the stop timeout.
        Returns the stop deadline when a stop signal came (the rest of the group shares it)."""
        assert self._child is not None
        deadline: float | None = None
        while self._child.poll() is None:
            if self._stop_signal is not None and deadline is None:
                self._signal_child(self._stop_signal)
                deadline = self._clock() + self.config.stop_timeout_s
            if deadline is not None and self._clock() >= deadline:
                logger.warning(
                    "[%s] still running %.1f s after the stop signal: killing it",
                    self.config.name,
                    self.config.stop_timeout_s,
                )
                self._signal_child(signal.SIGKILL)
                self._child.wait()
                break
            self._wait_wakeup(0.5 if deadline is None else max(0.0, min(0.5, deadline - self._clock())))
        return deadline

    def _end_group(self, pgid: int, deadline: float | None) -> None:
        """What is left of the child's process group: SIGTERM (unless a stop signal already went to
        it), SIGKILL at the deadline, reaped; so no process of the entry outlives it."""
        if not self._group_alive(pgid):
            return
        if deadline is None:
            logger.warning("[%s] the child left processes in its group: SIGTERM to them", self.config.name)
            self._signal_group(pgid, signal.SIGTERM)
            deadline = self._clock() + self.config.stop_timeout_s
        killed_at: float | None = None
        while self._group_alive(pgid):
            now = self._clock()
            if killed_at is None and now >= deadline:
                logger.warning("[%s] its group outlived the stop timeout: SIGKILL", self.config.name)
                self._signal_group(pgid, signal.SIGKILL)
                killed_at = now
            if killed_at is not None and now - killed_at > KILLED_GONE_S:
                logger.error("[%s] group %d still there after SIGKILL", self.config.name, pgid)
                return
            self._wait_wakeup(GROUP_POLL_S)

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        """Reap the group's exited members that are ours; True while any member is still there."""
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0] != 0:
                pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True  # (PermissionError too: someone is there)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    def _signal_child(self, signum: int) -> None:
        assert self._child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._child.pid, signum)  # the child's group: its own children too

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early for a stop signal; True when one arrived."""
        deadline = self._clock() + seconds
        while self._stop_signal is None and (left := deadline - self._clock()) > 0:
            self._wait_wakeup(left)
        return self._stop_signal is not None

    def _wait_wakeup(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], timeout_s)
        if ready:
            os.read(self._wake_r, 512)

    def _stopped_code(self, returncode: int | None) -> int:
        signum = self._stop_signal or signal.SIGTERM
        name = signal.Signals(signum).name
        if returncode is None:
            logger.info("[%s] %s received while waiting to restart; exiting", self.config.name, name)
        else:
            logger.info("[%s] stopped on %s: %s", self.config.name, name, describe_exit(returncode))
        if returncode is not None and returncode >= 0:
            return returncode
        return 128 + signum

    def _child_setup(self) -> None:
        """In the child before exec: its own process group, and SIGTERM when the supervisor dies."""
        os.setpgid(0, 0)
        if self._prctl is not None:
            self._prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != self._pid:
                os._exit(1)  # the supervisor died before prctl took effect

    def _install_handlers(self) -> dict[int, Callable[..., object] | int | None]:
        def on_stop(signum: int, _frame: object) -> None:
            if self._stop_signal is None:
                self._stop_signal = signum

        previous: dict[int, Callable[..., object] | int | None] = {}
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, on_stop)
        # A handler (even a no-op) makes SIGCHLD write to the wakeup fd: a child's exit wakes the wait.
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        return previous


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
