"""`fleet logs FILE NAME [-f]`: a session's output, from wherever its engine keeps it."""
from __future__ import annotations

from rich.console import Console

from ..engines import engine_for
from ..spec.loader import load_fleet


def run(*, file: str, name: str, follow: bool, console: Console, err: Console) -> int:
    return engine_for(load_fleet(file)).logs(name, follow=follow)
