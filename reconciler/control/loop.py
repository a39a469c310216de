"""The control loop: reconcile on a schedule (APScheduler), re-reading fleet.yaml every tick.

Level-triggered: each tick observes the world afresh and converges once, so a tick
that was skipped, failed or killed is simply made up by the next one. Stopping the
loop never touches sessions; they run on and are re-adopted when it starts again.
"""
from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import EXIT_ERROR, EXIT_OK, FleetError, exit_code
from ..plan.actions import BLOCKED
from ..spec.durations import parse_duration
from ..spec.loader import LoadCache, LoadedFleet, load_fleet
from ..store import clock
from ..store.memo import Memo
from .converge import Result, reconcile_once
from .notify import Notifier
from .status_rows import FleetStatus, FleetView, fleet_view

DEFAULT_INTERVAL = 60.0


@dataclass
class ControlLoop:
    file: str
    interval: float | None = None  # overrides the file's reconcile.interval/cron
    grace: float = 10.0
    report: Callable[[str], None] = print
    report_error: Callable[[str], None] | None = None  # a skipped or failed tick; default: report
    on_result: Callable[[Result], None] | None = None
    # after each tick, observe the status and write it to the state store for `fleet status`
    # and `fleet ui` (control/observed_status.py); `run()` turns it on, a lone `tick()` does not
    publish_status: bool = False
    _stopping: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _schedule: tuple[str, Any] | None = None
    _notifier: Notifier = field(default_factory=Notifier)  # spec.notify, after each tick (control/notify.py)
    # parsed again only when the file (or what its globs match) changed: ~0.1 s a tick at 1,000 agents
    _cache: LoadCache = field(default_factory=LoadCache)
    # the records, exit records and worktree list, read again only where their files changed
    # (store/memo.py), stat'ed again only where inotify saw a change (store/stat_watch.py): most
    # of a no-op tick at 1,000 agents
    _memo: Memo[Any] = field(default_factory=lambda: Memo(watch=True))
    # the process is this loop's (`fleet reconcile --watch`): after the first tick, freeze the
    # heap (`_settle_heap`); off for a loop embedded in a program whose heap is not ours to freeze
    settle_heap: bool = False
    _frozen: bool = False

    def __post_init__(self) -> None:
        self._idle.set()

    def _settle_heap(self) -> None:
        """After the first tick, what is alive (modules, the loaded fleet, the memo) is moved out
        of the cyclic collector's sight (`gc.freeze`): a tick allocates a copy of every record,
        and the full collections that triggered every few ticks walked all of it again (a tick in
        seven took ~30% longer at 1,000 agents). Refcounting still frees what a tick drops;
        garbage in cycles made before the freeze was collected just before it."""
        if self.settle_heap and not self._frozen:
            self._frozen = True
            gc.collect()
            gc.freeze()

    def tick(self) -> int:
        """One reconcile pass; never raises (a bad tick must not end the loop)."""
        if self._stopping.is_set():
            return EXIT_OK
        self._idle.clear()
        try:
            return self._tick()
        finally:
            self._idle.set()

    def _tick(self) -> int:
        try:
            loaded = self._cache.load(self.file)
            self._reschedule_if_changed(loaded)
            try:
                result = reconcile_once(loaded, lock_timeout=0, grace=self.grace, command="fleet reconcile",
                                        memo=self._memo)
            finally:
                self._memo.sweep()
                self._settle_heap()
        except FleetError as exc:
            (self.report_error or self.report)(f"{_now()} tick skipped: {exc.render()}")
            return EXIT_ERROR
        except Exception as exc:  # noqa: BLE001 - the loop outlives a bug in one tick
            (self.report_error or self.report)(f"{_now()} tick failed unexpectedly: {exc!r}")
            return EXIT_ERROR
        if self.on_result:
            self.on_result(result)
        # the status after the tick, observed at most once for the notifier and the snapshot both
        view = _once(lambda: fleet_view(loaded, memo=self._memo))  # read-only: what the tick remembered serves
        self._notify(loaded, lambda: view()[0])
        if self.publish_status:
            self._publish(loaded, view)
        blocked = len(result.plan.blocked) + sum(o.blocked for o in result.outcomes)
        failed = [o for o in result.failed if not o.blocked and o.action.kind != BLOCKED]
        gates = len(result.gates_failed)
        self.report(f"{_now()} {len(result.outcomes)} action(s), {len(failed)} failed, {blocked} blocked"
                    + (f", {gates} gate(s) failed" if gates else "")
                    if result.plan.has_changes else f"{_now()} in sync")
        return exit_code(blocked=bool(blocked), failed=bool(failed))

    def _publish(self, loaded: LoadedFleet, view: Callable[[], FleetView]) -> None:
        """Write what this tick left (status, plan, history) and when the next tick is due."""
        from . import observed_status

        try:
            store = observed_status.status_store(loaded)
            observed_status.write_view(loaded, store, observed=view)
            marker = store.read_loop()
            job = self.scheduler.get_job("reconcile") if hasattr(self, "scheduler") else None
            nxt = getattr(job, "next_run_time", None) if job is not None else None
            if marker is not None and marker.get("pid") == os.getpid():
                store.write_loop({**marker, "lastTick": clock.now_iso(), "nextTick": nxt.isoformat() if nxt else None})
        except Exception as exc:  # noqa: BLE001 - status is a convenience; the loop goes on
            (self.report_error or self.report)(f"{_now()} could not write the observed status: {exc!r}")

    def run(self) -> int:
        """Tick now, then on schedule, until SIGTERM/SIGINT."""
        from apscheduler.schedulers.blocking import BlockingScheduler

        from . import observed_status

        self.scheduler = BlockingScheduler(timezone=timezone.utc,
                                           job_defaults={"max_instances": 1, "coalesce": True,
                                                         "misfire_grace_time": None})
        loaded = load_fleet(self.file)
        self._schedule = self._schedule_of(loaded)
        self.publish_status = True
        store = observed_status.status_store(loaded)
        # the marker says "a loop runs for this fleet": readers check its pid and start time
        store.write_loop(observed_status.loop_marker(self.file, self._describe(self._schedule)))
        self.scheduler.add_job(self.tick, self._trigger(self._schedule), id="reconcile",
                               next_run_time=datetime.now(timezone.utc))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.report(f"{_now()} reconciling {self.file} ({self._describe(self._schedule)}); "
                    "SIGTERM or Ctrl-C stops the loop, sessions keep running")
        try:
            self.scheduler.start()
        finally:
            store.clear_loop(os.getpid())
        if not self._idle.wait(timeout=1.5):
            # a tick is mid-way (a long gate, say): stop now, as a crash would; the next
            # run observes what it left and converges, sessions were never ours to stop
            self.report(f"{_now()} interrupted a running tick; the next run picks it up")
            sys.stdout.flush()
            os._exit(EXIT_OK)
        self.close()
        return EXIT_OK

    def close(self) -> None:
        """Let go of what the loop holds between ticks (the memo's inotify instance); a tick
        after it still works, statting everything."""
        self._memo.close()

    def _notify(self, loaded: LoadedFleet, status: Callable[[], FleetStatus]) -> None:
        try:
            self._notifier.after_tick(loaded, current=status)
        except Exception as exc:  # noqa: BLE001 - notifying is never worth a tick
            (self.report_error or self.report)(f"{_now()} notifications skipped: {exc}")

    def finish_notifications(self, timeout: float = 30.0) -> None:
        """Let queued deliveries finish (each is bounded by its own timeout) before the process exits."""
        if not self._notifier.drain(timeout):
            (self.report_error or self.report)(f"{_now()} notifications still being sent after {timeout:g}s: "
                                               "left unsent")

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping.set()
        self.report(f"{_now()} {signal.Signals(signum).name}: stopping; sessions keep running")
        self.scheduler.shutdown(wait=False)

    def _schedule_of(self, loaded: LoadedFleet) -> tuple[str, Any]:
        rec = loaded.fleet.spec.reconcile
        if self.interval is not None:
            return ("interval", self.interval)
        if rec.cron is not None:
            return ("cron", rec.cron)
        return ("interval", parse_duration(rec.interval) if rec.interval else DEFAULT_INTERVAL)

    def _trigger(self, schedule: tuple[str, Any]) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        kind, value = schedule
        if kind == "cron":
            return CronTrigger.from_crontab(value, timezone=timezone.utc, jitter=5)
        # jitter spreads the ticks of many fleets on one machine; at most 10% or 5 s
        return IntervalTrigger(seconds=value, jitter=min(value * 0.1, 5.0), timezone=timezone.utc)

    def _reschedule_if_changed(self, loaded: LoadedFleet) -> None:
        schedule = self._schedule_of(loaded)
        if self._schedule is not None and schedule != self._schedule and hasattr(self, "scheduler"):
            self._schedule = schedule
            self.scheduler.reschedule_job("reconcile", trigger=self._trigger(schedule))
            self.report(f"{_now()} schedule changed: {self._describe(schedule)}")

    @staticmethod
    def _describe(schedule: tuple[str, Any]) -> str:
        kind, value = schedule
        return f"cron {value!r}" if kind == "cron" else f"every {value:g}s"


T = TypeVar("T")


def _once(make: Callable[[], T]) -> Callable[[], T]:
    """`make`, called on first use only; later calls return its value (after an error, it is tried again)."""
    made: list[T] = []

    def get() -> T:
        if not made:
            made.append(make())
        return made[0]
    return get


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
