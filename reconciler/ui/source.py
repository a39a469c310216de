"""The dashboard's view of the fleet, kept fresh by one background thread.

While a loop runs for the file and its snapshot can be trusted (control/observed_status.py
`read_view`), the view is the loop's. Otherwise (no loop, the file changed, a session
ended since the loop looked) the dashboard observes itself, read-only, at most every
`interval` seconds, or at once after an action. Every new view bumps `version`; the SSE
streams send it to the browsers.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ..control.observed_status import age_of, history_point, loop_alive, observe_view, read_view, status_store
from ..errors import FleetError
from ..spec.loader import load_fleet
from ..store.observed import StatusStore

BY_UI = "fleet ui"
POLL = 0.25  # seconds between cheap checks of the loop's snapshot
HISTORY_POINTS = 360  # points sent to the charts


class ViewSource:
    def __init__(self, file: str, *, interval: float = 5.0) -> None:
        self.file = file
        self.interval = interval
        loaded = load_fleet(file)  # a bad file is an error at start, not a blank page
        self.fleet = loaded.name
        self.base = loaded.fleet.spec.base
        self.store: StatusStore = status_store(loaded)
        self.version = 0
        self.view: dict[str, Any] | None = None
        self.error: str | None = None
        self.source = BY_UI
        self.own_history: list[dict[str, Any]] = []
        self._observed_at = 0.0
        self._force = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh_once()
        self._thread = threading.Thread(target=self._run, name="fleet-ui-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """Observe now (after an action), not at the next interval."""
        self._force = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL)
            self._wake.clear()
            self.refresh_once()

    def refresh_once(self) -> None:
        """Take the loop's snapshot when it is trusted and newer than what is shown; else
        observe, when `interval` has passed or an action asked for it."""
        try:
            forced, self._force = self._force, False
            read = read_view(self.file, self.store)
            if read.view is not None and not forced:
                if self.view is None or read.view.get("observedAt", "") > self.view.get("observedAt", ""):
                    self._publish(read.view, "loop")
                return
            if forced or time.monotonic() - self._observed_at >= self.interval:
                view = observe_view(load_fleet(self.file), by=BY_UI)
                self._observed_at = time.monotonic()  # from the end: a slow observation is not run back to back
                self.own_history = [*self.own_history[-HISTORY_POINTS:], history_point(view)]
                self._publish(view, BY_UI)
        except FleetError as exc:
            self._error(exc.render())
        except Exception as exc:  # noqa: BLE001 - the page says what went wrong; the server stays up
            self._error(f"observing failed: {exc!r}")

    def _publish(self, view: dict[str, Any], source: str) -> None:
        with self._lock:
            self.view, self.source, self.error = view, source, None
            self.version += 1

    def _error(self, message: str) -> None:
        with self._lock:
            if self.error != message:
                self.error = message
                self.version += 1

    # -- what the pages read ----------------------------------------------------------------
    def loop(self) -> dict[str, Any] | None:
        marker = self.store.read_loop()
        return marker if loop_alive(marker) else None

    def history(self) -> list[dict[str, Any]]:
        points = self.store.read_history(HISTORY_POINTS)
        if self.source != "loop":
            seen = {p.get("at") for p in points}
            points = [*points, *(p for p in self.own_history if p.get("at") not in seen)][-HISTORY_POINTS:]
        return points

    def age_seconds(self) -> float | None:
        return age_of(self.view) if self.view else None
