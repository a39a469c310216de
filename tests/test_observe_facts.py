"""The facts observe gathers for the pure planner: what is at each desired worktree path,
whether a worktree's directory is there, and every branch, read only when it is needed."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import agents
import pytest
from conftest import fleet_in_process, git, write_fleet

from reconciler.observe.model import (
    PATH_EMPTY_DIR,
    PATH_MISSING,
    PATH_NON_EMPTY_DIR,
    PATH_NOT_A_DIR,
    Observed,
    ObservedAgent,
    Worktree,
)
from reconciler.observe.snapshot import observe, observe_paths, path_state
from reconciler.spec.loader import load_fleet


def _missing(p: Path) -> None:
    pass


def _empty(p: Path) -> None:
    p.mkdir()


def _full(p: Path) -> None:
    p.mkdir()
    (p / ".hidden").write_text("x")


def _file(p: Path) -> None:
    p.write_text("x")


def _link_to_dir(p: Path) -> None:
    (p.parent / "target").mkdir()
    (p.parent / "target" / "f").write_text("x")
    p.symlink_to(p.parent / "target")


def _dangling(p: Path) -> None:
    p.symlink_to(p.parent / "nowhere")


@pytest.mark.parametrize(("make", "state"), [
    (_missing, PATH_MISSING), (_empty, PATH_EMPTY_DIR), (_full, PATH_NON_EMPTY_DIR), (_file, PATH_NOT_A_DIR),
    (_link_to_dir, PATH_NON_EMPTY_DIR), (_dangling, PATH_MISSING),
], ids=["missing", "empty dir", "dir with a dotfile", "file", "symlink to a dir", "dangling symlink"])
def test_path_state(tmp_path: Path, make: Any, state: str) -> None:
    path = tmp_path / "wt"
    make(path)
    assert path_state(path) == state


def test_nothing_is_read_when_every_declared_agent_has_its_worktree(tmp_path: Path) -> None:
    write_fleet(tmp_path, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - {name: a, tier: local, command: [x]}
    """)
    loaded = load_fleet(tmp_path / "fleet.yaml")
    obs = Observed(base_exists=True,
                   agents={"a": ObservedAgent("a", worktree=Worktree(loaded.agents[0].worktree, "c0", "fleet/t/a"))})

    def branches() -> frozenset[str]:
        raise AssertionError("read the branches of a converged fleet")

    observe_paths(obs, loaded.agents, branches)
    assert obs.paths == {} and obs.branches == frozenset()


def test_observe_reads_branches_and_paths_only_for_agents_without_a_worktree(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: a
          tier: local
          command: {agents.argv(script, "sleep", "0")}
    """)
    git(repo, "branch", "topic")
    loaded = load_fleet(repo / "fleet.yaml")
    path = loaded.agents[0].worktree
    fresh = observe(loaded)
    assert fresh.branches == frozenset({"main", "topic"}) and fresh.paths == {path: PATH_MISSING}

    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    converged = observe(loaded)
    assert converged.agents["a"].worktree is not None and converged.agents["a"].worktree.exists
    assert converged.branches == frozenset() and converged.paths == {}  # no `git for-each-ref` on this path

    shutil.rmtree(path)
    gone = observe(loaded)
    assert gone.agents["a"].worktree is not None and gone.agents["a"].worktree.exists is False
