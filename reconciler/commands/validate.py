"""`fleet validate FILE...`: parse and check, no side effects."""
from __future__ import annotations

from rich.console import Console

from ..errors import EXIT_INVALID, EXIT_OK, FleetError
from ..spec.loader import load_fleet


def run(*, files: list[str], console: Console, err: Console) -> int:
    code = EXIT_OK
    for file in files:
        try:
            loaded = load_fleet(file)
        except FleetError as exc:
            err.print(exc.render(), markup=False, highlight=False)
            code = EXIT_INVALID
            continue
        n = len(loaded.agents)
        console.print(f"{file}: valid (fleet {loaded.name}, {n} agent{'s' if n != 1 else ''})",
                      markup=False, highlight=False)
    return code
