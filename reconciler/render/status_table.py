"""The `fleet status` table: status rows laid out to fit a terminal, grouped like an agent view.

Every column has a priority. AGENT, PHASE and REASON are never cut: names and phases are
shown in full, and the reason wraps under its own column. The other columns are added,
most useful first, while they fit the width; `wide` shows them all. Rows are listed by
group (plan/status.py GROUPS: what needs a person first). docs/output.md "The status table".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Protocol

from ..plan.money import usd
from ..plan.status_row import NEEDS_ATTENTION, AgentStatus, grouped, human_age
from .terminal import write_out

if TYPE_CHECKING:  # Rich is imported where it draws: a large table written plain needs none of it
    from rich.console import Group

PHASE_STYLE = {"Running": "cyan", "Succeeded": "green", "Failed": "red", "Blocked": "bold red", "Pending": "yellow",
               "Delivered": "bold green"}
GROUP_STYLE = {NEEDS_ATTENTION: "bold red", "Working": "bold cyan", "Pending": "bold yellow", "Done": "bold green"}
GAP = 2  # spaces between columns
REASON_MIN = 30  # the reason column is at least this wide (or as wide as the longest reason) before others fit


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[AgentStatus], str]
    right: bool = False
    keep: int = 0  # 0: always shown; otherwise lower numbers are kept longer when the width is short


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _name(r: AgentStatus) -> str:
    return r.agent if r.declared else f"{r.agent} (undeclared)"


def _delivery(r: AgentStatus) -> str:
    """spec.delivery: the queue's word and BehindBase (docs/delivery.md)."""
    behind = f"BehindBase: {r.behind_base} commits" if r.behind_base else ""
    return "; ".join(p for p in (r.delivery, behind) if p) or "-"


def _tier(r: AgentStatus) -> str:
    return f"{r.tier or '-'}/{r.model}" if r.model else (r.tier or "-")


# Display order; `keep` is the order in which the optional ones give way (highest number first).
COLUMNS = (
    Column("AGENT", _name),
    Column("PHASE", lambda r: r.phase),
    Column("SYNC", lambda r: r.sync, keep=3),
    Column("TIER/MODEL", _tier, keep=7),
    Column("BRANCH", lambda r: r.branch or "-", keep=10),
    Column("DIRTY", lambda r: _n(r.dirty), right=True, keep=5),
    Column("AHEAD", lambda r: _n(r.ahead), right=True, keep=1),
    Column("PID", lambda r: _n(r.pid), right=True, keep=8),
    Column("NODE", lambda r: r.node or "-", keep=9),
    Column("AGE", lambda r: human_age(r.age_seconds), keep=4),
    Column("IDLE", lambda r: human_age(r.idle_seconds), keep=6),
    Column("COST", lambda r: usd(r.cost_usd) + (f" (+{usd(r.live_usd)} live)" if r.live_usd else ""),
           right=True, keep=2),
    Column("DELIVERY", _delivery, keep=1),  # only for fleets with spec.delivery (layout)
)
REASON = Column("REASON", lambda r: r.reason or "")


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]  # shown, in display order, REASON not included
    widths: tuple[int, ...]
    reason_width: int

    @cached_property
    def phase_at(self) -> int | None:
        """Where PHASE is among `columns` (always shown; None only for a layout made by hand)."""
        return next((i for i, col in enumerate(self.columns) if col.header == "PHASE"), None)


def layout(rows: list[AgentStatus], width: int | None, *, wide: bool = False,
           cells: dict[str, list[str]] | None = None) -> Layout:
    """Which columns fit in `width` (None: no limit) and how wide each one is. `cells`: each
    candidate column's and REASON's cells of `rows`, when the caller has them (`_cells`)."""
    candidates = _candidates(rows)
    if cells is None:
        cells = _cells(rows, candidates)
    natural = {c.header: max([len(c.header), *map(len, cells[c.header])]) for c in candidates}
    reason_max = max([len(REASON.header), *map(len, cells[REASON.header])])
    reason_need = min(reason_max, REASON_MIN)
    chosen = {c.header for c in candidates if c.keep == 0}
    if wide or width is None:
        chosen = {c.header for c in candidates}
    else:
        used = sum(natural[h] + GAP for h in chosen) + reason_need
        for col in sorted((c for c in candidates if c.keep), key=lambda c: c.keep):
            if used + natural[col.header] + GAP <= width:
                chosen.add(col.header)
                used += natural[col.header] + GAP
    shown = tuple(c for c in candidates if c.header in chosen)
    widths = tuple(natural[c.header] for c in shown)
    before = sum(w + GAP for w in widths)
    if width is None:
        reason_width = reason_max
    else:
        # never narrower than REASON_MIN, even where that overflows a tiny terminal (or `wide`)
        reason_width = max(min(reason_max, width - before), reason_need)
    return Layout(shown, widths, max(reason_width, len(REASON.header)))


def _candidates(rows: list[AgentStatus]) -> list[Column]:
    """The columns this table may show: NODE only with a node, DELIVERY only with a queue."""
    nodes = any(r.node for r in rows)
    queue = any(r.delivery or r.behind_base for r in rows)
    return [c for c in COLUMNS if (c.header != "NODE" or nodes) and (c.header != "DELIVERY" or queue)]


def _cells(rows: list[AgentStatus], columns: list[Column]) -> dict[str, list[str]]:
    """header -> the column's cell of each row, in row order; REASON's too."""
    return {c.header: [c.cell(r) for r in rows] for c in (*columns, REASON)}


# Above this many rows the table is written as plain lines (`write_status`): the same
# characters and colours (tests/test_status_view.py compares them), without Rich's per-line
# rendering. Measured at 120 columns in truecolor (best of 5, load 2-8 on 2 CPUs): Rich 1.5 / 22 /
# 51 / 354 ms at 10 / 100 / 200 / 1,000 rows, plain 0.3 / 4 / 6 / 94 ms. From about 100 rows Rich
# costs as much as starting the interpreter (~25 ms): there the plain lines take over.
# `--watch` (Rich Live) stays Rich.
PLAIN_ROWS = 100

Segment = tuple[str, str]  # (text, Rich style; "" for none)


def table_lines(fleet: str, rows: list[AgentStatus], width: int | None, *, wide: bool = False) -> list[list[Segment]]:
    """The grouped table as lines of styled segments: one description for both renderers."""
    cells = _cells(rows, _candidates(rows))  # each cell once, for the widths and for the rows
    lay = layout(rows, width, wide=wide, cells=cells)
    shown = [cells[c.header] for c in lay.columns]
    row_cells = {id(row): ([column[i] for column in shown], cells[REASON.header][i]) for i, row in enumerate(rows)}
    header = "".join((col.header.rjust(w) if col.right else col.header.ljust(w)) + " " * GAP
                     for col, w in zip(lay.columns, lay.widths, strict=True)) + REASON.header
    lines: list[list[Segment]] = [[(f"fleet {fleet}", "italic")], [(header, "bold")]]
    for group, members in grouped(rows):
        lines.append([(f"{group} ({len(members)})", GROUP_STYLE.get(group, "bold"))])
        for row in members:
            lines.extend(_row_lines(row, lay, *row_cells[id(row)]))
    return lines


def status_table(fleet: str, rows: list[AgentStatus], width: int | None, *, wide: bool = False) -> Group:
    """The grouped table, as lines that fit `width` (except with `wide`), for Rich."""
    from rich.console import Group
    from rich.text import Text

    out = []
    for line in table_lines(fleet, rows, width, wide=wide):
        if len(line) == 1:  # a title, a header, a group or a reason's continuation: one style for the line
            out.append(Text(line[0][0], style=line[0][1]))
        else:
            out.append(Text.assemble(*line))
    return Group(*out)


def plain_lines(fleet: str, rows: list[AgentStatus], width: int | None, *, wide: bool = False,
                color_system: str | None = None) -> list[str]:
    """The same table as `status_table`, as strings: ANSI colours for `color_system` (a Rich
    console's `color_system`: "standard", "256", "truecolor"; None: no colour)."""
    paint = _painter(color_system)
    return ["".join(paint(text, style) for text, style in line) for line in table_lines(fleet, rows, width, wide=wide)]


class Screen(Protocol):
    """What `write_status` needs of where it writes: a Rich console, or render/terminal.py's
    PlainStdout (what Rich would do there, without Rich)."""

    @property
    def width(self) -> int: ...

    @property
    def color_system(self) -> str | None: ...

    @property
    def file(self) -> IO[str]: ...


def write_status(console: Screen, fleet: str, rows: list[AgentStatus], *, wide: bool = False) -> bool:
    """Write the table straight to the console's file when it is large (PLAIN_ROWS); False:
    it is not, print `status_table` with Rich instead."""
    if len(rows) <= PLAIN_ROWS:
        return False
    lines = plain_lines(fleet, rows, console.width, wide=wide, color_system=console.color_system)
    write_out(console.file, "\n".join(lines) + "\n")
    return True


def _painter(color_system: str | None) -> Callable[[str, str], str]:
    """text, style -> the text with the ANSI codes Rich would put around it (computed once per style)."""
    if color_system is None:
        return lambda text, style: text
    from rich.console import COLOR_SYSTEMS
    from rich.style import Style

    system = COLOR_SYSTEMS[color_system]
    cache: dict[str, tuple[str, str]] = {}

    def paint(text: str, style: str) -> str:
        if not style or not text:
            return text
        if style not in cache:
            before, _, after = Style.parse(style).render("\0", color_system=system).partition("\0")
            cache[style] = (before, after)
        before, after = cache[style]
        return before + text + after

    return paint


def _row_lines(row: AgentStatus, lay: Layout, values: list[str], text: str) -> list[list[Segment]]:
    """One row's lines; `values`: its cells in `lay.columns`, `text`: its reason. The first
    line is at most three segments: the cells before PHASE, PHASE in its colour, the rest (the
    same characters and styles as a segment per cell: unstyled segments carry no style)."""
    gap = " " * GAP
    cells = [value.rjust(w) if col.right else value.ljust(w)
             for col, w, value in zip(lay.columns, lay.widths, values, strict=True)]
    if len(text) <= lay.reason_width and text.isprintable() and text == text.strip():
        reason = [text]  # what textwrap gives for a line that fits, without its chunking (most rows)
    else:
        import textwrap  # a reason that wraps (or holds tabs and the like): rare

        reason = textwrap.wrap(text, lay.reason_width, break_long_words=True, break_on_hyphens=False) or [""]
    at = lay.phase_at
    if at is None:
        first: list[Segment] = [("".join(cell + gap for cell in cells) + reason[0], "")]
    else:
        first = [("".join(cell + gap for cell in cells[:at]), ""), (cells[at], PHASE_STYLE.get(row.phase, "")),
                 (gap + "".join(cell + gap for cell in cells[at + 1:]) + reason[0], "")]
    _rstrip(first)
    indent = " " * sum(w + GAP for w in lay.widths)
    return [first, *([(indent + more, "")] for more in reason[1:])]


def _rstrip(line: list[Segment]) -> None:
    """Drop trailing spaces, as Rich's `Text.rstrip` does, whatever segment they are in."""
    while line:
        text, style = line[-1]
        stripped = text.rstrip()
        if stripped:
            line[-1] = (stripped, style)
            return
        line.pop()
