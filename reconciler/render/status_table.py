"""The `fleet status` table: status rows laid out to fit a terminal, grouped like an agent view.

Every column has a priority. AGENT, PHASE and REASON are never cut: names and phases are
shown in full, and the reason wraps under its own column. The other columns are added,
most useful first, while they fit the width; `wide` shows them all. Rows are listed by
group (plan/status.py GROUPS: what needs a person first). docs/output.md "The status table".
"""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text

from ..plan.status import NEEDS_ATTENTION, AgentStatus, grouped, human_age

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
    Column("COST", lambda r: f"${r.cost_usd:.2f}", right=True, keep=2),
    Column("DELIVERY", _delivery, keep=1),  # only for fleets with spec.delivery (layout)
)
REASON = Column("REASON", lambda r: r.reason or "")


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]  # shown, in display order, REASON not included
    widths: tuple[int, ...]
    reason_width: int


def layout(rows: list[AgentStatus], width: int | None, *, wide: bool = False) -> Layout:
    """Which columns fit in `width` (None: no limit) and how wide each one is."""
    nodes = any(r.node for r in rows)
    queue = any(r.delivery or r.behind_base for r in rows)
    candidates = [c for c in COLUMNS if (c.header != "NODE" or nodes) and (c.header != "DELIVERY" or queue)]
    natural = {c.header: max([len(c.header), *(len(c.cell(r)) for r in rows)]) for c in candidates}
    reason_max = max([len(REASON.header), *(len(REASON.cell(r)) for r in rows)])
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


def status_table(fleet: str, rows: list[AgentStatus], width: int | None, *, wide: bool = False) -> Group:
    """The grouped table, as lines that fit `width` (except with `wide`)."""
    lay = layout(rows, width, wide=wide)
    lines: list[Text] = [Text(f"fleet {fleet}", style="italic")]
    header = Text(style="bold")
    for col, w in zip(lay.columns, lay.widths, strict=True):
        header.append((col.header.rjust(w) if col.right else col.header.ljust(w)) + " " * GAP)
    header.append(REASON.header)
    lines.append(header)
    for group, members in grouped(rows):
        lines.append(Text(f"{group} ({len(members)})", style=GROUP_STYLE.get(group, "bold")))
        for row in members:
            lines.extend(_row_lines(row, lay))
    return Group(*lines)


def _row_lines(row: AgentStatus, lay: Layout) -> list[Text]:
    first = Text()
    for col, w in zip(lay.columns, lay.widths, strict=True):
        value = col.cell(row)
        padded = value.rjust(w) if col.right else value.ljust(w)
        style = PHASE_STYLE.get(row.phase, "") if col.header == "PHASE" else ""
        first.append(padded, style=style)
        first.append(" " * GAP)
    indent = sum(w + GAP for w in lay.widths)
    reason = textwrap.wrap(REASON.cell(row), lay.reason_width, break_long_words=True, break_on_hyphens=False) or [""]
    first.append(reason[0])
    first.rstrip()
    return [first, *(Text(" " * indent + more) for more in reason[1:])]
