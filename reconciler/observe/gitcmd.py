"""Running git, called the way GitPython's `repo.git` is (`git.rev_parse("--verify", ref)`), without GitPython.

fleet only ever ran git commands through GitPython, never its object model, and importing
GitPython (and gitdb) costs more start-up time than `fleet diff` spends on its git calls
(docs/benchmarks.md "Start-up"); constructing its `Repo` also parsed the repo config. This is
the same calling style on plain processes:

- `Git(cwd).<command>(*args)`: `rev_parse` runs `git rev-parse`; the output is decoded
  (UTF-8, undecodable bytes as surrogates) without its last newline (`strip_newline_in_stdout=False`
  keeps it); a non-zero exit raises `GitCommandError` (`with_exceptions=False`: returned anyway).
- A read-only command (`READS`) runs bounded (gittree.run_bounded: `read_timeout()`, then git
  and what it started are killed and GitTimeout names it) with GIT_OPTIONAL_LOCKS=0. Any other
  (act/ changes the repo through the same runner) runs unbounded in fleet's process group, as
  GitPython ran it, unless given `timeout=` (`git worktree add`: gittree.write_timeout).
  Both run with LANGUAGE=C and LC_ALL=C (messages are matched in English)
  and without GIT_DIR & co or config given in the environment (gittree.git_env), plus `env=`
  when given.
"""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from .gittree import READ_ONLY, TIMEOUT_ENV, WRITE_TIMEOUT_ENV, git_env, read_timeout, run_bounded

# git commands (with their first argument, where that decides) that only read
READS = frozenset({"rev-parse", "for-each-ref", "log", "status", "rev-list", "ls-tree", "cat-file", "ls-files",
                   "merge-base", "show-ref", "symbolic-ref", "worktree list", "stash list", "config --get",
                   "config --get-regexp", "config --get-all", "config --list", "branch --list"})


class GitCommandError(Exception):
    """git exited non-zero. `status` is its exit code, `stderr` and `stdout` its output."""

    def __init__(self, command: list[str], status: int, stderr: str, stdout: str = "") -> None:
        self.command = command
        self.status = status
        self.stderr = stderr
        self.stdout = stdout
        super().__init__(f"{' '.join(command)} exited {status}: {stderr.strip()}")


def is_read(command: list[str]) -> bool:
    words = command[1:3]
    return bool(words) and (words[0] in READS or " ".join(words) in READS)


class Git:
    """git in `working_dir` (None: this process's cwd)."""

    def __init__(self, working_dir: str | Path | None = None) -> None:
        self._working_dir = working_dir

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return partial(self.execute, name.replace("_", "-"))

    def execute(self, subcommand: str, *args: Any, env: dict[str, str] | None = None,
                strip_newline_in_stdout: bool = True, with_exceptions: bool = True,
                timeout: float | None = None) -> str:
        """`timeout`: seconds a writing command may take (gittree.write_timeout); reads are always
        bounded by `read_timeout()`."""
        command = ["git", subcommand, *(str(a) for a in args)]
        read = is_read(command)
        full = {**git_env(LANGUAGE="C", LC_ALL="C"), **(env or {}), **(READ_ONLY if read else {})}
        cwd = os.fspath(self._working_dir) if self._working_dir is not None else None
        res = run_bounded(command, cwd=cwd, env=full, timeout=read_timeout() if read else timeout,
                          setting=TIMEOUT_ENV if read else WRITE_TIMEOUT_ENV)
        out = res.stdout.decode("utf-8", "surrogateescape")
        if strip_newline_in_stdout and out.endswith("\n"):
            out = out[:-1]
        if res.returncode != 0 and with_exceptions:
            raise GitCommandError(command, res.returncode, res.stderr.decode("utf-8", "surrogateescape").rstrip("\n"),
                                  out)
        return out
