"""`fleet reconcile FILE --watch | --once`: the control loop."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..control.converge import Result
from ..control.loop import ControlLoop
from ..render.plan import outcome_line


def run(*, file: str, watch: bool, once: bool, interval: float | None, grace: float, console: Console,
        err: Console) -> int:
    """`watch` xor `once`: the command line (cli/main.py) refuses anything else as a usage error."""

    def show(result: Result) -> None:
        for outcome in result.outcomes:
            console.print(outcome_line(outcome), soft_wrap=True)

    loop = ControlLoop(file, interval=interval, grace=grace, on_result=show,
                       report=lambda line: console.print(escape(line), soft_wrap=True),
                       report_error=lambda line: err.print(escape(line), soft_wrap=True))
    code = loop.tick() if once else loop.run()
    loop.finish_notifications()
    return code
