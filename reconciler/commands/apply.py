"""`fleet apply FILE`: converge once, under the fleet lock. `fleet apply PLANFILE`: apply a
saved plan (plan/saved.py), or refuse it if what it was made from has moved."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..control.converge import preview, reconcile_once
from ..engines.executor import Outcome
from ..errors import EXIT_OK, FleetError, exit_code
from ..plan import saved
from ..plan.actions import BLOCKED, Plan
from ..render.plan import outcome_line, print_table, summary_line
from ..spec.loader import load_fleet
from . import diff


def run(*, file: str, yes: bool, dry_run: bool, targets: list[str], lock_timeout: float | None,
        grace: float, console: Console, err: Console, archive: bool = False) -> int:
    plan_file = saved.read_if_saved(file)
    planner = None
    if plan_file is not None:
        if targets or archive:
            raise FleetError("a saved plan already fixes its targets and --archive",
                             hint="make a new plan with `fleet diff FILE --target ... --out PLAN`")
        loaded = saved.load_spec(plan_file)  # refuses if the spec changed
        planner = saved.checker(plan_file, loaded)  # refuses if the observed state moved
        if dry_run:
            observed, _ = preview(loaded, targets=plan_file.targets, archive=plan_file.archive)
            print_table(planner(observed), console)
            console.print(f"The saved plan is current: `fleet apply {file}` would do exactly this.")
            return EXIT_OK
        yes = True  # the saved plan is what was reviewed, as with `terraform apply PLANFILE`
    elif dry_run:  # the plan exactly as `fleet diff` shows it; exit 0, as nothing failed
        diff.run(file=file, output="table", targets=targets, console=console, err=err, archive=archive)
        return EXIT_OK
    else:
        loaded = load_fleet(file)
    interactive = sys.stdin.isatty() and console.is_terminal

    def confirm(plan: Plan) -> bool:
        print_table(plan, console)
        if yes:
            return True
        if not interactive:
            raise FleetError("apply needs confirmation but there is no terminal",
                             hint="review with `fleet diff`, then run `fleet apply --yes`")
        answer = console.input("\nApply this plan? Only 'yes' will be accepted: ")
        return answer.strip() == "yes"

    progress = _Progress(console)

    def confirmed(plan: Plan) -> bool:
        ok = confirm(plan)
        if ok:
            progress.start(len(plan.actions))
        return ok

    try:
        result = reconcile_once(loaded, targets=targets, lock_timeout=lock_timeout, grace=grace, archive=archive,
                                confirm=confirmed, on_step=progress.step, planner=planner,
                                saved_plan=planner is not None,
                                on_wait=lambda msg: err.print(f"[yellow]{escape(msg)}[/]"))
    finally:
        progress.stop()
    if not result.plan.has_changes:
        console.print(summary_line(result.plan))
        return EXIT_OK
    if not result.applied:
        console.print("Apply cancelled.")
        return EXIT_OK
    blocked = len(result.plan.blocked) + sum(o.blocked for o in result.outcomes)
    failed = [o for o in result.failed if o.action.kind != BLOCKED and not o.blocked]
    gates = len(result.gates_failed)
    console.print(f"\nApply complete: {len(result.outcomes) - len(failed) - blocked - gates} done, "
                  f"{len(failed)} failed, {blocked} blocked" + (f", {gates} gate(s) failed." if gates else "."))
    if blocked:
        err.print("[bold red]Some actions were refused to protect work (see above); what they concern was "
                  "left in place.[/]")
    return exit_code(blocked=bool(blocked), failed=bool(failed))


class _Progress:
    """A Rich progress bar over the plan's actions, one printed line per outcome."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def start(self, total: int) -> None:
        self.console.print()
        self.bar = Progress(TextColumn("applying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=self.console, transient=True)
        self.task = self.bar.add_task("apply", total=total)
        self.bar.start()

    def step(self, outcome: Outcome) -> None:
        self.console.print(outcome_line(outcome), soft_wrap=True)
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
