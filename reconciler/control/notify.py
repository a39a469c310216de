"""Notifications from the control loop: after each tick, what changed goes to `spec.notify`.

The rules are plan/notify.py's; what was seen and sent is in the state store
(store/notify_state.py), saved before anything is sent, so each transition is sent once
(a loop killed mid-delivery does not send it again, nor does a restarted one). Deliveries
run on one background thread, each bounded by its entry's timeout: a slow or broken
receiver never holds up a tick. A failed delivery is recorded and shown by `fleet status`;
nothing else happens (no retry: the next transition is the next message).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..act.notify import deliver, target
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import state_store
from ..plan.notify import debounce_key, deliveries, facts, transitions
from ..spec.loader import LoadedFleet
from ..spec.models import Notify
from ..store import clock
from ..store.notify_state import load, save, state_path
from .status_rows import FleetStatus, fleet_status


class Notifier:
    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Path, Notify, dict[str, Any], Path]] = queue.Queue()
        self._state_lock = threading.Lock()  # the tick and the sender both update the state file
        self._worker: threading.Thread | None = None

    def after_tick(self, loaded: LoadedFleet, *, current: Callable[[], FleetStatus] | None = None) -> int:
        """Compare the fleet now with the last tick and queue what is due; returns how many.
        `current`: the tick's own post-tick status (observed once, shared with the status snapshot)."""
        notify = loaded.fleet.spec.notify
        path = _path(loaded)
        if not notify and not path.exists():
            return 0
        status = current() if current is not None else fleet_status(loaded)
        rows = {r.agent: r for r in status.agents}
        now = clock.now()
        with self._state_lock:
            state = load(path)
            due = deliveries(transitions(loaded.name, status.agents, state.facts, now), list(notify), state.sent, now)
            for d in due:
                state.sent[debounce_key(d.notifier, d.event)] = d.event.at
            state.facts = facts(status.agents)
            save(path, state)
        for d in due:
            event = d.event.to_json(rows.get(d.event.agent) if d.event.agent else None)
            self._jobs.put((path, notify[d.notifier], event, loaded.repo))
        if due and self._worker is None:
            self._worker = threading.Thread(target=self._send, name="fleet-notify", daemon=True)
            self._worker.start()
        return len(due)

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for the queued deliveries (before a one-shot tick exits)."""
        done = threading.Event()

        def wait() -> None:
            self._jobs.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _send(self) -> None:
        while True:
            path, entry, event, cwd = self._jobs.get()
            try:
                error = deliver(entry, event, cwd=cwd)
                self._record(path, entry, event, error)
            except Exception as exc:  # noqa: BLE001 - a bug in sending must not stop the sender
                self._record(path, entry, event, f"{type(exc).__name__}: {exc}")
            finally:
                self._jobs.task_done()

    def _record(self, path: Path, entry: Notify, event: dict[str, Any], error: str | None) -> None:
        where = target(entry)
        with self._state_lock:
            state = load(path)
            # a delivery that worked clears that target's earlier failures: status shows what is still broken
            state.failures = [f for f in state.failures if f.get("target") != where]
            if error is not None:
                state.failures.append({"at": clock.now_iso(), "event": event.get("event"), "agent": event.get("agent"),
                                       "target": where, "error": error})
            save(path, state)


def _path(loaded: LoadedFleet) -> Path:
    return state_path(state_store(GitRepo(loaded.repo), loaded.name).home, loaded.name)


def notify_failures(loaded: LoadedFleet) -> list[dict[str, Any]]:
    """The deliveries that failed and have not worked since, oldest first (for `fleet status`)."""
    return load(_path(loaded)).failures
