"""spec/gitfile.py: a `.git` file read as git reads it (setup.c `read_gitfile_gently`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.spec.gitfile import gitfile_target


@pytest.mark.parametrize(("content", "target"), [
    (b"gitdir: /repo/.git/worktrees/w0\n", "/repo/.git/worktrees/w0"),
    (b"gitdir: /repo/.git/worktrees/w0\r\n", "/repo/.git/worktrees/w0"),
    (b"gitdir: ../../repo/.git/worktrees/w0", "../../repo/.git/worktrees/w0"),  # relative: from the file's directory
    (b"gitdir: /repo/.git/worktrees/w0\xc2\xa0\n", "/repo/.git/worktrees/w0\u00a0"),  # git keeps it: so is it kept
    (b"gitdir: /repo/.git/worktrees/w\xff\n", "/repo/.git/worktrees/w\udcff"),  # not UTF-8: as git's output decodes
    (b"", None),  # what git calls an invalid gitfile format, each of these
    (b"\n", None),
    (b"gitdir:/repo/.git/worktrees/w0\n", None),
    (b"gitdir: \n", None),
    (b"GITDIR: /repo/.git\n", None),
    (b"gitdir: /repo/.git\0/x\n", None),
], ids=lambda v: repr(v)[:40])
def test_a_git_file_names_what_git_would_read(tmp_path: Path, content: bytes, target: str | None) -> None:
    dot_git = tmp_path / ".git"
    dot_git.write_bytes(content)
    if target is None:
        with pytest.raises(OSError, match="not a gitfile"):
            gitfile_target(dot_git)
    else:
        assert gitfile_target(dot_git) == target


def test_no_git_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        gitfile_target(tmp_path / ".git")


def test_only_a_regular_file_of_a_path_s_length_is_read(tmp_path: Path) -> None:
    """A `.git` that is a FIFO or a link to /dev/zero (a hook can make either) is refused
    without reading it: the read would hang, or never end, in the pass that holds the lock."""
    import os

    fifo = tmp_path / "fifo" / ".git"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    zero = tmp_path / "zero" / ".git"
    zero.parent.mkdir()
    zero.symlink_to("/dev/zero")
    long = tmp_path / "long" / ".git"
    long.parent.mkdir()
    long.write_bytes(b"gitdir: /" + b"x" * 70000 + b"\n")
    for dot_git in (fifo, zero, long):
        with pytest.raises(OSError, match="not a gitfile"):
            gitfile_target(dot_git)
