"""Pilot runs through the CLI with scripted `command` agents (tests/agents.py): `fleet promote`
and a pilot that failed for good. The rollout rules themselves are planner rows
(tests/test_planner.py PILOTS); the real claude pilot is in test_spend_e2e.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import agents
from conftest import fleet_in_process as fleet  # the CLI in this process: sessions stay real processes
from conftest import session_pids, wait_until, write_fleet


def _group(repo: Path, command: str, *, extra: str = "", restart: str = "OnFailure") -> None:
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
        {extra}
          agents:
            - name: w-{{item}}
              forEach: {{items: [a, b, c]}}
              rollout: {{pilot: 1}}
              tier: local
              restart: {restart}
              command: {command}
    """)


def _settle(repo: Path) -> dict[str, dict]:
    """One apply, its sessions left to end, and the status (which folds what ended)."""
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: not session_pids(repo), timeout=60)
    report = json.loads(fleet("status", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    return {a["agent"]: a for a in report["agents"]}


def test_a_pilot_failed_for_good_then_fixed_and_fleet_promote_overriding_the_projection(repo: Path) -> None:
    script = agents.install(repo.parent)
    budget = "  budget: {usdPerDay: 0.7}"
    _group(repo, agents.argv(script, "crash", "3"), extra=budget, restart="Never")
    rows = _settle(repo)
    assert rows["w-a"]["phase"] == "Failed"
    # the pilot will not run again: the rest say so, and what to do, rather than wait silently
    why = ("Pilot: pilot run(s) of w-{item} failed for good (w-a: restart: Never); fix and restart the pilot, "
           "change the file, or `fleet promote w-{item}` to start the rest anyway")
    for w in ("w-b", "w-c"):
        assert rows[w]["phase"] == "Pending" and rows[w]["reason"] == why, rows[w]
        assert any(c["type"] == "Pilot" and c["status"] == "True" for c in rows[w]["conditions"])
    diff = fleet("diff", "fleet.yaml", cwd=repo).stdout
    assert "rollout w-{item}: pilot run(s) of w-{item} failed for good (w-a: restart: Never)" in diff
    shown = fleet("status", "fleet.yaml", cwd=repo, check=True).stdout
    assert ("rollout w-{item}: pilot w-a failed for good; fix and restart it, change the file, or `fleet promote "
            "FILE 'w-{item}'`") in shown
    # the file changed (the pilot's command is fixed): it runs again, $0.30; the projection does not fit
    _group(repo, agents.argv(script, "cost", "0.30"), extra=budget, restart="Never")
    rows = _settle(repo)
    assert rows["w-a"]["phase"] == "Succeeded", rows["w-a"]
    held = "Pilot: projected $0.90 for 3 agents ($0.60 for the 2 not started); budget left $0.40"
    assert [rows[w]["reason"].startswith(held) for w in ("w-b", "w-c")] == [True, True], rows
    refused = fleet("promote", "fleet.yaml", "w-b", cwd=repo)
    assert refused.returncode != 0 and "no rollout group named 'w-b'" in refused.stderr
    fleet("promote", "fleet.yaml", "w-{item}", cwd=repo, check=True)
    # still too big a projection; the promotion starts them anyway (the day budget still admits them)
    rows = _settle(repo)
    assert [rows[w]["phase"] for w in ("w-b", "w-c")] == ["Succeeded", "Succeeded"], rows
