"""`fleet validate FILE...`: parse and check, no side effects."""
from __future__ import annotations

from rich.console import Console

from ..errors import EXIT_OK, FleetError, Problem, SpecInvalid
from ..spec.loader import load_fleet


def run(*, files: list[str], console: Console, err: Console) -> int:
    failed: list[tuple[str, FleetError]] = []
    for file in files:
        try:
            loaded = load_fleet(file)
        except FleetError as exc:
            failed.append((file, exc))
            continue
        n = len(loaded.agents)
        console.print(f"{file}: valid (fleet {loaded.name}, {n} agent{'s' if n != 1 else ''})",
                      markup=False, highlight=False)
    if not failed:
        return EXIT_OK
    if len(failed) == 1:
        raise failed[0][1]  # printed by the one error handler (cli/errors.py), like any command's
    # several files: every problem, each naming its file, then one line saying which files failed
    problems = [p for _, exc in failed for p in _problems(exc)]
    raise FleetError(f"{len(failed)} of {len(files)} files are invalid: {', '.join(f for f, _ in failed)}",
                     problems=problems)


def _problems(exc: FleetError) -> list[Problem]:
    if isinstance(exc, SpecInvalid):
        return [*exc.problems, Problem(exc.message)]  # keep the per-file count ("3 errors in a.yaml")
    return [Problem(exc.message, hint=exc.hint)]
