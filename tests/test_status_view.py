"""`fleet status` as a person reads it: grouped rows, a table that fits the terminal, `--watch`.

The grouping and the layout are pure (plan/status.py `group_of`, render/status_table.py
`layout`): table-driven tests. The CLI runs against real repos with the demo fleet
(fleets/demo.yaml) and a fleet with a Blocked agent, at 80 columns.
"""
from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, fleet, git, session_pids, wait_until
from rich.console import Console

from reconciler.plan.status import DONE, NEEDS_ATTENTION, PENDING, WORKING, AgentStatus, group_of, grouped
from reconciler.render.status_table import PLAIN_ROWS, layout, status_table, write_status

FLEETS = ROOT / "fleets"


def row(name: str = "a", phase: str = "Pending", reason: str | None = None, **kw: object) -> AgentStatus:
    base: dict[str, object] = dict(
        agent=name, declared=True, phase=phase, sync="Synced", tier="local", runtime="command", model=None,
        branch=f"fleet/demo/{name}", worktree=None, dirty=0, ahead=1, pid=None, started_at=None, finished_at=None,
        age_seconds=5.0, idle_seconds=None, exit_code=None, attempts=1, cost_usd=0.0, session_id=None,
        spec_hash=None, observed_generation=None, reason=reason)
    base.update(kw)
    return AgentStatus(**base)  # type: ignore[arg-type]


def cond(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": kind, "message": "", "lastTransitionTime": "t"}


@pytest.mark.parametrize(("phase", "conditions", "group"), [
    ("Failed", [], NEEDS_ATTENTION),
    ("Blocked", [], NEEDS_ATTENTION),
    ("Pending", [cond("Stalled")], NEEDS_ATTENTION),
    ("Pending", [cond("BudgetExhausted")], NEEDS_ATTENTION),
    ("Pending", [cond("BudgetExhausted", "False")], PENDING),
    ("Pending", [cond("PilotWaiting")], NEEDS_ATTENTION),
    ("Succeeded", [cond("MergeConflict")], NEEDS_ATTENTION),
    ("Running", [], WORKING),
    ("Running", [cond("Stalled", "False")], WORKING),
    ("Pending", [cond("Ready", "False")], PENDING),
    ("Succeeded", [cond("Ready")], DONE),
])
def test_group_of_a_row(phase: str, conditions: list[dict[str, str]], group: str) -> None:
    assert group_of(row(phase=phase, conditions=conditions)) == group


def test_a_condition_left_from_an_earlier_run_does_not_count() -> None:
    stalled = {**cond("Stalled"), "lastTransitionTime": "2026-01-01T12:00:00.000+00:00"}
    assert group_of(row(phase="Succeeded", conditions=[stalled], started_at="2026-01-01T12:05:00.000+00:00")) == DONE
    assert group_of(row(phase="Succeeded", conditions=[stalled], started_at="2026-01-01T11:55:00.000+00:00")) \
        == NEEDS_ATTENTION


def test_groups_come_in_agent_view_order_and_keep_file_order_inside() -> None:
    rows = [row("d1", "Succeeded"), row("w", "Running"), row("f", "Failed"), row("p", "Pending"),
            row("d2", "Succeeded")]
    for r in rows:
        r.group = group_of(r)
    assert [(g, [r.agent for r in rs]) for g, rs in grouped(rows)] == [
        (NEEDS_ATTENTION, ["f"]), (WORKING, ["w"]), (PENDING, ["p"]), (DONE, ["d1", "d2"])]


LONG = "spawn waits: tier local maxRunning=2 reached (2 running or starting); and then some more words"


@pytest.mark.parametrize(("width", "shown"), [
    (200, ["AGENT", "PHASE", "SYNC", "TIER/MODEL", "BRANCH", "DIRTY", "AHEAD", "PID", "AGE", "IDLE", "COST"]),
    (100, ["AGENT", "PHASE", "SYNC", "DIRTY", "AHEAD", "AGE", "IDLE", "COST"]),
    (80, ["AGENT", "PHASE", "SYNC", "AHEAD", "COST"]),
    (60, ["AGENT", "PHASE"]),
    (30, ["AGENT", "PHASE"]),
])
def test_columns_give_way_least_useful_first(width: int, shown: list[str]) -> None:
    rows = [row("notes-storage", "Succeeded"), row("notes-api", "Pending", LONG)]
    lay = layout(rows, width)
    assert [c.header for c in lay.columns] == shown
    assert lay.widths[:2] == (len("notes-storage"), len("Succeeded"))  # never cut
    assert lay.reason_width >= 30


def test_wide_shows_every_column() -> None:
    lay = layout([row("a", node="10.0.0.2")], 40, wide=True)
    assert [c.header for c in lay.columns][-5:] == ["PID", "NODE", "AGE", "IDLE", "COST"]


def many_rows(n: int) -> list[AgentStatus]:
    phases = ["Succeeded", "Running", "Pending", "Failed", "Blocked"]
    rows = [row(f"agent-with-a-long-name-{i:04d}", phases[i % 5], LONG if i % 3 == 0 else None, pid=1000 + i)
            for i in range(n)]
    for r in rows:
        r.group = group_of(r)
    return rows


def printed(rows: list[AgentStatus], width: int, color: str | None) -> tuple[str, str]:
    """(what write_status writes, what Rich prints for the same table) on one kind of console."""
    def console() -> tuple[Console, io.StringIO]:
        buf = io.StringIO()
        return Console(file=buf, width=width, highlight=False, force_terminal=color is not None,
                       color_system=color, _environ={}), buf  # type: ignore[arg-type]

    plain, plain_buf = console()
    assert write_status(plain, "demo", rows)
    rich, rich_buf = console()
    rich.print(status_table("demo", rows, width), soft_wrap=True)
    return plain_buf.getvalue(), rich_buf.getvalue()


@pytest.mark.parametrize("color", [None, "standard", "256", "truecolor"])
def test_a_large_table_is_written_plain_with_rich_s_characters_and_colours(color: str | None) -> None:
    rows = many_rows(300)
    assert len(rows) > PLAIN_ROWS
    plain, rich = printed(rows, 80, color)
    assert plain == rich
    assert ("\x1b[" in plain) is (color is not None)


def test_the_plain_table_at_80_columns_keeps_every_name_phase_and_reason_whole() -> None:
    rows = many_rows(300)
    out, _ = printed(rows, 80, None)
    assert_fits_and_is_complete(out, [{"agent": r.agent, "phase": r.phase, "reason": r.reason} for r in rows])
    lines = out.splitlines()
    assert lines[1].split() == ["AGENT", "PHASE", "AHEAD", "REASON"]  # the rest gave way to the long names
    attention = lines.index("Needs attention (120)")
    assert lines[attention + 1].startswith("agent-with-a-long-name-0003 ")  # the first Failed one
    assert [line for line in lines if line in ("Working (60)", "Pending (60)", "Done (60)")] == \
        ["Working (60)", "Pending (60)", "Done (60)"]


def test_a_normal_sized_table_is_left_to_rich() -> None:
    console = Console(file=io.StringIO(), width=80)
    assert not write_status(console, "demo", many_rows(PLAIN_ROWS))
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def demo_repo(repo: Path) -> Path:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    return repo


def assert_fits_and_is_complete(out: str, rows: list[dict], width: int = 80) -> None:  # type: ignore[type-arg]
    """Every line fits; every agent's full name, full phase and full reason are there."""
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    flat = " ".join(out.split())
    for r in rows:
        line = next(line for line in lines if line.startswith(r["agent"] + " "))
        assert line.split()[:2] == [r["agent"], r["phase"]], line
        if r["reason"]:
            assert " ".join(r["reason"].split()) in flat, r["reason"]


def test_status_at_80_columns_shows_every_name_phase_and_reason_of_the_demo_fleet(repo: Path) -> None:
    demo_repo(repo)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: not session_pids(repo), timeout=60)  # two done, the third waiting: nothing moves
    rows = json.loads(fleet("status", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    assert any(r["reason"] for r in rows)
    out = fleet("status", cwd=repo, env={"COLUMNS": "80"}, check=True).stdout
    assert_fits_and_is_complete(out, rows)
    assert [line for line in out.splitlines() if line.split()[0] in ("Working", "Pending", "Done", "Needs")]


def test_status_at_80_columns_shows_a_blocked_agents_whole_reason_under_needs_attention(repo: Path) -> None:
    demo_repo(repo)
    git(repo, "branch", "fleet/demo/notes-api")  # not the fleet's: the agent is Blocked
    fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    wait_until(lambda: not session_pids(repo), timeout=60)
    rows = json.loads(fleet("status", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    blocked = next(r for r in rows if r["agent"] == "notes-api")
    assert (blocked["phase"], blocked["group"]) == ("Blocked", NEEDS_ATTENTION)
    assert len(blocked["reason"]) > 60  # longer than fits beside the columns: it wraps
    out = fleet("status", cwd=repo, env={"COLUMNS": "80"}, check=True).stdout
    assert_fits_and_is_complete(out, rows)
    lines = out.splitlines()
    attention = lines.index("Needs attention (1)")
    assert lines[attention + 1].startswith("notes-api ")
    wide = fleet("status", "-o", "wide", cwd=repo, env={"COLUMNS": "80"}, check=True).stdout
    assert "BRANCH" in wide and "TIER/MODEL" in wide and "BRANCH" not in out


def read_until(fd: int, needle: str, seen: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in "".join(seen):
        assert time.monotonic() < deadline, f"{needle!r} never shown: {''.join(seen)[-2000:]}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen.append(os.read(fd, 65536).decode(errors="replace"))
            except OSError:  # the other end closed
                return


def test_watch_redraws_in_place_when_a_record_changes_and_ctrl_c_exits_0(repo: Path) -> None:
    demo_repo(repo)
    main, child = pty.openpty()  # a real terminal: Rich Live redraws in place only there
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "status", "--watch", "--interval", "0.2"],
                            cwd=repo, stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    seen: list[str] = []
    try:
        read_until(main, "Pending (3)", seen)
        fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # two start, the records change
        wait_until(lambda: not session_pids(repo), timeout=60)
        read_until(main, "Done (2)", seen)
        assert "\x1b[" in "".join(seen)  # cursor movement: the same lines redrawn, not appended
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
