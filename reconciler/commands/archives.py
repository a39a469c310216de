"""`fleet archives [FILE]`: what fleet saved before pruning, and how to get it back;
`fleet archives prune [FILE] --older-than D`: drop the archives that hold nothing `base` lacks."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..act.archive import list_archives
from ..act.restore import drop, prunable
from ..errors import EXIT_OK
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home
from ..spec.durations import parse_duration
from ..spec.loader import load_fleet
from ..store import clock


def run(*, file: str, output: str, console: Console, err: Console, older_than: str | None = None,
        dry_run: bool = False) -> int:
    if older_than is not None:
        return prune(file=file, older_than=older_than, dry_run=dry_run, console=console, err=err)
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
    for col in ("AGENT", "DATE", "KIND", "REF", "COMMIT"):
        table.add_column(col, no_wrap=True)
    for a in found:
        kind = "retention" if a.subject.startswith("fleet retention archive") else "work"
        table.add_row(a.agent, a.date, kind, a.ref, a.commit[:12])
    console.print(table)
    if on_remote:  # `fleet restore` fetches the ref from the remote (engines/ray/restore.py)
        console.print(f"kept on {resolve_url(loaded)}. restore one: fleet restore {file} AGENT [TIME]    (the "
                      "newest archive of AGENT without TIME; a fenced attempt's work: its number, or its REF)",
                      markup=False)
        return EXIT_OK
    console.print(f"restore one: fleet restore {file} AGENT [TIME]    (the newest of AGENT without TIME)",
                  markup=False)
    return EXIT_OK


def prune(*, file: str, older_than: str, dry_run: bool, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    gc = loaded.fleet.spec.gc
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command="fleet archives prune",
                    on_wait=lambda m: err.print(f"[yellow]{escape(m)}[/]")):
        found = prunable(repo, loaded.name, base=loaded.fleet.spec.base, older_than=parse_duration(older_than),
                         retention=parse_duration(gc.archiveRetention), now=clock.now())
        for archive, why in found:
            if not dry_run:
                drop(repo, archive)
            console.print(f"{'would drop' if dry_run else 'dropped'} {archive.ref}: {why}", markup=False)
    kept = len(list_archives(repo, loaded.name))
    console.print(f"{len(found)} archive(s) {'to drop' if dry_run else 'dropped'}, {kept} kept "
                  f"(an archive with work that {loaded.fleet.spec.base} lacks is never dropped)", markup=False)
    return EXIT_OK
