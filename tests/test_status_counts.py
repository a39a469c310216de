"""observe/gitrepo.tree_counts: dirty and ahead counts, with no `rev-list` for branches merged into base."""
from __future__ import annotations

from pathlib import Path

from conftest import git

from reconciler.observe.gitrepo import GitRepo


def test_merged_branches_count_zero_and_others_are_counted(repo: Path, tmp_path: Path) -> None:
    for name, commits in (("merged", 0), ("two", 2)):
        git(repo, "worktree", "add", "-q", "-b", f"fleet/{name}", str(tmp_path / name))
        for i in range(commits):
            (tmp_path / name / f"f{i}").write_text(str(i))
            git(tmp_path / name, "add", ".")
            git(tmp_path / name, "commit", "-q", "-m", f"c{i}")
    (tmp_path / "merged" / "dirty.txt").write_text("x")
    gitrepo = GitRepo(repo)
    assert gitrepo.merged_into("main") == {"main", "fleet/merged"}
    _main, linked = gitrepo.worktrees()
    by_branch = dict(zip([wt.branch for wt in linked], gitrepo.tree_counts(linked, "main"), strict=True))
    assert by_branch == {"fleet/merged": (1, 0), "fleet/two": (0, 2)}


def test_unknown_base_counts_are_unknown_not_zero(repo: Path, tmp_path: Path) -> None:
    git(repo, "worktree", "add", "-q", "-b", "fleet/a", str(tmp_path / "a"))
    gitrepo = GitRepo(repo)
    assert gitrepo.merged_into("nosuch") == frozenset()
    _main, linked = gitrepo.worktrees()
    assert gitrepo.tree_counts(linked, "nosuch") == [(0, None)]
