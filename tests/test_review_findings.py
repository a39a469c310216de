"""Adversarial review of this session's safety-relevant changes: one failing test per finding.

Each test is `xfail(strict=True)` until its finding is fixed (the fix then removes the mark);
the reason names the commit it targets. Real repos, real fleet runs, real agent processes.
"""
from __future__ import annotations

from pathlib import Path

import agents
import pytest
from conftest import fleet_in_process, git, status_in_process, wait_until, write_fleet

A = "fleet/t/w-a00"


def _idle_fleet(repo: Path, mode: str = "crash", *args: str) -> Path:
    script = agents.install(repo.parent)
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: w-{{item}}
              forEach: {{items: [a00, a01]}}
              tier: local
              command: {agents.argv(script, mode, *args)}
    """)


def _branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


@pytest.mark.xfail(strict=True, reason="9edf9cf (h-perf): a branch mark outlives a `git branch -D` by hand "
                   "(the old branch.<b>.fleetOwner key went with the branch's config section), so a branch the "
                   "user makes again under that name is taken as the fleet's and deleted")
def test_a_branch_deleted_by_hand_and_made_again_by_the_user_is_not_the_fleets(repo: Path) -> None:
    _idle_fleet(repo, "crash", "0")
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: all(r["phase"] == "Succeeded" for r in status_in_process(repo).values()))
    # the user throws the agent's tree and branch away by hand (no fleet pass runs in between) ...
    git(repo, "worktree", "remove", "--force", str(repo / ".fleet" / "worktrees" / "w-a00"))
    git(repo, "branch", "-D", A)
    # ... and later starts a branch of their own under that name
    git(repo, "branch", A)
    tip = git(repo, "rev-parse", A).strip()
    proc = fleet_in_process("delete", "fleet.yaml", "w-a00", "--yes", cwd=repo)
    # the branch fleet created is gone; this one is the user's: with marks in the config it was unowned,
    # so kept (git drops branch.<b>.* with the branch)
    assert A in _branches(repo), proc.stdout + proc.stderr
    assert git(repo, "rev-parse", A).strip() == tip


def test_fleet_run_from_a_hook_does_not_hand_the_hooks_git_dir_to_the_agent(repo: Path) -> None:
    """act/sessions.py and act/gates.py passed a git hook's GIT_DIR/GIT_INDEX_FILE on to the agent (and
    gates): run from a pre-commit hook of a linked worktree, the agent's commit landed on the user's branch."""
    user_tree = repo.parent / "user-tree"
    git(repo, "worktree", "add", "-q", "-b", "topic", str(user_tree))
    topic = git(repo, "rev-parse", "topic").strip()
    admin = repo / ".git" / "worktrees" / "user-tree"
    index_before = (admin / "index").read_bytes()
    script = agents.install(repo.parent)
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: w-a
              tier: local
              command: {agents.argv(script, "commit")}
    """)
    # what git exports to a pre-commit hook in the user's linked worktree (git 2.39, checked by hand)
    hook_env = {"GIT_DIR": str(admin), "GIT_INDEX_FILE": str(admin / "index"), "GIT_PREFIX": ""}
    fleet_in_process("apply", str(repo / "fleet.yaml"), "--yes", cwd=repo, env=hook_env, check=True)
    wait_until(lambda: status_in_process(repo)["w-a"]["phase"] in ("Succeeded", "Failed"))
    assert git(repo, "rev-parse", "topic").strip() == topic  # the user's branch did not move
    assert (admin / "index").read_bytes() == index_before  # nor did the user's index
    assert git(repo, "log", "-1", "--format=%s", "fleet/t/w-a").strip() == "w-a did its work"
