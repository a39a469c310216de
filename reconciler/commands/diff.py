"""`fleet diff FILE`: the plan against observed state. Reads only; runs nothing from the file.

`--base-rev REV` shows the spec-level change since REV instead; `--out PLANFILE` (or
`-o plan`) also saves the plan for `fleet apply PLANFILE`. Without `--connect` it opens
no connection: a ray fleet is planned from local state (docs/gitops.md, "Running diff on
untrusted pull requests").
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..control.converge import preview
from ..engines import engine_for
from ..errors import EXIT_CHANGES, EXIT_OK, FleetError
from ..observe.reach import check_base
from ..render.plan import print_table, to_json, to_markdown
from ..spec.loader import load_fleet
from .validate import warn_programs


def run(*, file: str, output: str, targets: list[str], console: Console, err: Console,
        archive: bool = False, base_rev: str | None = None, out_file: str | None = None,
        connect: bool = False) -> int:
    if base_rev is not None:
        if targets or archive or out_file or connect or output == "plan":
            raise FleetError("--base-rev compares the spec at two revisions; it takes no --target, --archive, "
                             "--out, --connect or -o plan", hint="run `fleet diff FILE` for the plan against the fleet")
        return _spec_diff(file, base_rev, output, console)
    loaded = load_fleet(file)
    # a file's addresses (placement.address, spec.remote) are reached only when asked: it may be a pull request's;
    # an engine that connects nowhere is made first, so its repo handle serves the base check too
    engine = engine_for(loaded, connect=False) if not connect else None
    check_base(loaded, engine.repo if engine is not None else None)
    warn_programs(loaded, err)
    engine = engine or engine_for(loaded, connect=connect)
    if (out_file is not None or output == "plan") and not engine.supports_saved_plans:
        # refused before anything is observed: `fleet apply PLANFILE` would refuse the file anyway
        raise FleetError(f"saved plans are not supported with placement.engine {engine.name}: a plan of a "
                         f"{engine.name} fleet cannot pin the cluster's state it was made from",
                         hint=f"review with `fleet diff {file}`, then run `fleet apply {file}` (it shows the plan "
                              "it acts on and asks first)")
    observed, the_plan = preview(loaded, targets=targets, archive=archive, engine=engine)
    if out_file is not None or output == "plan":
        from ..plan import saved

        kept = saved.save(loaded, observed, the_plan, targets=targets, archive=archive)
        if out_file is not None:
            saved.write(kept, out_file)
            err.print(f"Saved the plan to {out_file}; apply exactly this with `fleet apply {out_file}`.",
                      markup=False, highlight=False)
        if output == "plan":
            console.print(saved.to_text(kept), markup=False, highlight=False, soft_wrap=True)
    if output == "json":
        console.print(to_json(the_plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "markdown":
        console.print(to_markdown(the_plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "table":
        print_table(the_plan, console)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


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
