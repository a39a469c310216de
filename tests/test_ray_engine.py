"""placement.engine ray on a real multi-node Ray cluster on this machine (127.0.0.1 only).

One cluster for the module (reconciler/engines/ray/localcluster.py): a head without
session slots and two worker nodes with two `fleet_slots` each. Each test has its own
fleet (so its own Ray namespace), repo, bare remote and node directories, and runs the
real `fleet` CLI. Skipped when Ray is not installed (`pip install -e '.[test,ray]'`).
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import FLEETS, fleet, git, status, wait_until, write_fleet

from reconciler.engines.ray import cluster as ray_cluster
from reconciler.engines.ray import localcluster  # sets Ray's environment before Ray is imported

ray = pytest.importorskip("ray")  # the module's own driver (see `cluster`)

pytestmark = pytest.mark.xdist_group("ray")  # one worker, one cluster (pyproject: --dist loadgroup)

AGENT = textwrap.dedent('''\
    import os, subprocess, sys, time
    mode, agent = sys.argv[1], os.environ["FLEET_AGENT"]
    def commit(path, text, message):
        with open(path, "w") as f:
            f.write(text)
        subprocess.run(["git", "add", path], check=True)
        subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=agent@fleet.invalid", "commit", "-q",
                        "-m", message], check=True)
    if mode == "sleep":
        print(f"{agent} sleeping on its node", flush=True)
        time.sleep(float(sys.argv[2]))
    elif mode == "steps":  # one commit per step; a resumed run skips the steps already on its branch
        for step in range(int(sys.argv[2])):
            path = f"{agent}-step{step}.txt"
            if os.path.exists(path):
                print(f"{agent}: step {step} already done", flush=True)
                continue
            time.sleep(float(sys.argv[3]))
            commit(path, f"step {step}\\n", f"{agent} step {step}")
            print(f"{agent}: step {step} committed", flush=True)
    elif mode == "unpushed":  # a commit and an uncommitted draft, once the test has made the remote refuse
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.1)
        commit("notes.txt", "notes\\n", f"{agent} did its work")
        with open("draft.txt", "w") as f:
            f.write("half-written\\n")
    elif mode == "lock":  # take lock `build` again and again; each hold recorded (start end) outside the clone
        hold = ("import sys, time; t = time.time(); time.sleep(1.0); "
                "open(sys.argv[1], 'a').write(f'{t} {time.time()}\\\\n')")
        for _ in range(int(sys.argv[3])):
            subprocess.run([sys.executable, "-m", "reconciler.cli.main", "lock", "build", "--", sys.executable, "-c",
                            hold, os.path.join(sys.argv[2], agent)], check=True)
    elif mode == "env":  # what the session was given, outside the clone
        with open(sys.argv[2], "w") as f:
            f.write(os.environ.get("TOKEN", "<unset>"))
        time.sleep(float(sys.argv[3]))
    print('{"total_cost_usd": 0.5}', flush=True)
''')

REJECT_ALL = "#!/bin/sh\necho 'remote: pushes are refused for this test' >&2\nexit 1\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    started = time.monotonic()
    cluster = localcluster.start(workers=2, slots=2, port=0)
    session_dir = cluster.head_node.get_session_dir_path()
    print(f"ray cluster up in {time.monotonic() - started:.1f}s at {cluster.address}")
    # one driver for the module's own looks at the cluster (actors, on_cluster): a driver started per
    # look cost seconds of CPU each, on a machine the cluster and the CLI under test share
    ray.init(address=cluster.address, namespace="fleet-tests", logging_level="ERROR", log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    # nothing of this cluster may outlive it: no raylet, GCS, worker or session host
    wait_until(lambda: not _processes_of(session_dir), timeout=30)


def _processes_of(session_dir: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(session_dir in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def ray_fleet(repo: Path, cluster: object, *, name: str, agent_args: list[str], count: int = 2,
              max_running: int | None = None, extra: str = "") -> Path:
    """A ray fleet of `count` scripted agents, with a bare remote that `repo`'s main is pushed to."""
    remote = repo.parent / "remote.git"
    if not remote.exists():
        git(repo.parent, "init", "-q", "--bare", str(remote))
        git(repo, "push", "-q", str(remote), "main")
    script = repo.parent / "ray_agent.py"
    script.write_text(AGENT)
    items = ", ".join(f"a{i:02d}" for i in range(count))
    caps = f"{{maxRunning: {max_running}}}" if max_running else "{}"
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: {name}}}
        spec:
          remote: {remote}
          placement: {{engine: ray, address: "{cluster.address}", workdir: "{repo.parent / 'nodes'}",
                      pushInterval: 1s}}
          tiers: {{local: {{runtime: command}}}}
          concurrency: {caps}
          restartBackoff: {{initial: 1s, max: 2s}}
          agents:
            - name: w-{{item}}
              forEach: {{items: [{items}]}}
              tier: local
              prompt: work on {{item}}
              command: {json.dumps([sys.executable, str(script), *agent_args])}
              restart: OnFailure
        {extra}
    """)


def actors(cluster: object, namespace: str, *, kill: bool = False, own: bool = False) -> list[str]:
    """The session actors in `namespace` (`own`: fleet's own too, lease.py and locks.py), and kill every
    named actor there, through this module's driver (see `cluster`)."""
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace)
    for name in names if kill else []:
        try:
            ray.kill(ray.get_actor(name, namespace=namespace))
        except ValueError:
            pass
    return [name for name in names if own or "::" not in name]


@pytest.fixture
def namespaces(cluster: object) -> Iterator[list[str]]:
    """Namespaces a test used; whatever it left running there is killed after it."""
    used: list[str] = []
    yield used
    for ns in used:
        actors(cluster, ns, kill=True)


DRIVER = textwrap.dedent('''\
    import json, sys
    from reconciler.engines.ray import cluster
    ray = cluster.connect_to(sys.argv[1], "fleet-driver-probe")
    @ray.remote(num_cpus=0)
    def where():
        return ray.util.get_node_ip_address()
    print(json.dumps({"driver": ray.util.get_node_ip_address(), "task": ray.get(where.remote(), timeout=60),
                      "gcs": ray.get_runtime_context().gcs_address}))
''')


def test_a_driver_connects_to_a_loopback_cluster_with_no_private_api(cluster: object) -> None:
    """cluster.connect_to passes ray.init only public arguments; the environment compat.keep_loopback
    sets is what keeps a fresh driver (and what it runs) on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, cluster.address], check=False, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen == {"driver": "127.0.0.1", "task": "127.0.0.1", "gcs": cluster.address}, seen
    assert "_node_ip_address" not in inspect.getsource(ray_cluster)


def remote_refs(repo: Path) -> dict[str, str]:
    out = git(repo.parent / "remote.git", "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split() for line in out.splitlines())


@contextlib.contextmanager
def control_loop(repo: Path, file: str = "fleet.yaml") -> Iterator[subprocess.Popen[bytes]]:
    """`fleet reconcile FILE --watch --interval 1` in the background (output in ../loop.log), stopped after."""
    with open(repo.parent / "loop.log", "ab") as out:
        loop = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", file, "--watch",
                                 "--interval", "1"], cwd=repo, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield loop
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=30)
    said = (repo.parent / "loop.log").read_text()
    assert "SIGTERM: stopping" in said and "SIGTERM received" not in said, said[-3000:]  # no Ray stack trace


def rows_when(repo: Path, ready, *, file: str = "fleet.yaml", timeout: float = 60):  # type: ignore[no-untyped-def]
    """`fleet status` rows, once `ready(rows)` holds."""
    def check():  # type: ignore[no-untyped-def]
        rows = status(repo, file)
        return rows if ready(rows) else None

    return wait_until(check, timeout=timeout, interval=0.5)


def by_phase(rows: dict[str, dict], phase: str) -> list[dict]:
    return [r for r in rows.values() if r["phase"] == phase]


def test_sessions_spread_over_nodes_and_both_caps_hold(repo: Path, cluster: object, namespaces: list[str]) -> None:
    namespaces.append("fleet-spread")
    ray_fleet(repo, cluster, name="spread", agent_args=["sleep", "120"], count=5, max_running=3)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_when(repo, lambda r: len([x for x in by_phase(r, "Running") if x["pid"]]) == 3)  # cloned, started
    running = by_phase(rows, "Running")
    assert len({r["node"] for r in running}) == 2, running  # SPREAD: both worker nodes have sessions
    assert all(r["pid"] and r["worktree"].startswith("127.0.0.1:") for r in running)
    waiting = by_phase(rows, "Pending")
    assert len(waiting) == 2 and all("concurrency.maxRunning=3" in r["reason"] for r in waiting)
    # fleet logs reaches the node: nothing of this output has been copied here yet
    first = running[0]["agent"]
    assert not (repo / ".git" / "fleet" / "logs" / "spread" / f"{first}.log").exists()
    wait_until(lambda: f"{first} sleeping on its node" in fleet("logs", "fleet.yaml", first, cwd=repo,
                                                                  check=True).stdout, timeout=30, interval=0.5)
    table = fleet("status", "fleet.yaml", cwd=repo, check=True).stdout
    assert "NODE" in table and running[0]["node"] in table

    # the cluster's cap: 5 sessions wanted, 4 fleet_slots in the cluster
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().replace("maxRunning: 3", "maxRunning: 5"))
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    rows = rows_when(repo, lambda r: len(by_phase(r, "Running")) == 4)
    [unplaced] = by_phase(rows, "Pending")
    assert "waiting for the Ray cluster to place it" in unplaced["reason"] and unplaced["node"] is None, unplaced
    assert len(actors(cluster, "fleet-spread")) == 5

    # a freed slot goes to the waiting session without another apply: the cluster places it
    victim = by_phase(rows, "Running")[0]["agent"]
    proc = fleet("delete", "fleet.yaml", victim, "--yes", "--grace", "2", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: status(repo)[unplaced["agent"]]["phase"] == "Running", timeout=60, interval=0.5)
    assert "fleet::controller" in actors(cluster, "fleet-spread", own=True)  # agents are left: it stays

    proc = fleet("delete", "fleet.yaml", "--yes", "--grace", "2", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the last agent gone and its work safe: nothing of the fleet is left on the cluster, the controller's
    # lease and records included
    assert actors(cluster, "fleet-spread", own=True) == []
    # branches and owner refs are gone; what stays is the retention archive each release pushed first
    assert not [ref for ref in remote_refs(repo) if "spread" in ref and not ref.startswith("refs/fleet/archive/")]
    kept = [ref for ref in remote_refs(repo) if ref.startswith("refs/fleet/archive/spread/")]
    assert {ref.split("/")[4] for ref in kept} == {f"w-a{i:02d}" for i in range(5)}, kept
    assert not list((repo.parent / "nodes").glob("*/spread/w-*/repo"))  # no clone left on any node


def test_prune_refuses_work_that_is_not_on_the_remote(repo: Path, cluster: object, namespaces: list[str]) -> None:
    namespaces.append("fleet-keep")
    go = repo.parent / "go"
    ray_fleet(repo, cluster, name="keep", agent_args=["unpushed", str(go)], count=1)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # creates the branch on the remote
    hook = repo.parent / "remote.git" / "hooks" / "pre-receive"
    hook.write_text(REJECT_ALL)
    hook.chmod(0o755)
    go.touch()
    rows = rows_when(repo, lambda r: r["w-a00"]["phase"] == "Succeeded")
    node, clone = rows["w-a00"]["node"], Path(rows["w-a00"]["worktree"].split(":", 1)[1])
    assert node and rows["w-a00"]["dirty"] == 1
    # the session ended, but its clone cannot be released: nothing may be only there
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    [kept] = [c for c in status(repo)["w-a00"]["conditions"] if c["type"] == "CloneKept"]
    assert kept["status"] == "True" and "pushes are refused for this test" in kept["message"], kept

    proc = fleet("delete", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "draft.txt" in proc.stdout and "w-a00 did its work" in proc.stdout
    proc = fleet("delete", "fleet.yaml", "--yes", "--archive", cwd=repo)  # the archive cannot be pushed either
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot push the archive" in proc.stdout + proc.stderr
    assert (clone / "draft.txt").exists() and "did its work" in git(clone, "log", "--format=%s", "-1")
    assert actors(cluster, "fleet-keep", own=True) == ["fleet::controller", "w-a00"]  # a refused delete keeps all

    hook.unlink()
    proc = fleet("delete", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    refs = remote_refs(repo)
    assert "refs/heads/fleet/keep/w-a00" not in refs
    [archive] = [ref for ref in refs if ref.startswith("refs/fleet/archive/keep/w-a00/")]
    bare = repo.parent / "remote.git"
    assert git(bare, "show", f"{archive}:draft.txt") == "half-written\n"
    listed = json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    assert [(a["agent"], a["ref"]) for a in listed] == [("w-a00", archive)]  # kept on the remote, listed here
    assert "w-a00 did its work" in git(bare, "log", "--format=%s", archive)
    assert not clone.exists() and actors(cluster, "fleet-keep", own=True) == []

    # fleet restore brings it back from the remote: the branch there (so apply resumes it on a node),
    # and here the same as a local restore, the uncommitted draft included
    before = remote_refs(repo)
    proc = fleet("restore", "fleet.yaml", "w-a00", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    refs = remote_refs(repo)
    tip = git(bare, "rev-parse", f"{archive}^1").strip()
    assert refs["refs/heads/fleet/keep/w-a00"] == tip and refs["refs/fleet/owners/keep/fleet/keep/w-a00"] == tip
    assert {r: s for r, s in refs.items() if r in before} == before  # nothing on the remote moved or went
    assert git(repo, "rev-parse", archive).strip() == before[archive]  # the ref, fetched here
    tree = repo / ".fleet" / "worktrees" / ".restored" / "w-a00"
    assert (tree / "draft.txt").read_text() == "half-written\n" and (tree / "notes.txt").read_text() == "notes\n"
    assert "w-a00 did its work" in git(tree, "log", "--format=%s", "-1")
    assert "commit and push them" in proc.stdout, proc.stdout
    again = fleet("restore", "fleet.yaml", "w-a00", cwd=repo)  # never over what is there
    assert again.returncode != 0 and "exists on the remote" in again.stderr, again.stdout + again.stderr
    assert remote_refs(repo) == refs
    plan = fleet("diff", "fleet.yaml", "--connect", cwd=repo).stdout  # exit 1: changes pending
    assert "spawn" in plan and "create-worktree" not in plan, plan  # the agent goes on from the restored branch


def test_a_refused_prune_of_an_ended_session_leaves_its_clone_in_place(
        repo: Path, cluster: object, namespaces: list[str]) -> None:
    """Issue 14 class 12: a prune refused for work only the clone holds must not archive and
    delete that clone while the command says it was left in place."""
    namespaces.append("fleet-left")
    go = repo.parent / "go"
    ray_fleet(repo, cluster, name="left", agent_args=["unpushed", str(go)], count=1)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    go.touch()
    rows = rows_when(repo, lambda r: r["w-a00"]["phase"] == "Succeeded")  # ended; no apply has seen it yet
    clone = Path(rows["w-a00"]["worktree"].split(":", 1)[1])
    assert (clone / "draft.txt").read_text() == "half-written\n"
    proc = fleet("delete", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "draft.txt" in proc.stdout and "nothing of theirs was removed" in proc.stderr
    assert (clone / "draft.txt").read_text() == "half-written\n"  # truthful: left in place
    assert actors(cluster, "fleet-left") == ["w-a00"]
    assert not [ref for ref in remote_refs(repo) if ref.startswith("refs/fleet/archive/left/")]
    proc = fleet("delete", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [archive] = [ref for ref in remote_refs(repo) if ref.startswith("refs/fleet/archive/left/w-a00/")]
    assert git(repo.parent / "remote.git", "show", f"{archive}:draft.txt") == "half-written\n"
    assert not clone.exists() and actors(cluster, "fleet-left") == []


def test_the_ray_demo_fleet_runs_on_the_cluster(repo: Path, cluster: object, namespaces: list[str]) -> None:
    namespaces.append("fleet-ray-demo")
    remote = repo.parent / "origin.git"
    git(repo.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    text = (FLEETS / "ray-demo.yaml").read_text().replace("127.0.0.1:6379", cluster.address)
    text = text.replace("    pushInterval: 30s", f"    workdir: {repo.parent / 'nodes'}\n    pushInterval: 30s")
    (repo / "ray-demo.yaml").write_text(text.replace('DEMO_DELAY: "1"', 'DEMO_DELAY: "0.2"'))
    with control_loop(repo, "ray-demo.yaml"):
        rows = rows_when(repo, lambda r: all(x["phase"] == "Succeeded" for x in r.values()), file="ray-demo.yaml",
                         timeout=90)
        assert len({r["node"] for r in rows.values()}) == 2
        # the loop's next pass records the last ones and frees their slots
        wait_until(lambda: actors(cluster, "fleet-ray-demo") == [], timeout=30, interval=0.5)
    for item in ("parser", "storage", "api", "cli", "docs", "tests"):
        assert "notes on the task" in git(remote, "log", "--format=%s", "-1", f"fleet/ray-demo/notes-{item}")
    assert actors(cluster, "fleet-ray-demo") == []  # every ended session released its slot


def test_one_controller_per_fleet_and_a_new_checkout_adopts_its_sessions(
        repo: Path, cluster: object, namespaces: list[str]) -> None:
    import shutil

    namespaces.append("fleet-ctl")
    ray_fleet(repo, cluster, name="ctl", agent_args=["sleep", "300"], count=2)
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-qm", "the fleet")
    git(repo, "push", "-q", str(repo.parent / "remote.git"), "main")
    other = repo.parent / "other"  # a second checkout (CI, a laptop) of the same repo
    git(repo.parent, "clone", "-q", str(repo.parent / "remote.git"), str(other))

    def running(checkout: Path) -> dict | None:
        rows = status(checkout)
        return rows if len([r for r in rows.values() if r["phase"] == "Running" and r["pid"]]) == 2 else None

    with control_loop(repo) as loop:
        before = wait_until(lambda: running(repo), timeout=90, interval=0.5)
        proc = fleet("apply", "fleet.yaml", "--yes", "--lock-timeout", "2", cwd=other)
        assert proc.returncode != 0, proc.stdout + proc.stderr
        out = proc.stdout + proc.stderr
        assert "another controller holds fleet namespace fleet-ctl" in out and f"pid {loop.pid} " in out, out
        assert "fleet reconcile" in out
        # the refused controller changed nothing: same sessions, same records, in both checkouts' view
        assert sorted(actors(cluster, "fleet-ctl")) == ["w-a00", "w-a01"]
        after = running(repo)
        assert after is not None and {n: r["pid"] for n, r in after.items()} == {n: r["pid"] for n, r in before.items()}
        seen = running(other)
        assert seen is not None and {n: r["pid"] for n, r in seen.items()} == {n: r["pid"] for n, r in before.items()}
    attempts = {n: r["attempts"] for n, r in before.items()}

    # the controller's checkout is lost: a fresh clone takes over every running session
    shutil.rmtree(repo)
    git(repo.parent, "clone", "-q", str(repo.parent / "remote.git"), str(repo))
    proc = fleet("apply", "fleet.yaml", "--yes", "--lock-timeout", "60", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "spawn" not in proc.stdout, proc.stdout
    rows = running(repo)
    assert rows is not None, status(repo)
    assert {n: (r["pid"], r["attempts"]) for n, r in rows.items()} == \
        {n: (r["pid"], attempts[n]) for n, r in before.items()}
    proc = fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert actors(cluster, "fleet-ctl") == []


def test_a_session_fleet_died_before_recording_is_adopted_and_counted_as_locally(
        repo: Path, cluster: object, namespaces: list[str]) -> None:
    """fleet killed right after the actor started the session, before the record said so: the
    next apply takes that session (nothing started beside it) and counts it as one attempt,
    as the local engine does (observe/snapshot.py `count_unrecorded_run`); a pass after it
    counts nothing more."""
    namespaces.append("fleet-unrec")
    ray_fleet(repo, cluster, name="unrec", agent_args=["sleep", "300"], count=1)
    killed = subprocess.run([sys.executable, "-m", "reconciler.cli.main", "apply", "fleet.yaml", "--yes"], cwd=repo,
                            capture_output=True, text=True, timeout=180, start_new_session=True,
                            env={**os.environ, "FLEET_FAILPOINT": "spawn:after-launch"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    for _ in range(2):
        proc = fleet("apply", "fleet.yaml", "--yes", "--lock-timeout", "60", cwd=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "spawn" not in proc.stdout, proc.stdout
        row = status(repo)["w-a00"]
        assert (row["phase"], row["attempts"]) == ("Running", 1), row
    assert actors(cluster, "fleet-unrec") == ["w-a00"]
    proc = fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_partitioned_node_is_fenced_and_its_work_kept(repo: Path, cluster: object, namespaces: list[str]) -> None:
    """Its raylet killed, its workers left running: Ray declares the node dead while its session
    goes on committing and pushing. Nothing of either attempt is lost, nothing lands twice."""
    namespaces.append("fleet-part")
    steps = 12
    ray_fleet(repo, cluster, name="part", agent_args=["steps", str(steps), "2"], count=1)
    bare = repo.parent / "remote.git"
    with control_loop(repo):
        rows = wait_until(lambda: (r := status(repo)) and r["w-a00"]["phase"] == "Running"
                          and (r["w-a00"]["ahead"] or 0) >= 2 and r, timeout=90, interval=0.3)
        victim = rows["w-a00"]["node"]
        [node] = [n for n in cluster.worker_nodes if n.node_id.startswith(victim.split("/")[1])]
        old_clone = Path(rows["w-a00"]["worktree"].split(":", 1)[1])
        node.kill_raylet()  # a partition: the cluster loses the node, the node's processes run on

        def settled() -> dict | None:
            rows = status(repo)
            row = rows["w-a00"]
            orphan = [c for c in row["conditions"] if c["type"] == "OrphanWork" and c["status"] == "True"]
            old_done = "step 11" in git(old_clone, "log", "--format=%s", "-1")
            return rows if row["phase"] == "Succeeded" and orphan and old_done else None

        wait_until(settled, timeout=180, interval=1)

        def all_pushed() -> bool:  # the old attempt's last push (its post-commit hook, then its pusher)
            head = git(old_clone, "rev-parse", "HEAD").strip()
            return any(sha == head for ref, sha in remote_refs(repo).items() if ref.startswith("refs/fleet/attempts/"))

        wait_until(all_pushed, timeout=60, interval=0.5)
        rows = status(repo)
    cluster.remove_node(node, allow_graceful=False)
    localcluster.add_worker(cluster)  # the later tests want two worker nodes

    row = rows["w-a00"]
    assert row["node"] != victim and row["attempts"] >= 2, row
    subjects = [s for s in git(bare, "log", "--format=%s", "main..fleet/part/w-a00").split("\n") if s]
    assert sorted(subjects) == sorted(f"w-a00 step {i}" for i in range(steps))  # each step once
    [orphan] = [c for c in row["conditions"] if c["type"] == "OrphanWork" and c["status"] == "True"]
    refs = [ref for ref in remote_refs(repo) if ref.startswith("refs/fleet/attempts/part/")]
    [old_ref] = [ref for ref in refs if ref in orphan["message"]]
    # every commit the fenced attempt made is on the remote: on the branch, or under the reported ref
    made = git(old_clone, "rev-list", "main..HEAD").split()
    assert made and git(bare, "rev-list", old_ref).split()[:1] == made[:1]
    for sha in made:
        git(bare, "cat-file", "-e", f"{sha}^{{commit}}")
    on_branch = set(git(bare, "rev-list", "main..fleet/part/w-a00").split())
    kept = set(git(bare, "rev-list", old_ref, "^fleet/part/w-a00").split())
    assert set(made) <= on_branch | kept and kept, (made, on_branch, kept)
    log = fleet("logs", "fleet.yaml", "w-a00", cwd=repo, check=True).stdout
    assert "already done" in log  # the resumed attempt went on from the fence point
    listed = json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    [fenced] = [a for a in listed if a["ref"].startswith("refs/fleet/attempts/")]  # beside the release's archives
    assert fenced["ref"] == old_ref and "fenced attempt" in fenced["subject"]
    # restorable for review: a branch of its own here, nothing changed on the remote
    before = remote_refs(repo)
    gen = old_ref.rsplit("/", 1)[1]
    proc = fleet("restore", "fleet.yaml", "w-a00", gen, cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "rev-parse", f"fleet/part/w-a00-attempt-{gen}").strip() == before[old_ref]
    assert remote_refs(repo) == before


def on_cluster(cluster: object, namespace: str, agent: str, what: str) -> str:
    """`log`: the copy of the agent's log on the fleet's control actor; `kill`: kill the agent's actor
    (and so its session), as a lost process would be."""
    if what == "log":
        kept = ray.get(ray.get_actor("fleet::controller", namespace=namespace).get_log.remote(agent), timeout=60)
        return kept["data"].decode() if kept else ""
    ray.kill(ray.get_actor(agent, namespace=namespace))
    return ""


def test_a_lost_sessions_output_reaches_the_fleet_machine_without_a_pass_reading_its_node(
        repo: Path, cluster: object, namespaces: list[str]) -> None:
    namespaces.append("fleet-lostlog")
    ray_fleet(repo, cluster, name="lostlog", agent_args=["sleep", "300"], count=1)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # no pass after this one until the actor is gone
    wait_until(lambda: "w-a00 sleeping on its node" in on_cluster(cluster, "fleet-lostlog", "w-a00", "log"),
               timeout=90, interval=0.5)
    # compat.HEAD_RESOURCE: the control actor (lease, records, log copies) is on the head node
    control = ray.get_actor("fleet::controller", namespace="fleet-lostlog")
    assert ray.get(control.node.remote(), timeout=60) == cluster.head_node.node_id
    copy = repo / ".git" / "fleet" / "logs" / "lostlog" / "w-a00.log"
    assert not copy.exists() or "sleeping on its node" not in copy.read_text()
    on_cluster(cluster, "fleet-lostlog", "w-a00", "kill")
    wait_until(lambda: actors(cluster, "fleet-lostlog") == [], timeout=30, interval=0.5)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert "w-a00 sleeping on its node" in copy.read_text()
    fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Does the readable memory of process `pid` (one of this test's cluster) contain `needle`?"""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            if needle in chunk:
                found = True
                break
    return found


def _control_plane(cluster: object) -> list[int]:
    """The GCS and every raylet of the cluster: where Ray keeps actors' creation arguments."""
    session_dir = cluster.head_node.get_session_dir_path()
    return [pid for pid in _processes_of(session_dir)
            if psutil.Process(pid).name() in ("gcs_server", "raylet")]


def test_a_one_slot_lock_never_overlaps_across_nodes(repo: Path, cluster: object, namespaces: list[str]) -> None:
    namespaces.append("fleet-locks")
    holds = repo.parent / "holds"
    holds.mkdir()
    # 3 holds of 1 s each per agent: each `fleet lock` starts a driver (seconds), so longer holds, not
    # more of them, are what make the two nodes' tries overlap
    ray_fleet(repo, cluster, name="locks", agent_args=["lock", str(holds), "3"], count=2,
              extra="  locks: {build: {slots: 1}}")
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_when(repo, lambda r: len([x for x in by_phase(r, "Running") if x["node"]]) == 2
                     or len(by_phase(r, "Succeeded")) == 2, timeout=90)
    nodes = {r["node"] for r in rows.values()}
    assert len(nodes) == 2, rows  # one agent on each worker node
    wait_until(lambda: all(len((holds / a).read_text().splitlines()) == 3 if (holds / a).exists() else False
                           for a in ("w-a00", "w-a01")), timeout=180, interval=0.5)
    spans = sorted(tuple(map(float, line.split())) for a in ("w-a00", "w-a01")
                   for line in (holds / a).read_text().splitlines())
    assert len(spans) == 6
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, spans  # the next hold began after the previous one ended
    rows_when(repo, lambda r: len(by_phase(r, "Succeeded")) == 2, timeout=60)
    fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)


def test_secrets_are_resolved_on_the_node_and_never_sent(repo: Path, cluster: object, namespaces: list[str]) -> None:
    import uuid

    namespaces.append("fleet-secret")
    secret, plain = f"s3cr3t-{uuid.uuid4().hex}", f"plain-{uuid.uuid4().hex}"
    secrets = repo.parent / "secrets"  # the operator's secret source on the nodes (a mounted Secret, say)
    secrets.mkdir()
    (secrets / "FLEET_TEST_TOKEN").write_text(secret + "\n")
    seen = repo.parent / "seen-token"
    ray_fleet(repo, cluster, name="secret", agent_args=["env", str(seen), "120"], count=1)
    text = (repo / "fleet.yaml").read_text()
    text = text.replace("pushInterval: 1s}", f'pushInterval: 1s, secretsDir: "{secrets}"}}')
    env = f"      env: {{TOKEN: {{fromEnv: FLEET_TEST_TOKEN}}, PLAIN: {plain}}}\n"
    text = text.replace("      restart: OnFailure\n", "      restart: OnFailure\n" + env)
    (repo / "fleet.yaml").write_text(text)
    # the driver's environment does not have the secret: only the node's source does
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: seen.exists() and seen.read_text(), timeout=60, interval=0.3)
    assert seen.read_text() == secret  # resolved where the session runs

    given = json.dumps(ray.get(ray.get_actor("w-a00", namespace="fleet-secret").given.remote(), timeout=60))
    assert plain in given and '"TOKEN": "FLEET_TEST_TOKEN"' in given, given  # the reference, not the value
    assert secret not in given
    # where Ray keeps an actor's constructor arguments: the literal is there, the secret nowhere
    pids = _control_plane(cluster)
    assert any(_memory_holds(pid, plain.encode()) for pid in pids)
    assert not [pid for pid in pids if _memory_holds(pid, secret.encode())]
    fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)


def test_a_lost_node_resumes_its_sessions_elsewhere_without_losing_commits(
        repo: Path, cluster: object, namespaces: list[str]) -> None:
    # last in the module: it takes a node away
    namespaces.append("fleet-lost")
    ray_fleet(repo, cluster, name="lost", agent_args=["steps", "8", "0.7"], count=2)
    with control_loop(repo):
        def progressed() -> dict | None:
            rows = status(repo)
            ahead = [r for r in rows.values() if r["phase"] == "Running" and (r["ahead"] or 0) >= 2]
            return rows if len(ahead) == 2 else None

        rows = wait_until(progressed, timeout=60, interval=0.3)
        victim = rows["w-a00"]["node"]
        before = remote_refs(repo)["refs/heads/fleet/lost/w-a00"]
        [node] = [n for n in cluster.worker_nodes if n.node_id.startswith(victim.split("/")[1])]
        cluster.remove_node(node, allow_graceful=False)  # the machine is gone, as far as Ray can tell

        rows = rows_when(repo, lambda r: all(x["phase"] == "Succeeded" for x in r.values()), timeout=90)
    assert rows["w-a00"]["node"] != victim and rows["w-a00"]["attempts"] >= 2, rows
    bare = repo.parent / "remote.git"
    git(bare, "merge-base", "--is-ancestor", before, "fleet/lost/w-a00")  # every commit pushed before the loss
    subjects = git(bare, "log", "--format=%s", "main..fleet/lost/w-a00").split("\n")
    assert sorted(s for s in subjects if s) == sorted(f"w-a00 step {i}" for i in range(8))  # each step once
    log = fleet("logs", "fleet.yaml", "w-a00", cwd=repo, check=True).stdout
    assert f"on node 127.0.0.1 ({victim.split('/')[1]})" in log  # the first run, copied before the loss
    assert "already done" in log  # the resumed run found the pushed steps


FAKE_CLAUDE = textwrap.dedent('''\
    import json, os, sys, time
    with open(os.environ["FAKE_CLAUDE_ARGV"], "a") as f:  # outside the clone: what the node started
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    print(json.dumps({"type": "system", "subtype": "init", "claude_code_version": "2.1.332"}), flush=True)
    usage = {"input_tokens": 200000, "output_tokens": 1000}  # $0.615 at sonnet's price, while it runs
    print(json.dumps({"type": "assistant", "message": {"id": "msg-1", "model": "claude-sonnet-4-5",
                                                       "usage": usage}}), flush=True)
    time.sleep(300)
''')


def test_budget_caps_and_live_spend_act_on_ray_sessions(repo: Path, cluster: object, namespaces: list[str]) -> None:
    """Issue 17 on ray: a claude session gets --max-budget-usd from its reservation on its node, and
    its live spend (its log, copied from the node by each pass) reaches the budget: over usdPerDay
    it is paused (stopped, resumable) as a local session is."""
    namespaces.append("fleet-spend")
    ray_fleet(repo, cluster, name="spend", agent_args=[], count=1)  # the remote; the fleet is written below
    bin_dir = repo.parent / "fakebin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(f"#!{sys.executable}\n" + FAKE_CLAUDE)
    claude.chmod(0o755)
    seen = repo.parent / "claude-argv"
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: spend}}
        spec:
          remote: {repo.parent / 'remote.git'}
          placement: {{engine: ray, address: "{cluster.address}", workdir: "{repo.parent / 'nodes'}",
                      pushInterval: 1s}}
          tiers: {{worker: {{runtime: claude, model: sonnet, maxUsdPerRun: 0.4}}}}
          budget: {{usdPerDay: 0.5}}
          agents:
            - name: solo
              tier: worker
              prompt: Do the work.
              env: {{PATH: "{path}", FAKE_CLAUDE_ARGV: "{seen}"}}
    """)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: seen.exists() and seen.read_text(), timeout=90, interval=0.5)
    [argv] = [json.loads(line) for line in seen.read_text().splitlines()]
    assert argv[argv.index("--max-budget-usd") + 1] == "0.4", argv  # the reservation, on the node
    wait_until(lambda: "msg-1" in on_cluster(cluster, "fleet-spend", "solo", "log"), timeout=60, interval=0.5)

    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)  # copies the log: $0.615 of $0.50 spent, paused
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BudgetExhausted: budget.usdPerDay" in proc.stdout and "paused" in proc.stdout, proc.stdout
    paused = status(repo)["solo"]
    assert paused["phase"] == "Pending" and paused["pid"] is None, paused
    assert paused["reason"].startswith("resume waits: budget.usdPerDay $0.50 reached"), paused
    assert any(c["type"] == "BudgetExhausted" and c["status"] == "True" for c in paused["conditions"]), paused
    assert len(seen.read_text().splitlines()) == 1  # not started again while the budget is spent
    fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)


def test_the_delivery_queue_lands_ray_branches_on_the_remote(repo: Path, cluster: object,
                                                              namespaces: list[str]) -> None:
    """Issue 16 on ray: the controller integrates the agents' branches as it merged them on the
    remote (never an attempt ref) in its scratch tree, gates the result, and pushes the target to
    the remote without force; a push the remote rejects is a condition, and nothing is forced."""
    namespaces.append("fleet-deliver")
    bare = repo.parent / "remote.git"
    ray_fleet(repo, cluster, name="deliver", agent_args=["steps", "1", "0"], count=2, extra="""
          gates: {check: {run: "test -f README.md"}}
          delivery: {into: integration, gates: [check], push: {remote: origin}}
    """)
    git(repo, "remote", "add", "origin", str(bare))
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    rows_when(repo, lambda r: len(by_phase(r, "Succeeded")) == 2, timeout=90)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = status(repo)
    assert {r["phase"] for r in rows.values()} == {"Delivered"}, proc.stdout
    landed = git(bare, "log", "--format=%s", "main..integration")
    for agent in ("w-a00", "w-a01"):
        assert f"{agent} step 0" in landed and f"fleet: deliver {agent}" in landed, landed
        git(bare, "merge-base", "--is-ancestor", f"fleet/deliver/{agent}", "integration")
    assert not git(repo, "for-each-ref", "refs/heads/fleet/").strip()  # no agent branch made here

    # someone else moves the remote's target: the controller's copy takes it (fast-forward only),
    # so their commit is kept; while the remote refuses pushes the apply fails saying so, and
    # nothing there moves; once it accepts them, the target goes there
    other = repo.parent / "other"
    git(repo.parent, "clone", "-q", "-b", "integration", str(bare), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-qm", "someone else's commit")
    git(other, "push", "-q", "origin", "integration")
    theirs = git(bare, "rev-parse", "integration").strip()
    text = (repo / "fleet.yaml").read_text().replace("prompt: work on {item}", "prompt: work again on {item}")
    (repo / "fleet.yaml").write_text(text.replace('"steps", "1", "0"', '"steps", "2", "0"'))
    fleet("apply", "fleet.yaml", "--yes", cwd=repo)  # replaces the delivered runs: a second step each
    rows_when(repo, lambda r: len(by_phase(r, "Succeeded")) == 2, timeout=90)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do [ \"$ref\" = refs/heads/integration ] && "
                    "{ echo 'remote: integration is frozen' >&2; exit 1; }; done\nexit 0\n")
    hook.chmod(0o755)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode != 0 and "was rejected" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert git(bare, "rev-parse", "integration").strip() == theirs  # nothing forced, nothing moved there
    hook.unlink()
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0 and "pushed integration" in proc.stdout, proc.stdout + proc.stderr
    git(bare, "merge-base", "--is-ancestor", theirs, "integration")  # their commit kept
    landed = git(bare, "log", "--format=%s", "main..integration")
    assert "w-a00 step 1" in landed and "w-a01 step 1" in landed, landed
    fleet("delete", "fleet.yaml", "--yes", "--grace", "1", cwd=repo, check=True)  # delivered: nothing at stake
    assert not git(repo, "for-each-ref", "refs/fleet/remote-heads/").strip()  # the copies go with the fleet
    assert actors(cluster, "fleet-deliver", own=True) == []
