"""`fleet status` reading the loop's snapshot without Rich or psutil: the same output as before.

Where Rich would print plain text (a pipe, a file), the snapshot path writes the table and
its footer itself (render/terminal.py `plain_stdout`), checks liveness from /proc
(control/observed_status.py `running`) and builds rows without their __init__
(plan/status_row.py `row_from_json`). Each is compared here with what it stands for: Rich's
own console and printing, psutil's `is_alive`, `AgentStatus(**row)`, plan/budget.py `usd`,
and the table's former one-segment-per-cell lines.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
from conftest import wait_until, write_fleet
from rich.console import Console
from rich.text import Text
from test_status_view import row as view_row

from reconciler.commands.status import _show_cached
from reconciler.control.observed_status import read_view, running
from reconciler.observe.processes import create_time, is_alive
from reconciler.plan.budget import usd as budget_usd
from reconciler.plan.money import usd
from reconciler.plan.status import AgentStatus, group_of, grouped
from reconciler.plan.status_row import row_from_json
from reconciler.render import terminal
from reconciler.render.status_table import (
    GAP,
    GROUP_STYLE,
    PHASE_STYLE,
    PLAIN_ROWS,
    REASON,
    Layout,
    _painter,
    layout,
    plain_lines,
    status_table,
    table_lines,
    write_status,
)
from reconciler.store.observed import StatusStore, file_digest, write_pointer

FUTURE = "2999-01-01T00:00:00.000+00:00"  # observedAt: ages do not move on while a test runs


def row(name: str, phase: str = "Pending", reason: str | None = None, **kw: object) -> AgentStatus:
    r = view_row(name, phase, reason, **kw)  # the same row test_status_view.py builds, grouped
    r.group = group_of(r)
    return r


REASONS = [None, "", "next apply: start (new agent)", "waiting for a slot " * 8, "a\ttab and\x07bell",
           "  padded  ", "x" * 120, "ends in a space "]
PHASES = ["Succeeded", "Running", "Pending", "Failed", "Blocked", "Delivered", "SomethingNew"]


def varied(n: int) -> list[AgentStatus]:
    return [row(f"agent-{i:04d}" + ("-with-a-much-longer-name" if i % 7 == 0 else ""), PHASES[i % len(PHASES)],
                REASONS[i % len(REASONS)], pid=1000 + i if i % 2 else None, dirty=i % 4, ahead=None if i % 5 else 3,
                cost_usd=[0.0, 0.004, 1.25, 1234.5][i % 4], live_usd=0.01 if i % 6 == 1 else None,
                model="opus" if i % 3 else None, idle_seconds=float(i * 37) if i % 2 else None,
                age_seconds=float(i * 101), declared=i % 11 != 0)
            for i in range(n)]


def former_row_lines(r: AgentStatus, lay: Layout) -> list[list[tuple[str, str]]]:
    """The table's row lines as they were built before: one segment per cell and per gap."""
    first: list[tuple[str, str]] = []
    for col, w in zip(lay.columns, lay.widths, strict=True):
        value = col.cell(r)
        first.append((value.rjust(w) if col.right else value.ljust(w),
                      PHASE_STYLE.get(r.phase, "") if col.header == "PHASE" else ""))
        first.append((" " * GAP, ""))
    text = REASON.cell(r)
    reason = textwrap.wrap(text, lay.reason_width, break_long_words=True, break_on_hyphens=False) or [""]
    if len(text) <= lay.reason_width and text.isprintable() and text == text.strip():
        reason = [text]
    first.append((reason[0], ""))
    while first:  # trailing spaces go, whatever segment they are in
        stripped = first[-1][0].rstrip()
        if stripped:
            first[-1] = (stripped, first[-1][1])
            break
        first.pop()
    indent = sum(w + GAP for w in lay.widths)
    return [first, *([(" " * indent + more, "")] for more in reason[1:])]


def rich_console(width: int, color: str | None) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, highlight=False, force_terminal=color is not None,
                   color_system=color, _environ={}), buf  # type: ignore[arg-type]


@pytest.mark.parametrize(("width", "wide"), [(80, False), (200, False), (40, False), (120, True)])
@pytest.mark.parametrize("color", [None, "standard", "truecolor"])
def test_the_table_draws_as_it_did_with_a_segment_per_cell(width: int, wide: bool, color: str | None) -> None:
    rows = varied(60)
    lay = layout(rows, width, wide=wide)
    title, header = table_lines("demo", rows, width, wide=wide)[:2]
    former = [title, header]
    for group, members in grouped(rows):
        former.append([(f"{group} ({len(members)})", GROUP_STYLE.get(group, "bold"))])
        for r in members:
            former.extend(former_row_lines(r, lay))
    now, now_buf = rich_console(width, color)
    now.print(status_table("demo", rows, width, wide=wide), soft_wrap=True)
    then, then_buf = rich_console(width, color)
    for line in former:
        then.print(Text.assemble(*line), soft_wrap=True)
    assert now_buf.getvalue() == then_buf.getvalue()
    paint = _painter(color)  # and the plain writer's lines: the former segments, painted as it paints
    assert plain_lines("demo", rows, width, wide=wide, color_system=color) == \
        ["".join(paint(text, style) for text, style in line) for line in former]


@pytest.mark.parametrize(("environ", "tty", "width"), [
    ({}, False, terminal.PIPE_WIDTH),
    ({"COLUMNS": "120"}, False, 120),
    ({"COLUMNS": "7"}, False, 7),
    ({"TERM": "dumb", "NO_COLOR": "1"}, False, terminal.PIPE_WIDTH),
    ({"TTY_COMPATIBLE": "0"}, False, None),  # Rich would say plain too; left to Rich all the same
    ({"TTY_COMPATIBLE": "1"}, False, None),
    ({"FORCE_COLOR": "1"}, False, None),
    ({"FORCE_COLOR": ""}, False, None),
    ({"TTY_INTERACTIVE": "1"}, False, None),
    ({"JUPYTER_COLUMNS": "100"}, False, None),
    ({"COLUMNS": "abc"}, False, None),
    ({"COLUMNS": "0"}, False, None),
    ({}, True, None),
    ({"COLUMNS": "120"}, True, None),
])
def test_plain_stdout_only_where_rich_would_print_plain(environ: dict[str, str], tty: bool,
                                                        width: int | None) -> None:
    plain = terminal.plain_stdout(environ, isatty=lambda: tty, platform="linux")
    assert (plain.width if plain else None) == width
    if plain is not None:  # what Rich decides for the same environment and file (cli's console)
        class File(io.StringIO):
            def isatty(self) -> bool:
                return tty

        rich = Console(file=File(), highlight=False, _environ=environ)
        if not rich.is_terminal and "COLUMNS" not in environ:
            rich = Console(file=File(), highlight=False, width=terminal.PIPE_WIDTH, _environ=environ)
        assert (rich.is_terminal, rich.color_system, rich.width) == (False, None, plain.width)


def test_plain_stdout_leaves_windows_to_rich() -> None:
    assert terminal.plain_stdout({}, isatty=lambda: False, platform="win32") is None


@pytest.mark.parametrize("line", ["spend today: $0.00; all-time cost of these agents: $1.25", "ü and 漢字"])
def test_printable_footer_lines_print_as_they_are(line: str) -> None:
    console, buf = rich_console(40, None)
    console.print(Text(line), soft_wrap=True)
    assert terminal.printable(line)
    assert buf.getvalue() == line + "\n"


@pytest.mark.parametrize("line", ["a\ttab", "a\x07bell", "two\nlines", "a\rreturn"])
def test_other_footer_lines_are_left_to_rich(line: str) -> None:
    assert not terminal.printable(line)


@pytest.mark.parametrize(("value", "digits", "shown"), [
    (0.0, None, "$0.00"), (0.00009, None, "$0.00009"), (0.003, None, "$0.003"), (0.0349, None, "$0.035"),
    (0.1, None, "$0.10"), (1234.5678, None, "$1,234.57"), (1234.5678, 0, "$1,235"), (0.0349, 2, "$0.03"),
    (-2.5, None, "$-2.50"),
])
def test_usd_reads_as_an_operator_reads_a_cost(value: float, digits: int | None, shown: str) -> None:
    assert usd(value, digits) == shown
    assert budget_usd is usd  # plan/budget re-exports the one formatter


def test_a_row_from_json_is_the_row_its_init_makes() -> None:
    for r in varied(20):
        data = json.loads(json.dumps(asdict(r), sort_keys=True))
        made = row_from_json(data)
        assert (made, vars(made)) == (AgentStatus(**data), vars(AgentStatus(**data)))
    older = asdict(row("a"))
    del older["behind_base"], older["group"]  # a snapshot from before these fields: their defaults
    assert row_from_json(dict(older)) == AgentStatus(**older)
    with pytest.raises(TypeError):
        row_from_json({**asdict(row("a")), "unknown": 1})


@pytest.fixture
def zombie() -> Iterator[tuple[int, float | None]]:
    """A child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = create_time(child.pid)
    wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
    yield child.pid, created
    child.wait()


def test_running_says_what_psutil_s_is_alive_says(zombie: tuple[int, float | None]) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        me, child = os.getpid(), sleeper.pid
        ended = subprocess.Popen(["true"])
        ended.wait()
        cases = [
            ((me, create_time(me)), True),
            ((child, create_time(child)), True),
            ((child, (create_time(child) or 0) + 1.0), False),  # another process under a reused pid
            ((child, (create_time(child) or 0) - 0.04), True),  # within clock-tick resolution
            (zombie, False),
            ((ended.pid, 1.0), False),
            ((None, 1.0), False),
            ((0, 1.0), False),
            ((me, None), False),
        ]
        assert [(running(*args), is_alive(*args)) for args, _ in cases] == [(want, want) for _, want in cases]
    finally:
        sleeper.kill()
        sleeper.wait()


def snapshot_repo(repo: Path, rows: list[AgentStatus], loop_pid: int, failures: list[dict[str, str]]) -> Path:
    """A repo whose fleet.yaml has a loop's snapshot of `rows`, that loop being `loop_pid`."""
    file = write_fleet(repo, "apiVersion: fleet/v1alpha1\nkind: Fleet\nmetadata: {name: snap}\n")
    store = StatusStore(repo / ".git" / "fleet", "snap")
    store.write_loop({"pid": loop_pid, "create_time": create_time(loop_pid), "file": str(file.resolve()),
                      "lastTick": FUTURE})
    store.write_snapshot({"fleet": "snap", "file": str(file.resolve()), "fileDigest": file_digest(file),
                          "observedAt": FUTURE, "observedBy": "loop", "spendTodayUsd": 1.5, "budgetUsdPerDay": 20.0,
                          "spendTodayByTier": {}, "notifyFailures": failures, "sessions": {},
                          "agents": [asdict(r) for r in rows]})
    write_pointer(file, "snap", store.home)
    return file


def rich_status(file: Path, width: int) -> str:
    """What the snapshot path printed before: everything through a Rich console."""
    read = read_view(file)
    assert read.view is not None
    console, buf = rich_console(width, None)
    _show_cached(read, read.view, "table", console)
    return buf.getvalue()


@pytest.mark.parametrize(("n", "failures", "rich_loaded"), [
    (PLAIN_ROWS + 50, [{"event": "failed", "agent": "agent-0003", "target": "hook", "at": "t", "error": "refused"}],
     False),
    (PLAIN_ROWS + 50, [{"event": "failed", "agent": "", "target": "hook", "at": "t", "error": "a\ttab"}], True),
    (10, [], True),
])
def test_status_prints_the_snapshot_as_rich_did_and_loads_rich_only_when_it_draws(
        repo: Path, n: int, failures: list[dict[str, str]], rich_loaded: bool) -> None:
    loop = subprocess.Popen(["sleep", "120"])  # stands for the loop: a live pid with its start time
    try:
        file = snapshot_repo(repo, varied(n), loop.pid, failures)
        env = {k: v for k, v in os.environ.items() if k not in (*terminal.FORCING, "COLUMNS")}
        cold = subprocess.run([sys.executable, "-X", "importtime", "-m", "reconciler.cli.main", "status", "fleet.yaml"],
                              cwd=repo, env=env, capture_output=True, text=True, check=True)
        imported = {line.split("|")[-1].strip() for line in cold.stderr.splitlines() if line.startswith("import time")}
        assert cold.stdout == rich_status(file, terminal.PIPE_WIDTH)
        assert "by the loop (pid" in cold.stdout
        assert ("rich" in imported, "psutil" in imported) == (rich_loaded, False)
    finally:
        loop.kill()
        loop.wait()


@pytest.mark.parametrize("write", ["table", "footer"])
def test_a_reader_that_went_away_ends_status_as_rich_does(write: str) -> None:
    """`fleet status | head` with the table (over PLAIN_ROWS rows) or the loop's footer written
    directly: the broken pipe ends the command with exit 1 and no crash report, as Rich's console
    does, and stdout is left on /dev/null so Python's flush at exit cannot fail again."""
    read, fd = os.pipe()
    os.close(read)  # the reader is gone: every write fails with EPIPE
    out = os.fdopen(fd, "w")
    try:
        screen = terminal.PlainStdout(80, out)
        with pytest.raises(SystemExit) as ended:
            if write == "table":
                write_status(screen, "t", varied(PLAIN_ROWS + 1))
            else:
                screen.write("spend today: $0.00\n")
        assert ended.value.code == 1
        out.write("x" * 100_000)
        out.flush()  # would raise BrokenPipeError had the fd not been moved to /dev/null
    finally:
        out.close()
