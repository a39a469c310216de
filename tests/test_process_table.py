"""observe/processes.py: one pass over the process table, shared by liveness, orphans and prune checks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from reconciler.observe.processes import ProcessTable, is_alive, processes_in


@pytest.fixture
def sleepers(tmp_path: Path):
    """Real processes with their cwd in a tree, in a deeper dir, and in a sibling whose name extends it."""
    tree, deep, sibling = tmp_path / "tree", tmp_path / "tree" / "a" / "b", tmp_path / "tree-2"
    for d in (deep, sibling):
        d.mkdir(parents=True)
    procs = {name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=cwd)
             for name, cwd in (("top", tree), ("deep", deep), ("sibling", sibling))}
    yield tree, sibling, procs
    for p in procs.values():
        p.kill()
        p.wait()


def _pids(lines: list[str]) -> set[int]:
    return {int(line.split(" ", 1)[0]) for line in lines}


def test_processes_in_a_tree_from_one_pass(sleepers) -> None:
    tree, sibling, procs = sleepers
    table = ProcessTable()
    assert _pids(processes_in(tree, table=table)) == {procs["top"].pid, procs["deep"].pid}
    assert _pids(processes_in(sibling, table=table)) == {procs["sibling"].pid}
    # the same answer without a table (a fresh pass), as destructive steps re-check live
    assert _pids(processes_in(tree)) == {procs["top"].pid, procs["deep"].pid}


def test_ignored_groups_are_left_out(sleepers) -> None:
    tree, _sibling, procs = sleepers
    table = ProcessTable()
    ignored = frozenset([os.getpgid(procs["top"].pid)])  # the test's own group: every sleeper is in it
    assert processes_in(tree, table=table, ignore_groups=ignored) == []
    assert processes_in(tree, ignore_groups=ignored) == []  # the live re-check (one cwd pass) alike


def test_a_process_whose_directory_was_removed_under_it_is_still_in_the_tree(sleepers) -> None:
    tree, _sibling, procs = sleepers
    (tree / "a" / "b").rmdir()  # "deep" still runs there: /proc shows its cwd as "... (deleted)"
    expected = {procs["top"].pid, procs["deep"].pid}
    assert _pids(processes_in(tree)) == expected
    assert _pids(processes_in(tree, table=ProcessTable())) == expected


def test_liveness_from_the_pass_matches_a_live_check(sleepers) -> None:
    _tree, _sibling, procs = sleepers
    pid = procs["top"].pid
    created = psutil.Process(pid).create_time()
    table = ProcessTable()
    assert table.alive(pid, created) is True
    assert is_alive(pid, created) is True
    # a reused pid (another create time) is not the recorded process
    assert table.alive(pid, created - 5) is False
    assert table.alive(pid, None) is False
    procs["top"].kill()
    procs["top"].wait()
    assert ProcessTable().alive(pid, created) is False
    assert is_alive(pid, created) is False


def test_a_fork_of_this_process_about_to_run_git_in_the_tree_is_not_work_in_it(sleepers) -> None:
    """Between fork and exec a child is still this process (same command line) with its cwd
    already in the tree: a Ray session actor's own `git` call, seen by its prune check, blocked
    a delete. It is left out; a child that exec'd anything (a session) is still counted."""
    tree, _sibling, procs = sleepers
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: in the tree, never exec'ing, until the parent has looked
        try:
            os.close(write)
            os.chdir(tree)
            os.read(read, 1)
        finally:
            os._exit(0)
    os.close(read)
    try:
        child = psutil.Process(pid)
        while child.cwd() != str(tree):
            pass  # the chdir is the child's first step; no timing is asserted
        assert _pids(processes_in(tree)) == {procs["top"].pid, procs["deep"].pid}
        assert _pids(processes_in(tree, table=ProcessTable())) == {procs["top"].pid, procs["deep"].pid}
    finally:
        os.close(write)
        os.waitpid(pid, 0)


def test_this_process_s_own_git_in_the_tree_is_not_work_in_it(sleepers) -> None:
    """A Ray session actor's `git rev-parse` in its clone, run by a thread while another checks
    the clone for a prune, blocked a delete ("1 process(es) running in it"). A git this process
    started is left out; a git started by anything else (here: by a shell, as an agent's is by
    its host) is counted, as is any other child of this process."""
    tree, _sibling, procs = sleepers
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    own = subprocess.Popen(["git", "cat-file", "--batch"], cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    other = subprocess.Popen(["sh", "-c", "git cat-file --batch; :"], cwd=tree, stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
    try:
        theirs = wait_for_child(other.pid)
        expected = {procs["top"].pid, procs["deep"].pid, other.pid, theirs}
        assert _pids(processes_in(tree)) == expected
        assert _pids(processes_in(tree, table=ProcessTable())) == expected
    finally:
        for p in (own, other):
            p.kill()
            p.wait()


def wait_for_child(pid: int) -> int:
    """The pid of the first child of `pid`, once it has exec'd git (no timing asserted)."""
    while True:
        for child in psutil.Process(pid).children():
            try:
                if child.cmdline()[:1] == ["git"]:
                    return child.pid
            except psutil.Error:
                continue
