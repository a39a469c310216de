"""`fleet diff --base-rev REV`: the spec-level change since REV, from validated models, in the
checkout a CI job has for a pull request (a clone, detached HEAD, REV=origin/main)."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path, PurePosixPath

import pytest
from conftest import fleet_in_process, git, write_fleet

from reconciler.spec.globs import match

BASE = """
    # the fleet on main
    apiVersion: fleet/v1alpha1
    kind: Fleet
    metadata: {name: audit}
    spec:
      tiers:
        worker: {runtime: claude, model: sonnet, maxRunning: 2}
        local: {runtime: command}
      concurrency: {maxRunning: 4}
      budget: {usdPerDay: 50}
      gates: {tests: {run: pytest}}
      agents:
        - name: audit-{item}
          forEach: {glob: "src/routes/*.py"}
          tier: worker
          prompt: Audit {item} for missing auth checks.
          gates: [tests]
        - name: docs
          tier: local
          command: [python, docs.py]
"""

PR = """
    apiVersion: fleet/v1alpha1
    kind: Fleet
    metadata: {name: audit}
    spec:
      tiers:
        worker: {runtime: claude, model: opus, maxRunning: 4}   # reformatted and changed
        local: {runtime: command}
      concurrency: {maxRunning: 8}
      budget: {usdPerDay: 80, perTier: {worker: 60}}
      locks: {build: {slots: 1}}
      gates:
        tests: {run: pytest -q, maxAttempts: 2}
        lint: {run: ruff check .}
      agents:
        - name: audit-{item}
          forEach: {glob: "src/routes/*.py"}
          tier: worker
          prompt: Audit {item} for missing auth checks.
          gates: [tests, lint]
          restart: Always
        - name: changelog
          tier: local
          command: [python, changelog.py]
"""


def _commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


@pytest.fixture
def pr_checkout(repo: Path, tmp_path: Path) -> Path:
    """A clone checked out at a PR's head, detached, with origin/main fetched: as actions/checkout leaves it."""
    routes = repo / "src" / "routes"
    routes.mkdir(parents=True)
    for name in ("users.py", "billing.py"):
        (routes / name).write_text("# route\n")
    write_fleet(repo, BASE)
    _commit_all(repo, "fleet on main")
    git(repo, "checkout", "-qb", "pr")
    write_fleet(repo, PR)
    (routes / "admin.py").write_text("# a new route\n")
    _commit_all(repo, "the pull request")
    git(repo, "checkout", "-q", "main")
    clone = tmp_path / "ci"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", "--detach", "origin/pr")
    return clone


def test_spec_diff_since_origin_main_in_a_detached_pr_checkout(pr_checkout: Path) -> None:
    proc = fleet_in_process("diff", "--base-rev", "origin/main", "fleet.yaml", "-o", "json", cwd=pr_checkout)
    assert proc.returncode == 1, proc.stderr
    diff = json.loads(proc.stdout)
    assert diff["kind"] == "SpecDiff" and diff["fleet"] == "audit" and diff["changes"] is True
    assert diff["base"]["rev"] == "origin/main" and diff["base"]["found"] is True
    assert diff["base"]["commit"] == git(pr_checkout, "rev-parse", "origin/main").strip()
    settings = {s["path"]: (s["op"], s["old"], s["new"]) for s in diff["settings"]}
    assert settings == {
        "tiers.worker.model": ("changed", "sonnet", "opus"),
        "tiers.worker.maxRunning": ("changed", 2, 4),
        "concurrency.maxRunning": ("changed", 4, 8),
        "budget.usdPerDay": ("changed", 50, 80),
        "budget.perTier.worker": ("added", None, 60),
        "locks.build": ("added", None, {"slots": 1}),
        "gates.tests.run": ("changed", "pytest", "pytest -q"),
        "gates.tests.maxAttempts": ("changed", 3, 2),
        "gates.lint": ("added", None, {"run": "ruff check .", "timeout": "15m", "maxAttempts": 3}),
    }
    agents = {a["name"]: a for a in diff["agents"]}
    # the glob is expanded against origin/main's tree: admin.py is new in the PR, so is its agent
    assert agents["audit-src-routes-admin"]["op"] == "added"
    assert agents["changelog"]["op"] == "added" and agents["docs"]["op"] == "removed"
    users = agents["audit-src-routes-users"]
    assert users["op"] == "changed" and users["rerun"] is True  # the model changed: the session re-runs
    assert {c["path"]: (c["old"], c["new"]) for c in users["changes"]} == {
        "model": ("sonnet", "opus"), "gates": (["tests"], ["tests", "lint"]), "restart": ("OnFailure", "Always")}
    assert diff["summary"] == {"agentsAdded": 2, "agentsRemoved": 1, "agentsChanged": 2, "agentsRerun": 2,
                               "settingsChanged": 9}
    assert git(pr_checkout, "status", "--porcelain") == ""  # read git only


def test_spec_diff_table_and_markdown(pr_checkout: Path) -> None:
    table = fleet_in_process("diff", "--base-rev", "origin/main", "fleet.yaml", cwd=pr_checkout)
    assert table.returncode == 1
    assert "~ tiers.worker.model: \"sonnet\" -> \"opus\"" in table.stdout
    assert "+ audit-src-routes-admin" in table.stdout and "- docs" in table.stdout
    assert "Spec changes since origin/main: agents 2 added, 1 removed, 2 changed (2 re-run); " \
           "9 setting(s) changed." in table.stdout
    md = fleet_in_process("diff", "--base-rev", "origin/main", "fleet.yaml", "-o", "markdown", cwd=pr_checkout).stdout
    assert md.startswith("<!-- fleet-spec-diff:audit -->\n")
    assert "| ~ | <code>tiers.worker.model</code> | <code>\"sonnet\"</code> | <code>\"opus\"</code> |" in md
    assert "> [!CAUTION]" in md and "<code>docs</code>" in md  # removed agents are called out
    assert "<summary>~ <code>audit-src-routes-users</code>" in md
    again = fleet_in_process("diff", "--base-rev", "origin/main", "fleet.yaml", "-o", "markdown",
                             cwd=pr_checkout).stdout
    assert again == md  # stable: updating the comment in place changes nothing


def test_reformatting_is_no_spec_change(repo: Path) -> None:
    write_fleet(repo, BASE)
    _commit_all(repo, "fleet")
    text = (repo / "fleet.yaml").read_text()
    reformatted = text.replace("# the fleet on main\n", "").replace(
        "worker: {runtime: claude, model: sonnet, maxRunning: 2}",
        "worker:\n      maxRunning: 2   # key order and style\n      model: sonnet\n      runtime: claude")
    (repo / "fleet.yaml").write_text(reformatted)
    proc = fleet_in_process("diff", "--base-rev", "HEAD", "fleet.yaml", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No spec changes since HEAD." in proc.stdout


def test_a_new_fleet_file_is_all_added(repo: Path) -> None:
    write_fleet(repo, BASE)
    proc = fleet_in_process("diff", "--base-rev", "HEAD", "fleet.yaml", "-o", "json", cwd=repo)
    assert proc.returncode == 1
    diff = json.loads(proc.stdout)
    assert diff["base"]["found"] is False and "does not exist at HEAD" in diff["notes"][0]
    assert [(a["name"], a["op"]) for a in diff["agents"]] == [("docs", "added")]  # no routes: no audits


def test_a_base_that_does_not_validate_counts_as_empty(repo: Path) -> None:
    write_fleet(repo, "apiVersion: fleet/v1alpha1\nkind: Fleet\nmetadata: {name: audit}\nspec: {tiers: {}}\n")
    _commit_all(repo, "broken fleet")
    write_fleet(repo, BASE)
    diff = json.loads(fleet_in_process("diff", "--base-rev", "HEAD", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert diff["base"]["found"] is False
    assert "HEAD:fleet.yaml does not validate" in diff["notes"][0]


def test_fleet_file_in_a_subdirectory(repo: Path) -> None:
    (repo / "fleets").mkdir()
    write_fleet(repo, BASE.replace("spec:\n", "spec:\n      repo: ..\n"), name="fleets/audit.yaml")
    _commit_all(repo, "fleet")
    path = repo / "fleets" / "audit.yaml"
    path.write_text(path.read_text().replace("model: sonnet", "model: haiku"))
    proc = fleet_in_process("diff", "--base-rev", "HEAD", "fleets/audit.yaml", "-o", "json", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    assert [s["path"] for s in json.loads(proc.stdout)["settings"]] == ["tiers.worker.model"]
    inside = fleet_in_process("diff", "--base-rev", "HEAD", "audit.yaml", "-o", "json", cwd=repo / "fleets")
    assert json.loads(inside.stdout)["settings"] == json.loads(proc.stdout)["settings"]


def test_unknown_revision_is_a_clear_error(repo: Path) -> None:
    write_fleet(repo, BASE)
    proc = fleet_in_process("diff", "--base-rev", "origin/main", "fleet.yaml", cwd=repo)
    assert proc.returncode == 2
    assert "unknown revision 'origin/main'" in proc.stderr and "fetch-depth: 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_base_rev_takes_no_plan_options(repo: Path) -> None:
    write_fleet(repo, BASE)
    proc = fleet_in_process("diff", "--base-rev", "HEAD", "fleet.yaml", "--out", "plan.json", cwd=repo)
    assert proc.returncode == 2 and "takes no" in proc.stderr


@pytest.mark.parametrize("pattern", ["*.py", "**", "**/*.py", "src/**/*.py", "src/*/*.py", ".*", "src/**",
                                     "**/.*.py", "s?c/r*/[ab]*.py", "./src/routes/*.py", "src/.hidden/*"])
def test_glob_matching_a_file_list_agrees_with_glob_on_disk(tmp_path: Path, pattern: str) -> None:
    files = ["a.py", "b.txt", ".env", ".hidden.py", "src/routes/admin.py", "src/routes/billing.py",
             "src/routes/.secret.py", "src/.hidden/x.py", "src/deep/er/z.py", ".github/workflows/ci.yml"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    on_disk = sorted(PurePosixPath(os.path.relpath(p, tmp_path)).as_posix()
                     for p in glob.glob(str(tmp_path / pattern), recursive=True) if os.path.isfile(p))
    assert match(pattern, files) == on_disk
