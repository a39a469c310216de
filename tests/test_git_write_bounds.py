"""git calls that write the repo and run the user's programs (hooks, filters, a signing program)
are bounded (observe/gittree.py `write_timeout`), and fleet's own archive commits never sign.

A hung `git worktree add` held the pass and the fleet lock forever.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import agents
from conftest import fleet, git, start_of, status, wait_gone, wait_until

WT = Path(".fleet/worktrees")


def test_a_hung_post_checkout_hook_stops_the_worktree_add_and_the_next_pass_repairs_it(repo: Path) -> None:
    agents.for_each(repo, "commit", items="a00")
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    pidfile = repo.parent / "hook.pid"
    hook = hooks / "post-checkout"
    hook.write_text(f"#!/bin/sh\ncat /proc/$$/stat > {pidfile}.stat\necho $$ > {pidfile}\nexec sleep 600\n")
    hook.chmod(0o755)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env={"FLEET_GIT_WRITE_TIMEOUT": "2"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did not finish within 2s" in proc.stdout, proc.stdout
    assert "FLEET_GIT_WRITE_TIMEOUT=SECONDS" in proc.stdout, proc.stdout  # the hint: what sets the time
    # no session was started in the tree the failed creation left (it is not fleet's yet)
    assert "spawn           w-a00: failed not run: create-worktree failed before it this pass" in proc.stdout
    row = status(repo)["w-a00"]
    assert row["phase"] == "Failed"
    # the reason says what failed, not only the step's intent the record keeps for the next pass
    assert row["reason"].startswith("create-worktree failed: `git worktree add"), row["reason"]
    assert "did not finish within 2s" in row["reason"] and row["reason"].endswith("(while creating worktree)")
    hung = int(pidfile.read_text())
    wait_gone(hung, start_of(Path(f"{pidfile}.stat").read_text()))  # killed with git
    hook.unlink()
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: status(repo)["w-a00"]["phase"] == "Succeeded")
    wt = repo / WT / "w-a00"
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == "fleet/t/w-a00"
    assert "w-a00 did its work" in git(repo, "log", "--format=%s", "fleet/t/w-a00")


def test_an_archive_is_not_signed_whatever_commit_gpgsign_says(repo: Path, tmp_path: Path) -> None:
    """A signing program that fails (or would wait for a passphrase) is never run for fleet's own
    archive commits: the prune with --archive succeeds and the work is in the archive. (The git
    here does not sign `commit-tree` for commit.gpgSign; `--no-gpg-sign` pins that for any git,
    and this pins that no prune step of fleet's signs.)"""
    path = agents.for_each(repo, "commit", items="a00, a01")
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: all(r["phase"] == "Succeeded" for r in status(repo).values()))
    (repo / WT / "w-a00" / "notes.txt").write_text("untracked notes\n")
    signer = tmp_path / "gpg"
    signer.write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'signed'}\nexit 1\n")
    signer.chmod(0o755)
    git(repo, "config", "commit.gpgSign", "true")
    git(repo, "config", "gpg.program", str(signer))
    path.write_text(path.read_text().replace("[a00, a01]", "[a01]"))
    proc = fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (repo / WT / "w-a00").exists()
    assert not (tmp_path / "signed").exists()
    listing = json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    ref = listing[0]["ref"]
    assert git(repo, "show", f"{ref}:notes.txt") == "untracked notes\n"
    assert "gpgsig" not in git(repo, "cat-file", "-p", ref)
    assert os.environ.get("FLEET_GIT_WRITE_TIMEOUT") is None  # the default bound applied, not a test's
