"""`fleet reconcile FILE --watch | --once`: the control loop."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..control.converge import Result
from ..control.loop import ControlLoop
from ..render.plan import outcome_line


def run(*, file: str, watch: bool, once: bool, interval: float | None, grace: float, console: Console,
        err: Console, ui_port: int | None = None) -> int:
    """`watch` xor `once`: the command line (cli/main.py) refuses anything else as a usage error."""

    def show(result: Result) -> None:
        for outcome in result.outcomes:
            console.print(outcome_line(outcome), soft_wrap=True)

    loop = ControlLoop(file, interval=interval, grace=grace, on_result=show,
                       report=lambda line: console.print(escape(line), soft_wrap=True),
                       report_error=lambda line: err.print(escape(line), soft_wrap=True), settle_heap=watch)
    if once:
        code = loop.tick()
    else:
        if ui_port is not None:  # the dashboard beside the loop, read-only, showing what each tick observed
            from ..ui.server import announce, open_dashboard

            dashboard = open_dashboard(file, port=ui_port, grace=grace)
            announce(dashboard, actions=False, say=lambda line: console.print(escape(line), soft_wrap=True))
            dashboard.serve_in_thread()
        code = loop.run()
    loop.finish_notifications()
    return code
