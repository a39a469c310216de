"""A review packet (observe/review.py) as Markdown: `fleet review -o markdown` and the body of a
delivery pull request. Pure formatting; deterministic for one packet."""
from __future__ import annotations

from collections.abc import Sequence

from ..observe.model import Packet

MARKER = "<!-- fleet-review -->"


def packet_markdown(p: Packet, *, level: int = 3) -> str:
    h = "#" * level
    out = [f"{h} `{p.agent}` ({p.phase or 'not run'}): review", "",
           f"- branch `{p.branch}` against `{p.against}`, {len(p.commits)} commit(s), cost ${p.cost_usd:.4f}"]
    if p.delivery.get("state"):
        out.append(f"- delivery: {p.delivery['state']}" + (f" at `{str(p.delivery.get('result', ''))[:12]}`"
                                                            if p.delivery.get("result") else ""))
    for key in ("approved", "rejected"):
        if isinstance(p.delivery.get(key), dict):
            d = p.delivery[key]
            out.append(f"- {key} by {d.get('by')} at {d.get('at')}" + (f": {d['message']}" if d.get("message") else ""))
    out += ["", f"{h}# Final message", "", _quote(p.final_message or "(none)"), "", f"{h}# Commits", ""]
    out += [f"- `{c.split(' ', 1)[0]}` {c.split(' ', 1)[1] if ' ' in c else ''}" for c in p.commits] or ["(none)"]
    out += ["", f"{h}# Diffstat against `{p.against}`", "", "```", p.diffstat or "(no changes)", "```", "",
            f"{h}# Gates", ""]
    cond = p.gates.get("condition") or {}
    out.append(f"- agent gates {', '.join(p.gates.get('declared') or []) or '(none)'}: "
               f"{cond.get('reason', 'not run')}" + (f" ({cond['message']})" if cond.get("message") else ""))
    if p.gates.get("delivery"):
        out.append(f"- delivery gates on the merged result: {', '.join(p.gates['delivery'])}")
    last = p.gates.get("last")
    if last:
        out += [f"- last failure: `{last.get('name')}` exit {last.get('exit_code')}", "", "```",
                str(last.get("output", ""))[-2000:], "```"]
    out += ["", f"{h}# Conditions", "", "| type | status | reason | message |", "|---|---|---|---|"]
    out += [f"| {c['type']} | {c['status']} | {c['reason']} | {_cell(c.get('message', ''))} |" for c in p.conditions]
    return "\n".join(out) + "\n"


def pull_request_body(fleet: str, into: str, packets: Sequence[Packet]) -> str:
    out = [MARKER, f"## fleet `{fleet}`: delivered into `{into}`", "",
           f"{len(packets)} agent(s) delivered through the merge queue; each was gated on the merged result.", ""]
    for p in packets:
        out += ["<details>", f"<summary><code>{p.agent}</code>: {len(p.commits)} commit(s), "
                f"${p.cost_usd:.4f}</summary>", "", packet_markdown(p, level=4), "</details>", ""]
    return "\n".join(out)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.strip().splitlines()[:60])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]
