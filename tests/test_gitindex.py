"""The index reader that lets a prune check skip `git ls-files -v` (observe/gitrepo.py).

It may only ever say "no file is marked assume-unchanged or skip-worktree" when git
agrees; whenever it is unsure it says False and the check asks git.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from reconciler.observe.gitrepo import index_has_no_flags


def flagged_by_git(repo: Path) -> list[str]:
    return [line for line in git(repo, "ls-files", "-v").splitlines() if line[:1].islower() or line[:1] == "S"]


def agrees(repo: Path) -> bool:
    """The reader's answer, checked against git's own."""
    clear = index_has_no_flags(repo / ".git" / "index")
    if clear:
        assert flagged_by_git(repo) == []
    return clear


@pytest.fixture
def files(repo: Path) -> Path:
    for i in range(40):
        sub = repo / f"dir{i % 7}" / ("x" * (i * 3 % 90 + 1))
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file-{i}.txt").write_text(f"{i}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "files")
    return repo


@pytest.mark.parametrize("version", [2, 3])
def test_a_plain_index_has_no_flags(files: Path, version: int) -> None:
    git(files, "update-index", "--index-version", str(version))
    assert agrees(files)


def test_index_v4_is_left_to_git(files: Path) -> None:
    git(files, "update-index", "--index-version", "4")  # path-compressed: not read
    assert not agrees(files)


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_a_flagged_file_is_seen_and_a_cleared_one_is_not(files: Path, flag: str) -> None:
    git(files, "update-index", flag, "README.md")
    assert flagged_by_git(files) and not agrees(files)
    git(files, "update-index", flag.replace("--", "--no-", 1), "README.md")
    assert agrees(files)


def test_intent_to_add_and_split_index_are_left_to_git(files: Path) -> None:
    (files / "new.txt").write_text("new\n")
    git(files, "add", "-N", "new.txt")  # an extended flag: not assume-unchanged, but not read either
    assert not agrees(files)
    git(files, "reset", "-q")
    assert agrees(files)
    git(files, "update-index", "--split-index")  # the entries live in another file
    assert not agrees(files)


def test_optional_extensions_are_skipped(files: Path) -> None:
    git(files, "update-index", "--untracked-cache")
    git(files, "status", "--porcelain")  # writes the UNTR extension
    assert agrees(files)


def test_a_path_too_long_for_the_length_field_is_left_to_git(files: Path) -> None:
    blob = git(files, "hash-object", "-w", "README.md").strip()
    long_path = "/".join(["d" * 200] * 21) + "/f.txt"  # > 4095 bytes: stored with length 0xFFF
    git(files, "update-index", "--add", "--cacheinfo", f"100644,{blob},{long_path}")
    assert not agrees(files)


def test_missing_or_damaged_index_is_left_to_git(files: Path, tmp_path: Path) -> None:
    index = files / ".git" / "index"
    assert not index_has_no_flags(tmp_path / "nope")
    damaged = tmp_path / "index"
    damaged.write_bytes(index.read_bytes()[:-40])
    assert not index_has_no_flags(damaged)
    damaged.write_bytes(b"DIRC" + index.read_bytes()[4:100])
    assert not index_has_no_flags(damaged)


def test_an_entry_whose_path_runs_past_the_entries_is_left_to_git(files: Path, tmp_path: Path) -> None:
    """A damaged length field: the path's end would lie in the checksum or beyond the file."""
    data = bytearray((files / ".git" / "index").read_bytes())
    pos, last = 12, 12
    for _ in range(int.from_bytes(data[8:12], "big")):  # find the last entry
        last = pos
        length = ((data[pos + 60] & 0x0F) << 8) | data[pos + 61]
        pos += (70 + length) & ~7
    data[last + 60] = (data[last + 60] & 0xF0) | 0x0F  # length 0xFxx: past the end of this small index
    data[last + 61] = 0xF0
    damaged = tmp_path / "index"
    damaged.write_bytes(bytes(data))
    assert not index_has_no_flags(damaged)
