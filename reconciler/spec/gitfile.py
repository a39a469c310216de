"""Reading a `.git` file (`gitdir: <path>`, what a linked worktree or a submodule has instead of
a `.git` directory) as git reads it: the exact prefix, only the line ending stripped
(setup.c `read_gitfile_gently`), the path decoded as fleet decodes git's output (UTF-8, with
surrogates for bytes that are not: a repository at such a path is read, not a crash).

In spec/ because the loader finds the main checkout with it (`loader.main_checkout`); observe
and store read worktrees' `.git` files with it too.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

PREFIX = b"gitdir: "
MAX_BYTES = 65536  # a path and a line ending; anything longer is no gitfile


def gitfile_target(dot_git: Path) -> str:
    """The path the `.git` file `dot_git` names, as written (relative to the file's directory
    or absolute); OSError when it cannot be read or is not a gitfile. Only a regular file is
    read, and only its first MAX_BYTES: a `.git` made a FIFO or a link to /dev/zero (by a
    hook) must not hang or fill the pass holding the fleet lock."""
    fd = os.open(dot_git, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a gitfile (not a regular file)", str(dot_git))
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise OSError(errno.EINVAL, "not a gitfile (too long)", str(dot_git))
    raw = raw.rstrip(b"\r\n")
    if not raw.startswith(PREFIX) or len(raw) == len(PREFIX) or b"\0" in raw:
        raise OSError(errno.EINVAL, "not a gitfile (git reads `gitdir: <path>`)", str(dot_git))
    return raw[len(PREFIX):].decode("utf-8", "surrogateescape")
