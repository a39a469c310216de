"""kill -9 of `fleet apply` at many points: the next apply converges, nothing duplicated or leaked."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import agents
import psutil
from conftest import fleet, git, session_pids, status, write_fleet

AGENTS = [f"w-a{i:02d}" for i in range(6)]



def sessions_by_agent(repo: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for pid in session_pids(repo):
        try:
            found.setdefault(psutil.Process(pid).environ()["FLEET_AGENT"], []).append(pid)
        except (psutil.Error, KeyError):
            continue
    return found


def test_kill_9_at_many_points_then_apply_converges(repo: Path) -> None:
    script = agents.install(repo.parent)
    path = write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: w-{{item}}
              forEach: {{items: [a00, a01, a02, a03, a04, a05]}}
              tier: local
              prompt: v1 {{item}}
              command: {agents.argv(script, "sleep", "120")}
    """)
    cmd = [sys.executable, "-m", "reconciler.cli.main", "apply", "fleet.yaml", "--yes", "--grace", "1"]
    for round_, delay in enumerate([i * 0.07 for i in range(24)]):
        if round_ == 12:  # halfway: change the spec, so kills also land inside replace (stop + spawn)
            path.write_text(path.read_text().replace("prompt: v1", "prompt: v2"))
        apply = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        apply.send_signal(signal.SIGKILL)
        apply.wait()
    for _ in range(3):  # a finished replace may leave one more step for the next pass
        fleet("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)
    assert fleet("diff", "fleet.yaml", cwd=repo).returncode == 0
    live = sessions_by_agent(repo)
    detail = {n: [(p, psutil.Process(p).create_time(), psutil.Process(p).environ()["FLEET_SPEC_HASH"])
                  for p in pids] for n, pids in live.items()}
    assert sorted(live) == AGENTS and all(len(pids) == 1 for pids in live.values()), \
        (detail, fleet("status", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    rows = status(repo)
    assert sorted(rows) == AGENTS
    for name, row in rows.items():
        assert row["phase"] == "Running" and row["pid"] == live[name][0] and row["sync"] == "Synced"
        assert psutil.Process(row["pid"]).environ()["FLEET_PROMPT"].startswith("v2")
    listed = git(repo, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 1 + len(AGENTS)  # no leaked or half-created worktree
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/fleet/").split() == \
        [f"fleet/t/{a}" for a in AGENTS]
    leftovers = [p for p in (repo / ".git" / "fleet" / "state" / "t").iterdir() if p.suffix not in (".json",)]
    assert leftovers == []
