"""fleet's state where `git clean` cannot reach it, and recovery that needs no record.

Issue 14, classes 4, 8 and 9, on real repos and real processes:

- the state store, logs and locks live in `<git common dir>/fleet/`, migrated from the
  old `<main checkout>/.fleet/`; no exclude line hides files an agent writes in its tree;
- with every record gone, live sessions are adopted from their owner variables (never
  duplicated) and `protect` survives in the worktree's admin dir and the branch config;
- paths come from the git common dir: `fleet apply` from inside an agent's worktree, and
  a changed `worktrees.root`, converge.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import agents
import psutil
import pytest
from conftest import (
    branch_marks,
    ended,
    environ_of,
    fleet_in_process,
    git,
    session_pids,
    status_in_process,
    wait_ended,
    wait_until,
)

from reconciler.store.home import migrate

WT = Path(".fleet") / "worktrees"


def home(repo: Path) -> Path:
    return repo / ".git" / "fleet"


def sessions_by_agent(repo: Path) -> dict[str, list[tuple[int, str]]]:
    """agent -> [(pid, FLEET_SPEC_HASH)] of the live session leaders of `repo`."""
    found: dict[str, list[tuple[int, str]]] = {}
    for pid in session_pids(repo):
        try:
            env = environ_of(pid)
        except psutil.Error:
            continue
        if not env:  # it ended
            continue
        found.setdefault(env["FLEET_AGENT"], []).append((pid, env["FLEET_SPEC_HASH"]))
    return found


def three_agents(repo: Path) -> Path:
    """run (plain), keep (protect: true) and old, all sleeping; the file is committed so
    `git clean -fdx` keeps it."""
    script = agents.install(repo.parent)
    sleep = agents.argv(script, "sleep", "120")
    path = agents.fleet_yaml(repo, f"""
        - {{name: run, tier: local, prompt: v1 run, command: {sleep}}}
        - {{name: keep, tier: local, prompt: v1 keep, protect: true, command: {sleep}}}
        - {{name: old, tier: local, prompt: v1 old, command: {sleep}}}
    """)
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-qm", "fleet file")
    return path


def apply(repo: Path, *args: str, cwd: Path | None = None) -> str:
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", "--grace", "1", *args, cwd=cwd or repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# -- where the state lives ---------------------------------------------------------------------------


def test_state_logs_and_locks_live_in_the_git_common_dir_and_the_checkout_stays_clean(repo: Path) -> None:
    three_agents(repo)
    apply(repo)
    assert sorted(p.name for p in (home(repo) / "state" / "t").glob("*.json")) == ["keep.json", "old.json",
                                                                                 "run.json"]
    assert (home(repo) / "logs" / "t" / "run.log").is_file()
    assert (home(repo) / "t.lock").exists()
    assert sorted(p.name for p in (repo / ".fleet").iterdir()) == ["worktrees"]
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert ".fleet" not in exclude
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    env = psutil.Process(status_in_process(repo)["run"]["pid"]).environ()
    assert env["FLEET_LOCK_DIR"] == str(home(repo) / "locks")


@pytest.mark.parametrize("where", [".fleet/x", ".fleet/worktrees/x"])
def test_a_file_an_agent_writes_under_its_own_dot_fleet_blocks_the_prune(repo: Path, where: str) -> None:
    """Class 4: no exclude line of fleet's may hide an agent's files (an old one is removed)."""
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("# mine\n*.swp\n# fleet state, logs, locks and worktrees\n"
                                                    "/.fleet/\n")
    script = agents.install(repo.parent)
    path = agents.fleet_yaml(repo, f"""
        - name: w-{{item}}
          forEach: {{items: [a00, a01]}}
          tier: local
          command: {agents.argv(script, "commit")}
    """)
    apply(repo)
    wait_ended(repo)
    assert [r["phase"] for r in status_in_process(repo).values()] == ["Succeeded"] * 2
    assert (repo / ".git" / "info" / "exclude").read_text() == "# mine\n*.swp\n"
    git(repo, "merge", "-q", "fleet/t/w-a00")  # its commit is safe: only the file below is at stake
    tree = repo / WT / "w-a00"
    (tree / where).parent.mkdir(parents=True, exist_ok=True)
    (tree / where).write_text("the agent's notes\n")
    path.write_text(path.read_text().replace("[a00, a01]", "[a01]"))
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "prune refused" in proc.stdout and where in proc.stdout
    assert (tree / where).read_text() == "the agent's notes\n"
    proc = fleet_in_process("delete", "fleet.yaml", "w-a00", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not tree.exists()
    ref = git(repo, "for-each-ref", "--format=%(refname)", "refs/fleet/archive/t/w-a00/").split()[-1]
    assert git(repo, "show", f"{ref}:{where}") == "the agent's notes\n"


def test_the_worktree_root_is_hidden_only_from_the_main_checkout(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - {{name: a, tier: local, prompt: hi, command: {agents.argv(script, "sleep", "60")}}}
    """, spec="""
        worktrees: {root: trees/agents}
    """)
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-qm", "fleet file")
    apply(repo)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    tree = repo / "trees" / "agents" / "a"
    for where in ("trees/agents/x", ".fleet/x", "x"):
        (tree / where).parent.mkdir(parents=True, exist_ok=True)
        (tree / where).write_text("mine\n")
    listed = git(tree, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert sorted(filter(None, listed)) == ["?? .fleet/x", "?? trees/agents/x", "?? x"]


# -- migration from <main checkout>/.fleet -----------------------------------------------------------


def _to_legacy(repo: Path) -> None:
    """Put the state back where fleet kept it before (what an older fleet left behind)."""
    legacy = repo / ".fleet"
    for branch, protect in branch_marks(repo).items():  # an older fleet marked branches in the config
        git(repo, "config", f"branch.{branch}.fleetOwner", "t")
        if protect:
            git(repo, "config", f"branch.{branch}.fleetProtect", "true")
    shutil.rmtree(home(repo) / "branches", ignore_errors=True)
    for entry in home(repo).iterdir():
        if entry.name.startswith("."):
            continue
        shutil.move(str(entry), str(legacy / entry.name))
    shutil.rmtree(home(repo))
    with (repo / ".git" / "info" / "exclude").open("a") as f:
        f.write("# fleet state, logs, locks and worktrees\n/.fleet/\n")


def test_state_under_dot_fleet_is_migrated_on_the_first_apply_and_read_before_it(repo: Path) -> None:
    three_agents(repo)
    apply(repo)
    before = {n: r["pid"] for n, r in status_in_process(repo).items()}
    log = (home(repo) / "logs" / "t" / "run.log").read_bytes()
    _to_legacy(repo)
    # read-only commands read the old place and write nothing
    assert {n: r["pid"] for n, r in status_in_process(repo).items()} == before
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0
    assert not home(repo).exists()
    out = apply(repo)
    assert "No changes" in out, out
    assert {n: r["pid"] for n, r in status_in_process(repo).items()} == before
    assert (home(repo) / "logs" / "t" / "run.log").read_bytes().startswith(log)
    assert sorted(p.name for p in (repo / ".fleet").iterdir()) == ["worktrees"]
    assert ".fleet" not in (repo / ".git" / "info" / "exclude").read_text()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert {n: [p for p, _ in s] for n, s in sessions_by_agent(repo).items()} == {n: [p] for n, p in before.items()}


def test_an_exit_file_written_to_the_old_place_after_migration_is_not_lost(repo: Path) -> None:
    """A session started by an older fleet writes its exit file under .fleet/state."""
    three_agents(repo)
    apply(repo)
    _to_legacy(repo)
    apply(repo)  # migrated
    pid = status_in_process(repo)["run"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: ended(pid))
    legacy_exit = repo / ".fleet" / "state" / "t" / "run.exit.json"
    legacy_exit.parent.mkdir(parents=True)
    legacy_exit.write_text(json.dumps({"pid": pid, "exit_code": 0, "finished_at": "2026-01-01T00:00:00+00:00"}))
    assert status_in_process(repo)["run"]["phase"] == "Succeeded"
    apply(repo)
    assert status_in_process(repo)["run"]["phase"] == "Succeeded"
    assert not (repo / ".fleet" / "state").exists()


def test_migration_is_idempotent_and_keeps_every_file_after_a_crash_half_way(tmp_path: Path) -> None:
    legacy, new = tmp_path / "repo" / ".fleet", tmp_path / "repo" / ".git" / "fleet"
    files = {"state/t/a.json": '{"agent": "a"}', "state/t/b.json": '{"agent": "b"}',
             "logs/t/a.log": "line 1\n", "locks/locks.json": "{}", "ray/t/sessions.json": "{}",
             "t.lock": "", "t.lock.json": '{"id": "1"}', "worktrees/a/file": "an agent's tree"}
    for rel, text in files.items():
        (legacy / rel).parent.mkdir(parents=True, exist_ok=True)
        (legacy / rel).write_text(text)
    # a crash half-way: b.json already moved, a.log copied (across devices) but not yet unlinked,
    # and a record that a newer fleet wrote meanwhile in the new place
    (new / "state" / "t").mkdir(parents=True)
    (legacy / "state" / "t" / "b.json").rename(new / "state" / "t" / "b.json")
    (new / "logs" / "t").mkdir(parents=True)
    shutil.copy(legacy / "logs" / "t" / "a.log", new / "logs" / "t" / "a.log")
    (new / "state" / "t" / "c.json").write_text('{"agent": "c", "new": true}')
    (legacy / "state" / "t" / "c.json").write_text('{"agent": "c", "old": true}')
    migrate(legacy, new)
    migrate(legacy, new)
    assert (new / "state" / "t" / "a.json").read_text() == files["state/t/a.json"]
    assert (new / "state" / "t" / "b.json").read_text() == files["state/t/b.json"]
    assert (new / "logs" / "t" / "a.log").read_text() == "line 1\n"
    assert (new / "ray" / "t" / "sessions.json").read_text() == "{}"
    assert (new / "t.lock.json").read_text() == '{"id": "1"}'
    assert (new / "state" / "t" / "c.json").read_text() == '{"agent": "c", "new": true}'
    kept = [p for p in (new / "state" / "t").iterdir() if p.name.startswith("c.json.")]
    assert [p.read_text() for p in kept] == ['{"agent": "c", "old": true}']
    assert sorted(str(p.relative_to(legacy)) for p in legacy.rglob("*")) == ["worktrees", "worktrees/a",
                                                                             "worktrees/a/file"]


# -- level-triggered recovery ------------------------------------------------------------------------


@pytest.mark.parametrize("lose", ["git-clean", "git-clean-and-every-record"])
def test_git_clean_fdx_then_apply_adopts_keeps_protected_and_replaces_only_the_old_spec(
        repo: Path, lose: str) -> None:
    """Class 8, as the issue states it."""
    path = three_agents(repo)
    apply(repo)
    first = {n: s[0][0] for n, s in sessions_by_agent(repo).items()}
    path.write_text(path.read_text().replace("v1 old", "v2 old"))  # `old` now runs another spec
    git(repo, "clean", "-fdx")
    if lose != "git-clean":
        shutil.rmtree(home(repo) / "state")
    diff = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 1 and diff.stdout.strip().endswith("Plan: 1 to replace."), diff.stdout
    assert "replace         old" in diff.stdout
    out = apply(repo)
    live = sessions_by_agent(repo)
    assert sorted(live) == ["keep", "old", "run"] and all(len(s) == 1 for s in live.values()), (live, out)
    assert live["run"][0][0] == first["run"] and live["keep"][0][0] == first["keep"], out
    assert live["old"][0][0] != first["old"] and ended(first["old"])
    rows = status_in_process(repo)
    assert {n: (r["phase"], r["sync"]) for n, r in rows.items()} == {
        "run": ("Running", "Synced"), "keep": ("Running", "Synced"), "old": ("Running", "Synced")}
    assert rows["run"]["pid"] == first["run"] and rows["keep"]["pid"] == first["keep"]
    assert (repo / WT / "keep").is_dir()
    assert "No changes" in apply(repo)
    # git clean took the worktree root's .gitignore too (an ignored file); it is back
    assert git(repo, "status", "--porcelain") == " M fleet.yaml\n"


def test_a_protected_session_running_an_old_spec_is_not_replaced_without_its_record(repo: Path) -> None:
    path = three_agents(repo)
    apply(repo)
    pid = status_in_process(repo)["keep"]["pid"]
    path.write_text(path.read_text().replace("v1 keep", "v2 keep"))
    shutil.rmtree(home(repo) / "state")
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=repo)
    assert proc.returncode == 3 and "spec changed but protect: true" in proc.stdout, proc.stdout
    assert [p for p, _ in sessions_by_agent(repo)["keep"]] == [pid]


def test_an_undeclared_protected_agent_is_neither_stopped_nor_pruned_when_its_record_is_gone(repo: Path) -> None:
    path = three_agents(repo)
    apply(repo)
    pid = status_in_process(repo)["keep"]["pid"]
    # kept where the state store is not: the ownership marker and the branch's mark
    assert branch_marks(repo) == {"fleet/t/run": False, "fleet/t/keep": True, "fleet/t/old": False}
    markers = {json.loads(m.read_text())["agent"]: json.loads(m.read_text())["protect"]
               for m in (repo / ".git" / "worktrees").glob("*/fleet-owner.json")}
    assert markers == {"run": False, "keep": True, "old": False}
    text = path.read_text()
    path.write_text("\n".join(line for line in text.splitlines() if "name: keep" not in line) + "\n")
    out = fleet_in_process("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=repo).stdout
    assert "protect: true" in out
    git(repo, "clean", "-fdx")
    shutil.rmtree(home(repo) / "state")
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=repo)
    assert "protect" in proc.stdout, proc.stdout
    assert [p for p, _ in sessions_by_agent(repo)["keep"]] == [pid]
    assert (repo / WT / "keep").is_dir() and git(repo, "branch", "--list", "fleet/t/keep").strip()
    # protect follows the file: declared again without it, the agent is an ordinary one
    path.write_text(text.replace("protect: true, ", ""))
    apply(repo)
    assert branch_marks(repo)["fleet/t/keep"] is False
    markers = [json.loads(m.read_text()) for m in (repo / ".git" / "worktrees").glob("*/fleet-owner.json")]
    assert sorted(m["agent"] for m in markers) == ["keep", "old", "run"]
    assert all(m["protect"] is False for m in markers)
    path.write_text("\n".join(line for line in text.splitlines() if "name: keep" not in line) + "\n")
    shutil.rmtree(home(repo) / "state")
    apply(repo)
    assert "keep" not in sessions_by_agent(repo) and not (repo / WT / "keep").exists()


# -- paths from the git common dir -------------------------------------------------------------------


def test_apply_from_inside_an_agents_worktree_converges_on_the_main_repo(repo: Path) -> None:
    """Class 9: a committed `repo: .` resolves to the agent's worktree."""
    path = three_agents(repo)
    apply(repo)
    before = {n: r["pid"] for n, r in status_in_process(repo).items()}
    inside = repo / WT / "run"
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=inside)
    assert proc.returncode == 0 and "No changes" in proc.stdout, proc.stdout + proc.stderr
    assert not (inside / ".fleet").exists()
    # that worktree's copy of the file declares a new agent and changes `old`: the new
    # worktree goes under the main checkout's root, and `old` is replaced in its own tree
    (inside / "fleet.yaml").write_text(path.read_text().replace("v1 old", "v2 old").replace(
        "    - {name: old", "    - {name: new, tier: local, prompt: v1 new, command: [sleep, '60']}\n    - {name: old"))
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=inside)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / WT / "new").is_dir() and not (inside / ".fleet").exists()
    rows = status_in_process(repo, str(inside / "fleet.yaml"))
    assert {n: r["pid"] for n, r in rows.items() if n not in ("new", "old")} == \
        {n: p for n, p in before.items() if n != "old"}
    assert rows["new"]["phase"] == "Running" and rows["old"]["phase"] == "Running"
    assert rows["old"]["pid"] != before["old"] and rows["old"]["sync"] == "Synced"
    assert psutil.Process(rows["old"]["pid"]).cwd() == str((repo / WT / "old").resolve())
    assert fleet_in_process("apply", "fleet.yaml", "--yes", cwd=inside).stdout.startswith("No changes")


def test_a_changed_worktrees_root_keeps_existing_trees_where_they_are(repo: Path) -> None:
    """Class 9: existing owned worktrees are found by their markers; the new root is for new ones."""
    path = three_agents(repo)
    apply(repo)
    text = path.read_text().replace("tiers:", "worktrees: {root: elsewhere}\n  tiers:")
    text = text.replace("v1 run", "v2 run")  # replaced: its new session starts in its existing tree
    text = text.replace("    - {name: old", "    - {name: new, tier: local, prompt: v1 new, command: [sleep, '60']}"
                                           "\n    - {name: old")
    path.write_text(text)
    diff = fleet_in_process("diff", "fleet.yaml", cwd=repo).stdout
    assert "worktrees.root" in diff and "new worktrees only" in diff, diff
    out = apply(repo)
    assert "worktrees.root" in out
    rows = status_in_process(repo)
    assert all(r["phase"] == "Running" for r in rows.values()), rows
    assert psutil.Process(rows["run"]["pid"]).cwd() == str((repo / WT / "run").resolve())
    assert (repo / "elsewhere" / "new").is_dir()
    assert not (repo / "elsewhere" / "run").exists() and (repo / WT / "keep").is_dir()
    assert "No changes" in apply(repo)


def test_one_failing_action_is_that_actions_failed_outcome_and_the_rest_of_the_plan_runs(repo: Path) -> None:
    three_agents(repo)
    (home(repo) / "logs" / "t" / "keep.log").mkdir(parents=True)  # opening the log fails: not a FleetError
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Is a directory" in proc.stdout
    assert sorted(sessions_by_agent(repo)) == ["old", "run"]
    assert status_in_process(repo)["keep"]["phase"] == "Failed"


def test_migration_across_file_systems_copies_then_removes(tmp_path: Path) -> None:
    """A git dir on another file system (`--separate-git-dir`): a copy, fsync and rename, then the unlink."""
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    other = Path(tempfile.mkdtemp(dir=shm, prefix="fleet-migrate-"))
    try:
        legacy, new = tmp_path / ".fleet", other / "fleet"
        (legacy / "state" / "t").mkdir(parents=True)
        (legacy / "state" / "t" / "a.json").write_text('{"agent": "a"}')
        (legacy / "logs" / "t").mkdir(parents=True)
        (legacy / "logs" / "t" / "a.log").write_bytes(b"\x00binary\xff log\n" * 1000)
        assert migrate(legacy, new) == []
        assert (new / "state" / "t" / "a.json").read_text() == '{"agent": "a"}'
        assert (new / "logs" / "t" / "a.log").read_bytes() == b"\x00binary\xff log\n" * 1000
        assert not legacy.exists()
        assert sorted(p.name for p in (new / "logs" / "t").iterdir()) == ["a.log"]  # no temp file left
    finally:
        shutil.rmtree(other)


def test_legacy_state_a_commit_brings_is_never_read_nor_followed(repo: Path, tmp_path: Path) -> None:
    """A pull request can commit `.fleet/state/...` and `.fleet/logs/...` (a forged record, a log
    that is a symlink to a file outside the repository): before a migration, read-only
    commands read the old home, so such files must be ignored and no symlink followed."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("THE-SECRET-OUTSIDE-THE-REPO\n")
    agents.fleet_yaml(repo, f"""
        - {{name: pr, tier: local, command: {agents.argv(agents.install(repo.parent), "sleep", "0")}}}
    """)
    legacy = repo / ".fleet"
    (legacy / "logs" / "t").mkdir(parents=True)
    (legacy / "state" / "t").mkdir(parents=True)
    os.symlink(secret, legacy / "logs" / "t" / "pr.log")  # committed: a link to a file outside
    forged = {"agent": "pr", "fleet": "t", "phase": "Succeeded", "pid": 1, "reason": "FORGED-BY-THE-PR"}
    (legacy / "state" / "t" / "pr.json").write_text(json.dumps(forged))
    git(repo, "add", "-f", ".fleet", "fleet.yaml")
    git(repo, "commit", "-qm", "a pull request with fleet state in it")
    # an untracked symlinked log (not committed, but a link all the same) is not followed either
    (legacy / "logs" / "t" / "other.log").symlink_to(secret)
    for command in (["status", "fleet.yaml", "-o", "json"], ["describe", "fleet.yaml", "pr"],
                    ["logs", "fleet.yaml", "pr"], ["logs", "fleet.yaml", "other"], ["diff", "fleet.yaml"]):
        proc = fleet_in_process(*command, cwd=repo)
        assert "THE-SECRET" not in proc.stdout + proc.stderr, command
        assert "FORGED-BY-THE-PR" not in proc.stdout + proc.stderr, command
    assert json.loads(fleet_in_process("status", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)["agents"][0][
        "phase"] != "Succeeded"
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # the migration moves none of it
    assert (legacy / "state" / "t" / "pr.json").is_file() and (legacy / "logs" / "t" / "pr.log").is_symlink()
    assert "FORGED" not in (home(repo) / "state" / "t" / "pr.json").read_text()  # its own record, made by apply
    assert secret.read_text() == "THE-SECRET-OUTSIDE-THE-REPO\n"
