"""`fleet status FILE`: one row per agent, grouped, fitted to the terminal; `--watch` redraws it.

With a loop running for FILE, the rows are the loop's last observation (checked for
liveness, control/observed_status.py) and no fleet file is loaded; else, or with
`--refresh`, fleet observes now. `run_snapshot` shows that observation before any Rich
console exists: written to a pipe or a file, a large table and its footer are written as
Rich would write them, without importing Rich (render/terminal.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..control.observed_status import Read, aged_rows, read_view
from ..errors import EXIT_OK, FleetError
from ..plan.money import usd
from ..plan.status_row import human_age, row_from_json
from ..render import terminal
from ..render.status_table import status_table, write_status

if TYPE_CHECKING:  # the loop's snapshot is shown without loading the fleet file (no pydantic, no git), nor Rich
    import threading

    from rich.console import Console, Group
    from rich.text import Text

    from ..plan.status import FleetStatus
    from ..spec.loader import LoadedFleet


def notify_failures(loaded: LoadedFleet) -> list[dict[str, Any]]:
    from ..control.notify import notify_failures as failures

    return failures(loaded)


def fleet_status(loaded: LoadedFleet) -> FleetStatus:
    from ..control.status_rows import fleet_status as observe_now

    return observe_now(loaded)


def load_fleet(file: str) -> LoadedFleet:
    from ..spec.loader import load_fleet as load

    return load(file)


def run_snapshot(*, file: str, output: str, watch: bool = False, interval: float = 2.0,
                 refresh: bool = False) -> int | None:
    """The loop's observation, if it can be trusted; None: `run` (cli/main.py calls this first,
    before it makes any console). Rich is imported only where it would print more than text."""
    if watch or refresh:
        return None
    cached = read_view(file)
    if cached.view is None:
        return None
    return _show_cached(cached, cached.view, output, terminal.plain_stdout() or terminal.console())


def run(*, file: str, output: str, console: Console, err: Console, watch: bool = False,
        interval: float = 2.0, refresh: bool = False) -> int:
    if not watch and not refresh:
        cached = read_view(file)
        if cached.view is not None:
            return _show_cached(cached, cached.view, output, console)
    loaded = load_fleet(file)
    if watch:
        return _watch(file, loaded, output, console, interval)
    status = fleet_status(loaded)
    if output == "json":
        console.print(json.dumps(status_json(loaded, status), indent=2, sort_keys=True), markup=False,
                      highlight=False, soft_wrap=True)
        return EXIT_OK
    wide = output == "wide"
    if write_status(console, loaded.name, status.agents, wide=wide):  # a large table: plain lines
        from rich.console import Group

        console.print(Group(*footer(loaded, status)), soft_wrap=True)
    else:
        console.print(view(loaded, status, console.width, wide=wide), soft_wrap=True)
    return EXIT_OK


def status_json(loaded: LoadedFleet, status: FleetStatus) -> dict[str, object]:
    return {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
            "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
            "spendTodayByTier": status.spend_today_by_tier, "budgets": status.budgets,
            "projections": status.projections, "agents": [asdict(r) for r in status.agents],
            "notifyFailures": notify_failures(loaded)}


def view(loaded: LoadedFleet, status: FleetStatus, width: int | None, *, wide: bool = False) -> Group:
    """The table and its footer (spend today against the budget)."""
    from rich.console import Group

    return Group(status_table(loaded.name, status.agents, width, wide=wide), *footer(loaded, status))


def footer(loaded: LoadedFleet, status: FleetStatus) -> list[Text]:
    from rich.text import Text

    from ..render.spend import budget_line, projection_line

    total = sum(r.cost_usd for r in status.agents)
    budget = status.budget_usd_per_day
    today = f"spend today: {usd(status.spend_today_usd)}" + (f" of {usd(budget, 2)} budget" if budget else "")
    failed = [Text(f"notify: {f.get('event')} of {f.get('agent') or 'the fleet'} to {f.get('target')} failed at "
                   f"{f.get('at')}: {f.get('error')}", style="red") for f in notify_failures(loaded)]
    return [Text(f"{today}; all-time cost of these agents: {usd(total)}"),
            *(Text(budget_line(line)) for line in status.budgets),
            *(Text(projection_line(proj)) for proj in status.projections), *failed]


def _watch(file: str, loaded: LoadedFleet, output: str, console: Console, interval: float) -> int:
    """Redraw until SIGINT (Ctrl-C) or SIGTERM, then exit 0. The file is re-read every refresh,
    so an edit shows at the next one; a refresh that fails shows why and the watch goes on."""
    import signal
    import threading

    from rich.live import Live

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
                        terminal.write_out(console.file, last + "\n")
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _frame(file: str, loaded: LoadedFleet, output: str, console: Console, stop: threading.Event) -> Group | None:
    from rich.console import Group
    from rich.text import Text

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


def _show_cached(read: Read, snap: dict[str, Any], output: str,
                 console: Console | terminal.PlainStdout) -> int:
    """The loop's observation, as `run` shows a fresh one, and how old it is. On a PlainStdout
    (render/terminal.py) a large table and a footer of plain text are written directly: what
    Rich would write there; anything else is printed by Rich, as before."""
    failures = snap.get("notifyFailures") or []
    if output == "json":
        data = {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": snap["fleet"],
                "spendTodayUsd": snap["spendTodayUsd"], "budgetUsdPerDay": snap["budgetUsdPerDay"],
                "spendTodayByTier": snap["spendTodayByTier"], "agents": aged_rows(snap),
                "notifyFailures": failures, "observedAt": snap["observedAt"], "observedBy": snap["observedBy"]}
        # written as it is: rich's text handling costs more than the rest at 1,000 agents
        terminal.write_out(console.file, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    rows = [row_from_json(a) for a in aged_rows(snap)]
    total = sum(r.cost_usd for r in rows)
    budget = snap["budgetUsdPerDay"]
    today = f"spend today: ${snap['spendTodayUsd']:.2f}" + (f" of ${budget:.2f} budget" if budget else "")
    pid = (read.loop or {}).get("pid")
    lines = [(f"{today}; all-time cost of these agents: ${total:.2f}", ""),
             *((f"notify: {f.get('event')} of {f.get('agent') or 'the fleet'} to {f.get('target')} failed at "
                f"{f.get('at')}: {f.get('error')}", "red") for f in failures),
             (f"observed {human_age(read.age_seconds or 0.0)} ago by the loop (pid {pid}); "
              "`fleet status --refresh` observes now", "")]
    wide = output == "wide"
    written = write_status(console, snap["fleet"], rows, wide=wide)
    if isinstance(console, terminal.PlainStdout):
        if written and all(terminal.printable(text) for text, _ in lines):
            console.write("".join(text + "\n" for text, _ in lines))
            return EXIT_OK
        console = terminal.console()  # a table Rich draws, or a footer it would change (tabs, control codes)
    from rich.console import Group
    from rich.text import Text

    table = [] if written else [status_table(snap["fleet"], rows, console.width, wide=wide)]
    console.print(Group(*table, *(Text(text, style=style) for text, style in lines)), soft_wrap=True)
    return EXIT_OK
