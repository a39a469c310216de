"""`fleet delete FILE [NAME...]`: stop sessions and prune worktrees, never losing work."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import EXIT_OK, FleetError, exit_code
from ..act.executor import Executor
from ..act.worktrees import ensure_excluded
from ..engines import engine_for
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home, observe
from ..plan.planner import plan_delete
from ..control.converge import refresh_records
from ..plan.actions import BLOCKED, Plan
from ..render.plan import outcome_line, print_table
from ..spec.loader import load_fleet


def run(*, file: str, names: list[str], yes: bool, lock_timeout: float | None, grace: float,
        console: Console, err: Console, archive: bool = False) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    ensure_excluded(repo)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=lock_timeout, command="fleet delete",
                    on_wait=lambda m: err.print(f"[yellow]{escape(m)}[/]")):
        engine = engine_for(loaded)  # spec.placement: sessions and their work live elsewhere
        observed = engine.observe(inspect_all=True) if engine else observe(loaded, inspect_all=True)
        refresh_records(observed, save=True)
        unknown = [n for n in names if n not in observed.agents and loaded.agent(n) is None]
        if unknown:
            raise FleetError(f"unknown agent(s): {', '.join(unknown)}",
                             hint="see `fleet status` for the agents of this fleet")
        plan = plan_delete(loaded, observed, names or None, archive=archive)
        print_table(plan, console)
        todo = Plan(plan.fleet, tuple(a for a in plan.actions if a.kind != BLOCKED))
        if todo.has_changes and not yes and not _confirmed(console):
            console.print("Delete cancelled.")
            return EXIT_OK
        executor = engine.executor(observed, grace=grace) if engine else Executor(loaded, observed, grace=grace)
        outcomes = executor.run(todo) if todo.has_changes else []
    for outcome in outcomes:
        console.print(outcome_line(outcome), soft_wrap=True)
    blocked = bool(plan.blocked) or any(o.blocked for o in outcomes)
    if blocked:
        err.print("[bold red]Some deletions were refused to protect work; nothing of theirs was removed.[/]")
    return exit_code(blocked=blocked, failed=any(not o.ok for o in outcomes))


def _confirmed(console: Console) -> bool:
    if not console.is_terminal:
        raise FleetError("delete needs confirmation but there is no terminal", hint="pass --yes")
    return console.input("\nDelete? Only 'yes' will be accepted: ").strip() == "yes"
