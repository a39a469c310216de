"""The one place errors become output and exit codes."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import EXIT_BLOCKED, EXIT_ERROR, EXIT_INTERRUPTED, FleetError

if TYPE_CHECKING:
    from rich.console import Console


def guarded(fn: Callable[[], int], *, error_code: int = EXIT_ERROR) -> int:
    """Run a command; FleetError -> its message; anything else -> a crash log path."""
    try:
        return fn()
    except FleetError as exc:
        _err().print(f"[bold red]error:[/] {_esc(exc.render())}")
        return exc.exit_code if exc.exit_code == EXIT_BLOCKED else error_code
    except KeyboardInterrupt:
        _err().print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the bug-report path
        log = _crash_log()
        _err().print(f"[bold red]fleet crashed unexpectedly[/] ({sys.exc_info()[1]!r}); "
                     f"details for a bug report in {log}")
        return error_code


def _err() -> Console:
    """Made when there is an error to print: a command that needs no Rich does not import it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


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
