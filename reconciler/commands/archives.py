"""`fleet archives FILE`: what fleet saved before pruning, and how to get it back."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ..act.archive import list_archives
from ..errors import EXIT_OK
from ..observe.gitrepo import GitRepo
from ..spec.loader import load_fleet


def run(*, file: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    on_remote = loaded.fleet.spec.placement.engine == "ray"
    if on_remote:  # kept on spec.remote, where the nodes pushed them (engines/ray/remote.py)
        from ..engines.ray.remote import remote_archives, resolve_url

        found = remote_archives(loaded)
    else:
        found = list_archives(GitRepo(loaded.repo), loaded.name)
    if output == "json":
        console.print(json.dumps([{**asdict(a), "agent": a.agent} for a in found], indent=2), markup=False,
                      soft_wrap=True)
        return EXIT_OK
    if not found:
        console.print(f"No archives for fleet {loaded.name}.")
        return EXIT_OK
    table = Table(title=f"archives of fleet {loaded.name}", title_justify="left", header_style="bold")
    for col in ("AGENT", "DATE", "REF", "COMMIT"):
        table.add_column(col, no_wrap=True)
    for a in found:
        table.add_row(a.agent, a.date, a.ref, a.commit[:12])
    console.print(table)
    if on_remote:
        console.print(f"on {resolve_url(loaded)}: first git fetch {resolve_url(loaded)} '<ref>:<ref>'", markup=False)
    console.print("restore the files: git worktree add <dir> <ref>    restore the branch: git branch <name> <ref>^1",
                  markup=False)
    return EXIT_OK
