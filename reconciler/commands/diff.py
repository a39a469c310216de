"""`fleet diff FILE`: the plan against observed state. Reads only; runs nothing from the file.

`--base-rev REV` shows the spec-level change since REV instead; `--out PLANFILE` (or
`-o plan`) also saves the plan for `fleet apply PLANFILE`. Without `--connect` it opens
no connection: a ray fleet is planned from local state (docs/gitops.md, "Running diff on
untrusted pull requests").

Written to a pipe or a file (render/terminal.py `plain_stdout`), the plan is written as the
text Rich would write there, without importing Rich (`run_plain`): `fleet diff` in CI and
in scripts starts faster (docs/benchmarks.md "Start-up import budget").
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..control.converge import preview
from ..engines import engine_for
from ..errors import EXIT_CHANGES, EXIT_OK, FleetError
from ..observe.reach import check_base
from ..plan.actions import Plan
from ..render import terminal
from ..render.plan import print_table, table_lines, to_json, to_markdown
from ..spec.loader import LoadedFleet, load_fleet

if TYPE_CHECKING:
    from rich.console import Console

    from ..engines.base import Engine
    from ..observe.model import Observed


def run_plain(*, file: str, output: str, targets: list[str], archive: bool = False, base_rev: str | None = None,
              out_file: str | None = None, connect: bool = False) -> int | None:
    """`run` on a PlainStdout, without Rich where Rich would write only the characters; None:
    `run` (cli/main.py calls this first, before it makes any console). A saved plan and
    --base-rev are left to `run`."""
    if base_rev is not None or out_file is not None or output not in ("table", "json", "markdown"):
        return None
    plain = terminal.plain_stdout()
    if plain is None:
        return None
    _, _, _, the_plan = _plan(file, targets=targets, archive=archive, connect=connect,
                              err=lambda: terminal.console(stderr=True))
    if output == "table":
        lines = table_lines(the_plan)
    else:  # one string, printed soft-wrapped: its lines as they are
        document = to_json(the_plan) if output == "json" else to_markdown(the_plan)
        lines = [(line, True) for line in document.split("\n")]
    text = terminal.plain_text(lines, plain.width)
    if text is None:  # a line Rich would change (wrap it, expand a tab, an emoji code): Rich prints the plan
        _print(the_plan, output, terminal.console())
    else:
        plain.write(text)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def run(*, file: str, output: str, targets: list[str], console: Console, err: Console,
        archive: bool = False, base_rev: str | None = None, out_file: str | None = None,
        connect: bool = False) -> int:
    if base_rev is not None:
        if targets or archive or out_file or connect or output == "plan":
            raise FleetError("--base-rev compares the spec at two revisions; it takes no --target, --archive, "
                             "--out, --connect or -o plan", hint="run `fleet diff FILE` for the plan against the fleet")
        return _spec_diff(file, base_rev, output, console)
    loaded, engine, observed, the_plan = _plan(file, targets=targets, archive=archive, connect=connect,
                                               err=lambda: err, saving=out_file is not None or output == "plan")
    if out_file is not None or output == "plan":
        from ..plan import saved

        kept = saved.save(loaded, observed, the_plan, targets=targets, archive=archive)
        if out_file is not None:
            saved.write(kept, out_file)
            err.print(f"Saved the plan to {out_file}; apply exactly this with `fleet apply {out_file}`.",
                      markup=False, highlight=False)
        if output == "plan":
            console.print(saved.to_text(kept), markup=False, highlight=False, soft_wrap=True)
    _print(the_plan, output, console)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def _plan(file: str, *, targets: list[str], archive: bool, connect: bool, err: Callable[[], Console],
          saving: bool = False) -> tuple[LoadedFleet, Engine, Observed, Plan]:
    """Load, check and observe the fleet, and plan it; `err`: the console for warnings, made
    only when there is one to print."""
    from ..act.programs import program_warnings

    loaded = load_fleet(file)
    # a file's addresses (placement.address, spec.remote) are reached only when asked: it may be a pull request's;
    # an engine that connects nowhere is made first, so its repo handle serves the base check too
    engine = engine_for(loaded, connect=False) if not connect else None
    check_base(loaded, engine.repo if engine is not None else None)
    if program_warnings(loaded):  # then printed as `fleet validate` prints them (it imports Rich)
        from .validate import warn_programs

        warn_programs(loaded, err())
    engine = engine or engine_for(loaded, connect=connect)
    if saving and not engine.supports_saved_plans:
        # refused before anything is observed: `fleet apply PLANFILE` would refuse the file anyway
        raise FleetError(f"saved plans are not supported with placement.engine {engine.name}: a plan of a "
                         f"{engine.name} fleet cannot pin the cluster's state it was made from",
                         hint=f"review with `fleet diff {file}`, then run `fleet apply {file}` (it shows the plan "
                              "it acts on and asks first)")
    observed, the_plan = preview(loaded, targets=targets, archive=archive, engine=engine)
    return loaded, engine, observed, the_plan


def _print(the_plan: Plan, output: str, console: Console) -> None:
    if output == "json":
        console.print(to_json(the_plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "markdown":
        console.print(to_markdown(the_plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "table":
        print_table(the_plan, console)


def _spec_diff(file: str, rev: str, output: str, console: Console) -> int:
    from ..observe.gitrepo import file_at_revision
    from ..plan.revdiff import diff_specs, load_base
    from ..render import revdiff as render

    now = load_fleet(file)
    at = file_at_revision(Path(file), rev)
    before, notes = load_base(at, Path(file))
    diff = diff_specs(before, now, rev=rev, commit=at.commit, file=file, notes=notes)
    if output == "json":
        console.print(render.to_json(diff), markup=False, highlight=False, soft_wrap=True)
    elif output == "markdown":
        console.print(render.to_markdown(diff), markup=False, highlight=False, soft_wrap=True)
    else:
        render.print_table(diff, console)
    return EXIT_CHANGES if diff.has_changes else EXIT_OK
