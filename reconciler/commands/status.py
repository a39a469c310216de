"""`fleet status FILE`: one row per agent, grouped, fitted to the terminal; `--watch` redraws it."""
from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict
from types import FrameType

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from ..control.notify import notify_failures
from ..control.status_rows import FleetStatus, fleet_status
from ..errors import EXIT_OK, FleetError
from ..render.status_table import status_table
from ..spec.loader import LoadedFleet, load_fleet


def run(*, file: str, output: str, console: Console, err: Console, watch: bool = False,
        interval: float = 2.0) -> int:
    loaded = load_fleet(file)
    if watch:
        return _watch(file, loaded, output, console, interval)
    status = fleet_status(loaded)
    if output == "json":
        console.print(json.dumps(status_json(loaded, status), indent=2, sort_keys=True), markup=False,
                      highlight=False, soft_wrap=True)
        return EXIT_OK
    console.print(view(loaded, status, console.width, wide=output == "wide"), soft_wrap=True)
    return EXIT_OK


def status_json(loaded: LoadedFleet, status: FleetStatus) -> dict[str, object]:
    return {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
            "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
            "spendTodayByTier": status.spend_today_by_tier, "agents": [asdict(r) for r in status.agents],
            "notifyFailures": notify_failures(loaded)}


def view(loaded: LoadedFleet, status: FleetStatus, width: int | None, *, wide: bool = False) -> Group:
    """The table and its footer (spend today against the budget)."""
    total = sum(r.cost_usd for r in status.agents)
    budget = status.budget_usd_per_day
    today = f"spend today: ${status.spend_today_usd:.2f}" + (f" of ${budget:.2f} budget" if budget else "")
    failed = [Text(f"notify: {f.get('event')} of {f.get('agent') or 'the fleet'} to {f.get('target')} failed at "
                   f"{f.get('at')}: {f.get('error')}", style="red") for f in notify_failures(loaded)]
    return Group(status_table(loaded.name, status.agents, width, wide=wide),
                 Text(f"{today}; all-time cost of these agents: ${total:.2f}"), *failed)


def _watch(file: str, loaded: LoadedFleet, output: str, console: Console, interval: float) -> int:
    """Redraw until SIGINT (Ctrl-C) or SIGTERM, then exit 0. The file is re-read every refresh,
    so an edit shows at the next one; a refresh that fails shows why and the watch goes on."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, transient=False,
                      redirect_stdout=False, redirect_stderr=False) as live:
                while not stop.is_set():
                    frame = _frame(file, loaded, output, console, stop)
                    if frame is not None:
                        live.update(frame, refresh=True)
                    stop.wait(interval)
        else:  # a pipe or a log: a new table each time something changed
            last = ""
            while not stop.is_set():
                frame = _frame(file, loaded, output, console, stop)
                if frame is not None:
                    with console.capture() as cap:
                        console.print(frame, soft_wrap=True)
                    if cap.get() != last:
                        last = cap.get()
                        console.file.write(last + "\n")
                        console.file.flush()
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _frame(file: str, loaded: LoadedFleet, output: str, console: Console, stop: threading.Event) -> Group | None:
    try:
        try:
            loaded = load_fleet(file)
        except FleetError:
            pass  # a half-saved edit: keep showing the last good file
        return view(loaded, fleet_status(loaded), console.width, wide=output == "wide")
    except FleetError as exc:
        if stop.is_set():  # Ctrl-C reached a git child half-way through: not an error
            return None
        return Group(Text(f"fleet {loaded.name}: status failed: {exc.message}", style="red"))
