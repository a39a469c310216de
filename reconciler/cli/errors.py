"""The one place errors become output and exit codes."""
from __future__ import annotations

import sys
from collections.abc import Callable

from .. import __version__
from ..errors import EXIT_BLOCKED, EXIT_ERROR, EXIT_INTERRUPTED, FleetError


def guarded(fn: Callable[[], int], *, error_code: int = EXIT_ERROR) -> int:
    """Run a command; FleetError -> its message; anything else -> a crash log path."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return fn()
    except FleetError as exc:
        err.print(f"[bold red]error:[/] {_esc(exc.render())}")
        return exc.exit_code if exc.exit_code == EXIT_BLOCKED else error_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the bug-report path
        log = _crash_log()
        err.print(f"[bold red]fleet crashed unexpectedly[/] ({sys.exc_info()[1]!r}); "
                  f"details for a bug report in {log}")
        return error_code


def _crash_log() -> str:
    import platform  # the crash path only: kept off every command's start-up
    import tempfile
    import traceback
    from datetime import datetime

    with tempfile.NamedTemporaryFile("w", prefix="fleet-crash-", suffix=".log", delete=False) as f:
        f.write(f"fleet {__version__}, Python {platform.python_version()}, {platform.platform()}\n")
        f.write(f"{datetime.now().isoformat()} argv: {sys.argv}\n\n")
        f.write(traceback.format_exc())
        return f.name


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
