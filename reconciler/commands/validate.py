"""`fleet validate FILE...`: parse and check, no side effects."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import EXIT_OK, FleetError, Problem, SpecInvalid
from ..observe.reach import check_base
from ..spec.loader import LoadedFleet, load_fleet


def run(*, files: list[str], console: Console, err: Console) -> int:
    failed: list[tuple[str, FleetError]] = []
    for file in files:
        try:
            loaded = load_fleet(file)
            check_base(loaded)
        except FleetError as exc:
            failed.append((file, exc))
            continue
        warn_programs(loaded, err)
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


def warn_programs(loaded: LoadedFleet, err: Console) -> None:
    """On stderr: each tier CLI or command program that cannot start here (act/programs.py).
    A warning, not an error: the file is valid, the machine may lack a program."""
    from ..act.programs import program_warnings

    for problem in program_warnings(loaded):
        err.print(f"[yellow]warning:[/] {escape(problem.render())}", soft_wrap=True)


def _problems(exc: FleetError) -> list[Problem]:
    if isinstance(exc, SpecInvalid):
        return [*exc.problems, Problem(exc.message)]  # keep the per-file count ("3 errors in a.yaml")
    return [Problem(exc.message, hint=exc.hint)]
