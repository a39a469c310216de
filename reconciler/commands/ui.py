"""`fleet ui FILE`: serve the live dashboard until Ctrl-C (reconciler/ui/, docs/dashboard.md)."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import EXIT_OK


def run(*, file: str, host: str, port: int, actions: bool, token: str | None, interval: float, console: Console,
        err: Console) -> int:
    from ..ui.server import announce, open_dashboard

    dashboard = open_dashboard(file, host=host, port=port, token=token, explicit_token=token is not None,
                               actions=actions, interval=interval)
    announce(dashboard, actions=actions, say=lambda line: console.print(escape(line), soft_wrap=True))
    console.file.flush()
    dashboard.serve()
    return EXIT_OK
