"""`fleet diff` on a pipe without Rich: the same bytes Rich writes there.

Where Rich would print plain text (render/terminal.py `plain_stdout`), commands/diff.py
`run_plain` writes `table_lines` (or the JSON / Markdown document) itself, or, for a line
Rich would change, lets Rich print the plan. Each plan below is printed both ways and
compared byte for byte; then the command itself, on a pipe, against Rich's output of the
same plan.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, git, write_fleet
from rich.console import Console

from reconciler.plan.actions import BLOCKED, CREATE_WORKTREE, PRUNE, SPAWN, STOP, WAIT, Action, Plan
from reconciler.render import terminal
from reconciler.render.plan import print_table, table_lines, to_json, to_markdown

WIDTH = terminal.PIPE_WIDTH
LONG = "x" * (WIDTH + 5)

PLANS = {
    "converged": Plan("f", ()),
    "converged with a note": Plan("f", (), notes=("foreign worktree /tmp/w on branch b",)),
    "create and spawn": Plan("f", (Action(CREATE_WORKTREE, "a", "no worktree; branch fleet/f/a from main", "local"),
                                   Action(SPAWN, "a", "new agent", "local"),
                                   Action(SPAWN, "longer-name", "new agent", "local"))),
    "markup and backslashes in text": Plan("f", (Action(SPAWN, "a", "reason [bold]not markup[/] and \\[x] \\ end"),),
                                           notes=("[red]a note[/]",)),
    "details": Plan("f", (Action(PRUNE, "a", "undeclared", details={
        "files": ["src/a.py", "b c.txt"], "commits": ["abc123 message"], "locked": True,
        "ignored": {"count": 3, "bytes": 10, "some": ["x", "y"]}}),
        Action(BLOCKED, "b", "work at stake", details={"worktree": "/w/b", "branch": "fleet/f/b",
                                                        "files": ["  leading and trailing  "]}))),
    "empty and space-padded texts": Plan("f", (Action(SPAWN, "a", ""), Action(SPAWN, "bbbbbb", "  r  "),
                                              Action(WAIT, "c", "x", details={"files": ["", " "]})),
                                         notes=("", " n ")),
    "a long reason (soft-wrapped: never wrapped)": Plan("f", (Action(WAIT, "a", LONG),)),
    "non-ASCII in a soft-wrapped line": Plan("f", (Action(STOP, "ä-名前", "orphan: ü 名前"),)),
    # Rich would change these: run_plain leaves them to Rich (plain_text is None)
    "a long detail line (wrapped)": Plan("f", (Action(PRUNE, "a", "undeclared", details={"files": [LONG]}),)),
    "non-ASCII in a wrapped line": Plan("f", (Action(PRUNE, "a", "undeclared", details={"files": ["名前.txt"]}),)),
    "a tab": Plan("f", (Action(SPAWN, "a", "a\ttab"),)),
    "an emoji code": Plan("f", (Action(SPAWN, "a", "look :thumbs_up: here"),)),
    "a control character": Plan("f", (Action(SPAWN, "a", "bell \x07"),)),
}
# what Rich would print changed (wrapped, tabs expanded, an emoji, a control code stripped), per
# output: run_plain lets Rich print these. JSON escapes tabs, control and non-ASCII characters.
LEFT_TO_RICH = {
    "table": {"a long detail line (wrapped)", "non-ASCII in a wrapped line", "a tab", "an emoji code",
              "a control character"},
    "json": {"an emoji code"},
    "markdown": {"a tab", "an emoji code", "a control character"},
}
CASES = [(name, output) for output in LEFT_TO_RICH for name in PLANS]


def rich_console() -> tuple[Console, io.StringIO]:
    """What render/terminal.py `console()` makes on a pipe with COLUMNS unset."""
    out = io.StringIO()
    return Console(file=out, highlight=False, width=WIDTH, force_terminal=False, color_system=None), out


def by_rich(plan: Plan, output: str) -> str:
    console, out = rich_console()
    if output == "table":
        print_table(plan, console)
    else:
        console.print(to_json(plan) if output == "json" else to_markdown(plan), markup=False, highlight=False,
                      soft_wrap=True)
    return out.getvalue()


def plain(plan: Plan, output: str) -> str | None:
    if output == "table":
        return terminal.plain_text(table_lines(plan), WIDTH)
    text = to_json(plan) if output == "json" else to_markdown(plan)
    return terminal.plain_text([(line, True) for line in text.split("\n")], WIDTH)


@pytest.mark.parametrize(("name", "output"), [c for c in CASES if c[0] not in LEFT_TO_RICH[c[1]]])
def test_written_plain_it_is_what_rich_prints(name: str, output: str) -> None:
    assert plain(PLANS[name], output) == by_rich(PLANS[name], output)


@pytest.mark.parametrize(("name", "output"), [c for c in CASES if c[0] in LEFT_TO_RICH[c[1]]])
def test_what_rich_would_change_is_left_to_rich(name: str, output: str) -> None:
    assert plain(PLANS[name], output) is None


@pytest.mark.parametrize("output", ["table", "json", "markdown"])
def test_fleet_diff_on_a_pipe_writes_what_rich_wrote(tmp_path: Path, output: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# r\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "initial commit")
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - {name: a, tier: local, command: ["true"]}
            - {name: b-longer, tier: local, command: ["true"], prompt: "[bold]x[/] :smile:"}
    """)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "PYTHONPATH": str(ROOT),
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    probe = ("import runpy, sys; sys.argv = ['fleet', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('reconciler.cli.main', run_name='__main__')\n"
             "finally:\n    sys.stderr.write('\\nRICH ' + str('rich' in sys.modules) + '\\n')\n")
    proc = subprocess.run([sys.executable, "-c", probe, "diff", "fleet.yaml", "-o", output], cwd=repo,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr  # changes: two agents to create
    assert "RICH False" in proc.stderr  # written without Rich
    # the same plan, printed by Rich as before
    code = ("import sys; from reconciler.spec.loader import load_fleet; "
            "from reconciler.control.converge import preview; "
            "from test_render_plan_plain import by_rich; "
            f"sys.stdout.write(by_rich(preview(load_fleet('fleet.yaml'))[1], {output!r}))")
    expected = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                              env={**env, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}, timeout=120, check=True)
    assert proc.stdout == expected.stdout
    if output == "json":
        assert json.loads(proc.stdout)["changes"] is True


@pytest.mark.parametrize("command", [["diff"], ["status"], ["status", "-o", "json"]])
def test_a_reader_that_went_away_ends_the_command_as_rich_does(tmp_path: Path, command: list[str]) -> None:
    """`fleet diff | head`, `fleet status | head`: the pipe's reader is gone before the output is
    written. Rich exits 1 with nothing on stderr; so does the plain path (no crash report)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# r\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "initial commit")
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - {name: a, tier: local, command: ["true"]}
    """)
    read, write = os.pipe()
    os.close(read)  # the reader is gone: every write to the pipe fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli.main", *command, "fleet.yaml"], cwd=repo,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "PYTHONPATH": str(ROOT),
                                   "GIT_CONFIG_GLOBAL": "/dev/null"})
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (1, "")
