"""`fleet lock NAME -- CMD` with real processes: mutual exclusion, slots, signals, exit codes, lock dirs.

No test asserts that something finished within a time: only orderings and overlaps,
and generous deadlines that fail instead of hanging.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fleet, git, start_of, wait_gone, write_fleet

from reconciler.errors import FleetError
from reconciler.locking.slots import read_lock_table, write_lock_table

CLI = [sys.executable, "-m", "reconciler.cli.main", "lock"]

# CMD for the overlap tests: record [start, end] and the number of CMDs running meanwhile.
# With BARRIER=n it waits (up to 10 s) until n CMDs run at once, so overlap never depends on timing.
WORKER = """
import json, os, sys, time
out, running, barrier = sys.argv[1], sys.argv[2], int(sys.argv[3])
mine = os.path.join(running, str(os.getpid()))
start = time.time()
open(mine, "w").close()
peak = len(os.listdir(running))
deadline = time.monotonic() + 10
while barrier > 1 and len(os.listdir(running)) < barrier and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.3)
peak = max(peak, len(os.listdir(running)))
os.unlink(mine)
end = time.time()
with open(out, "a") as f:
    f.write(json.dumps([start, end, peak]) + "\\n")
"""

# CMD that says it started, then waits for a file (holders the test releases by hand).
HOLD = """
import os, sys, time
started, release = sys.argv[1], sys.argv[2]
open(started, "w").write(str(os.getpid()))
deadline = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def wait_until(check, timeout: float = 60, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "locks"
    monkeypatch.setenv("FLEET_LOCK_DIR", str(path))
    return path


def start_lock(*args: str, cwd: Path, stderr: Path | None = None) -> subprocess.Popen[bytes]:
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    return subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)


def finish(procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]


def hold(tmp_path: Path, name: str = "build", *extra: str, tag: str = "h") -> tuple[subprocess.Popen[bytes], Path]:
    """A `fleet lock` whose CMD is running (and holds the slot) until `release` exists."""
    started, release = tmp_path / f"{tag}.started", tmp_path / f"{tag}.release"
    proc = start_lock(*extra, name, "--", sys.executable, "-c", HOLD, str(started), str(release), cwd=tmp_path)
    wait_until(lambda: started.exists() or proc.poll() is not None)
    assert proc.poll() is None, "the holder exited early"
    return proc, release


def run_workers(tmp_path: Path, n: int, *lock_args: str, barrier: int = 1) -> list[tuple[float, float, int]]:
    out, running = tmp_path / "intervals.jsonl", tmp_path / "running"
    running.mkdir()
    procs = [start_lock(*lock_args, "--", sys.executable, "-c", WORKER, str(out), str(running), str(barrier),
                        cwd=tmp_path) for _ in range(n)]
    assert finish(procs) == [0] * n
    rows = [tuple(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(rows) == n
    return sorted(rows)  # type: ignore[return-value]


def max_overlap(rows: list[tuple[float, float, int]]) -> int:
    events = sorted([(s, 1) for s, _, _ in rows] + [(e, -1) for _, e, _ in rows])  # an end sorts before a start
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def test_one_slot_never_overlaps(tmp_path: Path, lock_dir: Path) -> None:
    rows = run_workers(tmp_path, 6, "build")
    for (_, end, _), (start, _, _) in zip(rows, rows[1:], strict=False):
        assert start >= end, f"intervals overlap: {rows}"
    assert all(peak == 1 for _, _, peak in rows)


def test_two_slots_at_most_two_at_once(tmp_path: Path, lock_dir: Path) -> None:
    write_lock_table(lock_dir, {"build": 2})
    rows = run_workers(tmp_path, 6, "build", barrier=2)
    assert max_overlap(rows) == 2, rows
    assert max(peak for _, _, peak in rows) == 2


def test_slots_option_for_an_undeclared_lock(tmp_path: Path, lock_dir: Path) -> None:
    rows = run_workers(tmp_path, 4, "--slots", "2", "build", barrier=2)
    assert max_overlap(rows) == 2, rows


def test_exit_code_passthrough(tmp_path: Path, lock_dir: Path) -> None:
    assert fleet("lock", "build", "--", sys.executable, "-c", "raise SystemExit(7)", cwd=tmp_path).returncode == 7
    assert fleet("lock", "build", "--", sys.executable, "-c", "pass", cwd=tmp_path).returncode == 0
    proc = fleet("lock", "build", "--", "no-such-command-xyz", cwd=tmp_path)
    assert proc.returncode == 127 and "command not found" in proc.stderr
    killed = fleet("lock", "build", "--", sys.executable, "-c",
                   "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
                   cwd=tmp_path)
    assert killed.returncode == 128 + signal.SIGTERM


def test_cmd_options_are_not_parsed_and_stdout_passes_through(tmp_path: Path, lock_dir: Path) -> None:
    proc = fleet("lock", "build", "--", sys.executable, "-c", "import sys; print(sys.argv[1:])", "-f", "--help", "--",
                 "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['-f', '--help', '--', 'x']"


def test_released_when_holder_is_sigtermed(tmp_path: Path, lock_dir: Path) -> None:
    holder, _ = hold(tmp_path)
    cmd_pid = int((tmp_path / "h.started").read_text())
    start = start_of(Path(f"/proc/{cmd_pid}/stat").read_text())
    holder.send_signal(signal.SIGTERM)  # only to fleet lock: it must forward to CMD
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    wait_gone(cmd_pid, start)
    after = fleet("lock", "build", "--timeout", "30", "--", sys.executable, "-c", "print('acquired')", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "acquired" in after.stdout
    assert not (lock_dir / "build.0.json").exists()


def test_cmd_can_clean_up_on_sigterm_before_release(tmp_path: Path, lock_dir: Path) -> None:
    script = ("import signal, sys, time\n"
              "def bye(signum, frame):\n"
              "    open(sys.argv[2], 'w').write('cleaned')\n"
              "    sys.exit(5)\n"
              "signal.signal(signal.SIGTERM, bye)\n"
              "open(sys.argv[1], 'w').close()\n"
              "time.sleep(60)\n")
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    proc = start_lock("build", "--", sys.executable, "-c", script, str(started), str(cleaned), cwd=tmp_path)
    wait_until(started.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 5
    assert cleaned.read_text() == "cleaned"


def test_sigterm_while_waiting_gives_up_without_running(tmp_path: Path, lock_dir: Path) -> None:
    holder, release = hold(tmp_path)
    marker = tmp_path / "ran"
    err = tmp_path / "waiter.err"
    waiter = start_lock("build", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')", cwd=tmp_path, stderr=err)
    wait_until(lambda: "waiting for build" in err.read_text())
    waiter.send_signal(signal.SIGTERM)
    assert waiter.wait(timeout=60) == 128 + signal.SIGTERM
    release.touch()
    assert holder.wait(timeout=60) == 0
    assert not marker.exists()


def test_waiting_message_names_the_holder(tmp_path: Path, lock_dir: Path) -> None:
    holder, release = hold(tmp_path)
    err = tmp_path / "waiter.err"
    waiter = start_lock("build", "--", sys.executable, "-c", "pass", cwd=tmp_path, stderr=err)
    wait_until(lambda: "waiting for build" in err.read_text())
    assert waiter.poll() is None  # still waiting
    text = err.read_text()
    assert f"held by pid {holder.pid}" in text and "1 slot" in text, text
    release.touch()
    assert finish([holder, waiter]) == [0, 0]
    assert err.read_text().count("waiting for") == 1  # said once


def test_timeout(tmp_path: Path, lock_dir: Path) -> None:
    holder, release = hold(tmp_path)
    marker = tmp_path / "ran"
    proc = fleet("lock", "build", "--timeout", "0.3", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')",
                 cwd=tmp_path)
    assert proc.returncode == 1
    assert "timed out" in proc.stderr and "build" in proc.stderr and str(holder.pid) in proc.stderr
    assert not marker.exists()
    release.touch()
    assert holder.wait(timeout=60) == 0


def test_other_lock_names_do_not_block(tmp_path: Path, lock_dir: Path) -> None:
    holder, release = hold(tmp_path)
    other = fleet("lock", "test", "--timeout", "30", "--", sys.executable, "-c", "pass", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    release.touch()
    assert holder.wait(timeout=60) == 0


def test_fleet_lock_dir_env_is_honoured(tmp_path: Path, lock_dir: Path, repo: Path) -> None:
    # in a git repo too: the env wins over the repo's .fleet/locks
    lister = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    proc = fleet("lock", "build", "--", sys.executable, "-c", lister, str(lock_dir), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "'build.0.lock'" in proc.stdout and "'build.0.json'" in proc.stdout
    assert not (repo / ".fleet").exists()
    # outside any repo it is all that is needed
    outside = tmp_path / "outside"
    outside.mkdir()
    assert fleet("lock", "build", "--", sys.executable, "-c", "pass", cwd=outside).returncode == 0


def test_holder_info_while_held(tmp_path: Path, lock_dir: Path) -> None:
    holder, release = hold(tmp_path)
    info = json.loads((lock_dir / "build.0.json").read_text())
    assert info["pid"] == holder.pid and info["since"] and info["cmd"][0] == sys.executable
    release.touch()
    assert holder.wait(timeout=60) == 0
    assert not (lock_dir / "build.0.json").exists()


def test_without_env_uses_the_git_common_dir(tmp_path: Path, repo: Path) -> None:
    """From any worktree of the repo: `<git common dir>/fleet/locks`, which no checkout shows."""
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    sub = linked / "sub"
    sub.mkdir()
    lister = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    locks = repo / ".git" / "fleet" / "locks"
    proc = fleet("lock", "build", "--", sys.executable, "-c", lister, str(locks), cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert "'build.0.lock'" in proc.stdout
    assert not (linked / ".fleet").exists() and not (repo / ".fleet").exists()
    assert ".fleet" not in (repo / ".git" / "info" / "exclude").read_text()
    assert git(repo, "status", "--porcelain") == ""


def test_no_repo_and_no_env_is_a_clear_error(tmp_path: Path) -> None:
    proc = fleet("lock", "build", "--", sys.executable, "-c", "pass", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FLEET_LOCK_DIR" in proc.stderr and "Traceback" not in proc.stderr


FLEET = """
    apiVersion: fleet/v1alpha1
    kind: Fleet
    metadata: {name: t}
    spec:
      tiers: {local: {runtime: command}}
      locks:
        build: {slots: 2}
        deploy: {slots: 1}
      agents:
        - name: a
          tier: local
          prompt: hi
          command: [python, -c, pass]
"""


def test_slots_and_dir_from_fleet_file(tmp_path: Path, repo: Path) -> None:
    file = write_fleet(repo, FLEET)
    out, running = tmp_path / "intervals.jsonl", tmp_path / "running"
    running.mkdir()
    # options after NAME, as SPEC writes it: fleet lock NAME -f FILE -- CMD
    procs = [start_lock("build", "-f", str(file), "--", sys.executable, "-c", WORKER, str(out), str(running), "2",
                        cwd=repo) for _ in range(4)]
    assert finish(procs) == [0] * 4
    rows = sorted(tuple(json.loads(line)) for line in out.read_text().splitlines())
    assert max_overlap(rows) == 2  # type: ignore[arg-type]
    assert (repo / ".git" / "fleet" / "locks" / "build.1.lock").exists()


def test_undeclared_lock_in_fleet_file_lists_declared(tmp_path: Path, repo: Path) -> None:
    file = write_fleet(repo, FLEET)
    proc = fleet("lock", "-f", str(file), "tests", "--", sys.executable, "-c", "pass", cwd=repo)
    assert proc.returncode == 1
    assert "not declared" in proc.stderr and "build, deploy" in proc.stderr


def test_declared_slots_win_over_option(tmp_path: Path, lock_dir: Path) -> None:
    write_lock_table(lock_dir, {"build": 1})
    holder, release = hold(tmp_path)
    proc = fleet("lock", "build", "--slots", "3", "--timeout", "0.2", "--", sys.executable, "-c", "pass",
                 cwd=tmp_path)
    assert proc.returncode == 1 and "ignoring --slots 3" in proc.stderr
    release.touch()
    assert holder.wait(timeout=60) == 0


def test_lock_table_merges_and_validates(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    write_lock_table(lock_dir, {"build": 2})
    write_lock_table(lock_dir, {"deploy": 1, "build": 3})
    assert read_lock_table(lock_dir) == {"build": 3, "deploy": 1}
    with pytest.raises(FleetError):
        write_lock_table(lock_dir, {"build": 0})
    with pytest.raises(FleetError):
        write_lock_table(lock_dir, {"../x": 1})
    (lock_dir / "locks.json").write_text("not json")
    assert read_lock_table(lock_dir) == {}


def test_help_has_examples(tmp_path: Path) -> None:
    proc = fleet("lock", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "fleet lock build -- make -j4" in proc.stdout and "fleet lock build -- pytest" in proc.stdout


def _take_terminal() -> None:  # in the child: new session whose controlling terminal is stdin (a pty)
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


INT_COUNTER = """
import signal, sys, time
hits = []
signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
open(sys.argv[1], "w").close()
deadline = time.monotonic() + 60
while not hits and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)
open(sys.argv[2], "w").write(str(len(hits)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tty-signal detection uses sigtimedwait")
def test_ctrl_c_from_the_terminal_reaches_cmd_once(tmp_path: Path, lock_dir: Path) -> None:
    """Ctrl-C goes to the whole foreground group (CMD too): CMD gets it, handles it, fleet lock passes its code."""
    master, slave = os.openpty()
    started, count = tmp_path / "started", tmp_path / "count"
    try:
        proc = subprocess.Popen([*CLI, "build", "--", sys.executable, "-c", INT_COUNTER, str(started), str(count)],
                                cwd=tmp_path, stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=_take_terminal)
        wait_until(started.exists)
        os.write(master, b"\x03")  # Ctrl-C: the kernel signals the terminal's foreground process group
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(slave)
        os.close(master)
    assert count.read_text() == "1"


def test_sigint_sent_to_fleet_lock_alone_is_forwarded(tmp_path: Path, lock_dir: Path) -> None:
    started, count = tmp_path / "started", tmp_path / "count"
    proc = start_lock("build", "--", sys.executable, "-c", INT_COUNTER, str(started), str(count), cwd=tmp_path)
    wait_until(started.exists)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert count.read_text() == "1"


GATE = """
import json, os, signal, sys, time
from reconciler.locking.slots import SignalGate

got = []
with SignalGate() as gate:
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        got += gate.wait(0.1)  # the test types Ctrl-C
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would
    while len(got) < 2 and time.monotonic() < deadline:
        got += gate.wait(0.1)
print(json.dumps([[g.signum, g.from_kernel] for g in got]), flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="needs sigtimedwait")
def test_terminal_signals_are_told_apart_from_kill(tmp_path: Path) -> None:
    """The rule behind not forwarding Ctrl-C: tty signals (already sent to CMD) vs kill() (only to us)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-c", GATE], cwd=tmp_path, stdin=slave, stdout=subprocess.PIPE,
                                text=True, preexec_fn=_take_terminal)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.write(master, b"\x03")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert json.loads(out) == [[signal.SIGINT, True], [signal.SIGTERM, False]]
