"""A refused prune is news about the next step, not about the run that ended (issue 15, item 1).

Apply, let the agent succeed with a commit; undeclare it (the prune is refused: its commit
is unmerged); declare it again. The spec never changed, so nothing must run again: with a
paid agent a second run is wasted spend.
"""
from __future__ import annotations

from pathlib import Path

import agents
from conftest import fleet_in_process, git, status_in_process, wait_ended, write_fleet


def _fleet(repo: Path, *, with_docs: bool) -> None:
    script = agents.install(repo.parent)
    docs = f"""
            - name: docs
              tier: local
              prompt: write the docs
              command: {agents.argv(script, "commit")}
    """ if with_docs else ""
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: keep
              tier: local
              prompt: stay
              command: {agents.argv(script, "sleep", "0")}
    {docs}
    """)


def _commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "main..fleet/t/docs").strip())


def test_a_finished_agent_is_not_run_again_after_a_refused_prune_and_a_redeclare(repo: Path) -> None:
    _fleet(repo, with_docs=True)
    assert fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 0
    wait_ended(repo)
    assert status_in_process(repo)["docs"]["phase"] == "Succeeded"
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # folds the exit in
    assert _commits(repo) == 1

    _fleet(repo, with_docs=False)
    refused = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "1 unmerged commit" in refused.stdout
    row = status_in_process(repo)["docs"]
    assert row["phase"] == "Blocked"  # what the plan does next: the prune stays refused
    assert row["exit_code"] == 0  # the run that ended is still known

    _fleet(repo, with_docs=True)
    diff = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 0, diff.stdout  # nothing to do: it already succeeded on this spec
    row = status_in_process(repo)["docs"]
    assert (row["phase"], row["sync"]) == ("Succeeded", "Synced")
    assert fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 0
    assert _commits(repo) == 1
    conditions = {c["type"]: c["status"] for c in status_in_process(repo)["docs"]["conditions"]}
    assert conditions.get("Blocked") == "False"  # cleared once the plan no longer blocks it
