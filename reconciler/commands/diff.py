"""`fleet diff FILE`: the plan against observed state. Reads only; runs nothing from the file."""
from __future__ import annotations

from rich.console import Console

from ..errors import EXIT_CHANGES, EXIT_OK
from ..reconcile import preview
from ..render.plan import print_table, to_json, to_markdown
from ..spec.loader import load_fleet


def run(*, file: str, output: str, targets: list[str], console: Console, err: Console,
        archive: bool = False) -> int:
    loaded = load_fleet(file)
    _, the_plan = preview(loaded, targets=targets, archive=archive)
    if output == "json":
        console.print(to_json(the_plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "markdown":
        console.print(to_markdown(the_plan), markup=False, highlight=False, soft_wrap=True)
    else:
        print_table(the_plan, console)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK
