"""What docs/gitops.md ships works: the pre-commit hook definition, and the CI workflow's
review steps run as written in a checkout like the one GitHub Actions makes for a PR."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import FLEETS, ROOT, fleet, git
from ruamel.yaml import YAML

DOC = ROOT / "docs" / "gitops.md"


def _workflow() -> dict[str, Any]:
    text = DOC.read_text()
    block = re.search(r"```yaml\n(# \.github/workflows/fleet\.yml\n.*?)```", text, re.DOTALL)
    assert block, "the workflow example is missing from docs/gitops.md"
    return YAML(typ="safe").load(block.group(1))


def _step(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in job["steps"] if s.get("name") == name)


def test_pre_commit_hook_runs_fleet_validate_on_fleet_files() -> None:
    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    assert hook["id"] == "fleet-validate" and hook["entry"] == "fleet validate" and hook["language"] == "python"
    files = re.compile(hook["files"])
    for path in ("fleet.yaml", "fleet.yml", "deploy/fleet.yaml", "fleets/demo.yaml", "ops/fleets/a.yml",
                 "auth.fleet.yaml"):
        assert files.search(path), path
    for path in ("config.yaml", "myfleet.yaml", "fleet.yaml.bak", "fleets/nested/x.yaml", "fleets/README.md"):
        assert not files.search(path), path
    # pre-commit runs `entry` with the matching files as arguments
    entry = hook["entry"].split()[1:]
    assert fleet(*entry, "fleets/demo.yaml", cwd=ROOT).returncode == 0


def test_workflow_example_is_valid_and_applies_only_on_the_fleets_machine() -> None:
    wf = _workflow()
    triggers = wf["on"]
    assert set(triggers) == {"pull_request", "push"} and triggers["push"]["branches"] == ["main"]
    review, apply = wf["jobs"]["review"], wf["jobs"]["apply"]
    assert review["if"] == "github.event_name == 'pull_request'"
    assert review["permissions"] == {"contents": "read", "pull-requests": "write"}
    checkout = next(s for s in review["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = "\n".join(s.get("run", "") for s in review["steps"])
    assert not re.search(r"(^|\n)\s*fleet apply", runs)  # never apply a pull request
    assert apply["if"] == "github.event_name == 'push'" and "self-hosted" in apply["runs-on"]
    assert "fleet apply" in _step(apply, "Apply")["run"] and "--yes" in _step(apply, "Apply")["run"]
    comment = _step(review, "Comment (updated in place)")["run"]
    assert "head -n 1 comment.md" in comment and "-X PATCH" in comment


def test_workflow_review_steps_run_as_written_in_a_pr_checkout(repo: Path, tmp_path: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-qm", "demo fleet")
    git(repo, "checkout", "-qb", "pr")
    text = (repo / "fleet.yaml").read_text()
    (repo / "fleet.yaml").write_text(text.replace("maxRunning: 2", "maxRunning: 3"))
    git(repo, "commit", "-qam", "raise the cap")
    clone = tmp_path / "workspace"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", "--detach", "origin/pr")

    wf = _workflow()
    review = wf["jobs"]["review"]
    env = {**os.environ, **wf["env"], **_step(review, "Spec diff and plan").get("env", {}),
           "BASE_REF": "main", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("Validate", "Spec diff and plan"):
        proc = subprocess.run(["bash", "-e", "-c", _step(review, name)["run"]], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
    comment = (clone / "comment.md").read_text()
    assert comment.splitlines()[0] == "<!-- fleet-spec-diff:demo -->"
    assert "<code>tiers.local.maxRunning</code> | <code>2</code> | <code>3</code>" in comment
    assert "<!-- fleet-plan:demo -->" in comment and "<details><summary>Plan on a fresh checkout" in comment
    assert git(clone, "status", "--porcelain").split() == ["??", "comment.md", "??", "plan.md", "??", "spec.md"]
