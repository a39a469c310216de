"""`fleet delete FILE [NAME...]`: stop sessions and prune worktrees, never losing work.

The same reconcile pass as `fleet apply` (control/converge.py) with the deletion
planner: the same lock, record refresh (backoff included), engine and safety rules.
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..control.converge import reconcile_once
from ..errors import FleetError, exit_code
from ..observe.snapshot import Observed
from ..plan.actions import Plan
from ..plan.planner import plan_delete
from ..render.plan import outcome_line, print_table
from ..spec.loader import LoadedFleet, load_fleet


def run(*, file: str, names: list[str], yes: bool, lock_timeout: float | None, grace: float,
        console: Console, err: Console, archive: bool = False) -> int:
    loaded = load_fleet(file)

    def planner(observed: Observed) -> Plan:
        unknown = [n for n in names if n not in observed.agents and loaded.agent(n) is None]
        if unknown:
            raise FleetError(f"unknown agent(s): {', '.join(unknown)}",
                             hint="see `fleet status` for the agents of this fleet")
        return plan_delete(loaded, observed, names or None, archive=archive)

    def confirm(plan: Plan) -> bool:
        print_table(plan, console)
        if yes or not any(a.kind != "blocked" for a in plan.actions):
            return True
        if not console.is_terminal:
            raise FleetError("delete needs confirmation but there is no terminal", hint="pass --yes")
        if console.input("\nDelete? Only 'yes' will be accepted: ").strip() == "yes":
            return True
        console.print("Delete cancelled.")
        return False

    result = reconcile_once(loaded, planner=planner, inspect_all=True, confirm=confirm, grace=grace,
                            lock_timeout=lock_timeout, command="fleet delete",
                            on_wait=lambda m: err.print(f"[yellow]{escape(m)}[/]"))
    if not result.plan.has_changes:
        print_table(result.plan, console)
    for outcome in result.outcomes:
        if outcome.action.kind != "blocked":
            console.print(outcome_line(outcome), soft_wrap=True)
    blocked = bool(result.plan.blocked) or any(o.blocked for o in result.outcomes)
    if not names and not blocked and all(o.ok for o in result.outcomes) and loaded.fleet.spec.delivery is not None:
        _remove_scratch(loaded, console)
    if blocked:
        err.print("[bold red]Some deletions were refused to protect work; nothing of theirs was removed.[/]")
    return exit_code(blocked=blocked, failed=any(not o.ok for o in result.outcomes))


def _remove_scratch(loaded: LoadedFleet, console: Console) -> None:
    """The whole fleet is gone: its delivery scratch tree too (docs/delivery.md)."""
    from ..act.delivery import remove_scratch
    from ..observe.gitrepo import GitRepo

    if remove_scratch(GitRepo(loaded.repo), loaded.worktrees_root, loaded.name):
        console.print(f"  removed the delivery scratch tree of fleet {escape(loaded.name)}")
