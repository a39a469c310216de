"""`fleet reconcile FILE --watch | --once`: the control loop."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import FleetError
from ..control.loop import ControlLoop
from ..control.converge import Result
from ..render.plan import outcome_line


def run(*, file: str, watch: bool, once: bool, interval: float | None, grace: float, console: Console,
        err: Console) -> int:
    if watch == once:
        raise FleetError("choose one of --watch (run until stopped) or --once (one pass, for cron/systemd)")

    def show(result: Result) -> None:
        for outcome in result.outcomes:
            console.print(outcome_line(outcome), soft_wrap=True)

    loop = ControlLoop(file, interval=interval, grace=grace, on_result=show,
                       report=lambda line: console.print(escape(line), soft_wrap=True))
    return loop.tick() if once else loop.run()
