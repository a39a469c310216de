"""The merge queue (issue 16, docs/delivery.md): real repos, real `fleet` processes, real git.

Agents are the scripted ones of tests/agents.py (runtime `command`); the delivery gate is a
shell command that records the commit it ran on, so each test can check the target only
ever held commits whose gates passed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import agents
import pytest
from conftest import fleet as fleet_process
from conftest import fleet_in_process as fleet
from conftest import git, session_pids, wait_until, write_fleet
from conftest import status_in_process as status

DELIVERY_SCRIPT = '''\
import os, subprocess, sys
mode, agent = sys.argv[1], os.environ["FLEET_AGENT"]
def commit(msg):
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=agent@fleet.invalid", "commit", "-q",
                    "-m", msg], check=True)
if mode == "line":  # write one line of shared.txt: two agents doing it conflict
    if os.environ.get("FLEET_RESUME") == "1":
        with open(os.path.join(sys.argv[3], agent + ".message"), "a") as f:
            f.write(os.environ.get("FLEET_MESSAGE", "") + "\\n---\\n")
        into = sys.argv[4]
        subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=agent@fleet.invalid", "merge", "-q",
                        into], check=False)
        with open("shared.txt", "w") as f:
            f.write(open(sys.argv[5]).read())  # the resolution the test chose
        commit("resolve the conflict with " + into)
        sys.exit(0)
    with open("shared.txt", "w") as f:
        f.write(sys.argv[2] + "\\n")
    commit(agent + " writes shared.txt")
    sys.exit(0)
if mode == "files":  # write the files named (path=text)
    for spec in sys.argv[2:]:
        path, _, text = spec.partition("=")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\\n")
    commit(agent + " writes " + ", ".join(s.partition("=")[0] for s in sys.argv[2:]))
    sys.exit(0)
if mode == "semantic":  # first run: a value the merged result rejects; resumed: the fixed one
    resumed = os.environ.get("FLEET_RESUME") == "1"
    if resumed:
        with open(os.path.join(sys.argv[2], agent + ".message"), "a") as f:
            f.write(os.environ.get("FLEET_MESSAGE", "") + "\\n---\\n")
    with open(agent + ".txt", "w") as f:
        f.write("ok\\n" if resumed else "clash\\n")
    commit(agent + (" fixes the clash" if resumed else " work"))
    sys.exit(0)
if mode == "scoped":  # first run: in scope and out of it; resumed with the feedback: only in scope
    if os.environ.get("FLEET_RESUME") == "1":
        with open(os.path.join(sys.argv[2], agent + ".message"), "a") as f:
            f.write(os.environ.get("FLEET_MESSAGE", "") + "\\n---\\n")
        subprocess.run(["git", "rm", "-q", "notes.txt"], check=True)
        commit(agent + " keeps to its paths")
        sys.exit(0)
    os.makedirs("src", exist_ok=True)
    for path in ("src/" + agent + ".py", "notes.txt"):
        with open(path, "w") as f:
            f.write("x = 1\\n")
    commit(agent + " work")
    sys.exit(0)
if mode == "review":  # first run: one style; resumed with a reviewer's message: records it, revises
    if os.environ.get("FLEET_RESUME") == "1":
        with open(os.path.join(sys.argv[2], agent + ".message"), "a") as f:
            f.write(os.environ.get("FLEET_MESSAGE", "") + "\\n---\\n")
    with open(agent + ".txt", "w") as f:
        f.write("revised\\n" if os.environ.get("FLEET_RESUME") == "1" else "first\\n")
    commit(agent + " work")
    print('{"fleet_result": {"message": "I wrote ' + agent + '.txt", "cost_usd": 0.25}}', flush=True)
    sys.exit(0)
sys.exit("unknown mode " + mode)
'''


def install(where: Path) -> Path:
    path = where / "delivery_agent.py"
    path.write_text(DELIVERY_SCRIPT)
    return path


def queue_fleet(repo: Path, members: list[tuple[str, list[str]]], *, gate: str | None = None,
                extra: str = "", agent_extra: dict[str, str] | None = None, script: Path | None = None) -> Path:
    script = script or install(repo.parent)
    ran = repo.parent / "gate-ran"
    gate = gate or f"git rev-parse HEAD >> {ran}"
    body = "".join(f"""
            - name: {name}
              tier: local
              command: {agents.argv(script, *args)}{(agent_extra or {}).get(name, "")}""" for name, args in members)
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          gates:
            tests: {{run: {json.dumps(gate)}, timeout: 60s}}
          delivery:
            into: integration
            gates: [tests]{extra}
          agents:{body}
    """)


def apply(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return fleet("apply", "fleet.yaml", "--yes", *args, cwd=repo)


def converge(repo: Path, done, timeout: float = 90):  # type: ignore[no-untyped-def]
    """`fleet apply` until `done(status rows)`; the rows."""
    def step():  # type: ignore[no-untyped-def]
        apply(repo)
        wait_sessions(repo)  # what it started has ended: one status, not a poll of them
        rows = status(repo)
        return rows if done(rows) else None

    return wait_until(step, timeout=timeout, interval=0)


def tip(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref).strip()


def wait_sessions(repo: Path) -> None:
    """Until every session fleet started for `repo` has ended (psutil; no `fleet status` polling):
    the next pass observes how each ended."""
    wait_until(lambda: not session_pids(repo), interval=0.05)


def target_history(repo: Path) -> list[str]:
    """Every commit the target ever pointed at, from its reflog (oldest first)."""
    out = git(repo, "reflog", "show", "--format=%H", "refs/heads/integration")
    return list(reversed(out.split()))


def test_three_disjoint_agents_are_delivered_gated_and_then_pruned(repo: Path) -> None:
    script = agents.install(repo.parent)
    queue_fleet(repo, [(n, ["commit"]) for n in ("a1", "a2", "a3")], script=script)
    fleet_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # fleet as its own process, as a user runs it
    wait_sessions(repo)
    out = fleet_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert out.stdout.count("Delivered into integration at") == 3, out.stdout
    rows = converge(repo, lambda r: all(r[n]["phase"] == "Delivered" for n in ("a1", "a2", "a3")))
    files = git(repo, "ls-tree", "--name-only", "integration").split()
    assert {"a1.txt", "a2.txt", "a3.txt", "README.md"} <= set(files)
    assert tip(repo, "main") == git(repo, "rev-list", "--max-parents=0", "integration").strip()  # main untouched
    gated = (repo.parent / "gate-ran").read_text().split()
    history = target_history(repo)
    # created at its first gated result (on top of the base), then moved only to gated commits
    assert history == gated and len(history) == 3
    for n in ("a1", "a2", "a3"):
        assert "Delivered into integration" in rows[n]["delivery"]
        assert git(repo, "merge-base", "--is-ancestor", f"fleet/t/{n}", "integration") == ""
    assert fleet("diff", "fleet.yaml", cwd=repo).returncode == 0  # converged: nothing queued again
    # delivered work is finished: removed from the file, each is pruned without --archive
    queue_fleet(repo, [], script=script)
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().replace("agents:", "agents: []"))
    out = apply(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "prune refused" not in out.stdout
    assert git(repo, "branch", "--list", "fleet/t/*") == ""
    assert set(files) <= set(git(repo, "ls-tree", "--name-only", "integration").split())


def test_diff_shows_the_queue_with_positions(repo: Path) -> None:
    script = agents.install(repo.parent)
    queue_fleet(repo, [(n, ["commit"]) for n in ("a1", "a2")], script=script)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # starts both
    wait_sessions(repo)
    diff = fleet("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 1, diff.stdout  # changes pending
    assert "~ merge" in diff.stdout and "into integration (queue 1 of 2)" in diff.stdout
    assert "into integration (queue 2 of 2)" in diff.stdout
    plan = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    merges = [a for a in plan["actions"] if a["kind"] == "merge"]
    assert [(m["details"]["position"], m["details"]["of"]) for m in merges] == [(1, 2), (2, 2)]
    assert not (repo.parent / "gate-ran").exists()  # diff ran no gate and merged nothing
    assert git(repo, "branch", "--list", "integration") == ""
    rows = status(repo)
    assert rows["a1"]["delivery"] == "Queued 1 of 2"


@pytest.mark.parametrize("strategy", ["merge", "rebase"])
def test_conflicting_agents_one_delivered_other_resumed_with_files_then_delivered(repo: Path, strategy: str) -> None:
    """b2 resolves its conflict by `git merge integration` (a merge commit on its branch): both
    strategies deliver that resolution on the next pass; rebase does not replay b2's old commit
    into the same conflict again."""
    script = install(repo.parent)
    resolution = repo.parent / "resolution.txt"
    resolution.write_text("from b1\nfrom b2\n")
    queue_fleet(repo, [("b1", ["line", "from b1"]),
                       ("b2", ["line", "from b2", str(repo.parent), "integration", str(resolution)])],
                script=script, extra=f"\n            strategy: {strategy}")
    fleet("apply", "fleet.yaml", "--yes", "--target", "b1", cwd=repo, check=True)
    wait_sessions(repo)
    apply(repo)  # b1 is queued and lands; b2 starts (it is busy, so not queued in this pass)
    assert status(repo)["b1"]["phase"] == "Delivered"
    wait_sessions(repo)
    b2_tip = tip(repo, "fleet/t/b2")
    target = tip(repo, "integration")
    apply(repo)  # b2 conflicts with b1's line of shared.txt
    rows = status(repo)
    conditions = {c["type"]: c for c in rows["b2"]["conditions"]}
    assert conditions["Conflicted"]["status"] == "True"
    assert "shared.txt" in conditions["Conflicted"]["message"]
    assert rows["b2"]["delivery"] == "Conflicted: shared.txt"
    assert tip(repo, "fleet/t/b2") == b2_tip and tip(repo, "integration") == target  # both untouched
    rows = converge(repo, lambda r: r["b2"]["phase"] == "Delivered")
    message = (repo.parent / "b2.message").read_text()
    assert message.count("---") == 1  # resumed once: its resolution was taken, not conflicted again
    assert "shared.txt" in message and "integration" in message and "git rebase integration" in message
    assert git(repo, "rev-list", "--merges", "-1", "fleet/t/b2") != ""  # it resolved by a merge
    assert git(repo, "show", "integration:shared.txt") == "from b1\nfrom b2\n"
    assert target_history(repo) == (repo.parent / "gate-ran").read_text().split()
    if strategy == "rebase":  # linear: b1's commit, then b2's work as it resolved it, one commit
        assert git(repo, "rev-list", "--merges", "main..integration") == ""
        assert git(repo, "log", "--format=%s", "main..integration").splitlines() == [
            f"fleet: deliver b2 (fleet/t/b2 {tip(repo, 'fleet/t/b2')[:12]}) into integration (up to its merge "
            f"{tip(repo, 'fleet/t/b2')[:12]} of the target, squashed as it resolved it)", "b1 writes shared.txt"]
        assert tip(repo, "refs/fleet/delivered/t/b2") == tip(repo, "fleet/t/b2")


def test_semantic_conflict_is_fed_back_and_does_not_hold_up_the_queue(repo: Path) -> None:
    script = install(repo.parent)
    ran = repo.parent / "gate-ran"
    gate = (f"git rev-parse HEAD >> {ran}; "
            "if grep -q clash c1.txt 2>/dev/null && test -f c2.txt; then echo 'c1 clashes with c2'; exit 1; fi")
    # c1 passes its own gates (it has none) and clashes with c2 only once both are merged
    queue_fleet(repo, [("c2", ["files", "c2.txt=two"]), ("c1", ["semantic", str(repo.parent)]),
                       ("c3", ["files", "c3.txt=three"])], gate=gate, script=script)
    fleet("apply", "fleet.yaml", "--yes", "--target", "c2", cwd=repo, check=True)
    wait_sessions(repo)
    fleet("apply", "fleet.yaml", "--yes", "--target", "c2", cwd=repo, check=True)
    assert status(repo)["c2"]["phase"] == "Delivered"
    apply(repo)  # starts c1 and c3
    wait_sessions(repo)
    target = tip(repo, "integration")
    plan = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert sorted(a["agent"] for a in plan["actions"] if a["kind"] == "merge") == ["c1", "c3"]
    apply(repo)
    rows = status(repo)
    cond = {c["type"]: c for c in rows["c1"]["conditions"]}
    assert cond["IntegrationFailed"]["status"] == "True"
    assert "gate tests failed on the result merged with integration" in cond["IntegrationFailed"]["message"]
    assert rows["c3"]["phase"] == "Delivered"  # in the same pass, wherever it stood behind c1
    assert "c1.txt" not in git(repo, "ls-tree", "--name-only", "integration")
    assert git(repo, "rev-parse", "integration~1") != "" and git(repo, "merge-base", "--is-ancestor", target,
                                                                   "integration") == ""
    rows = converge(repo, lambda r: r["c1"]["phase"] == "Delivered")
    message = (repo.parent / "c1.message").read_text()
    assert "c1 clashes with c2" in message and "`tests`" in message and "git merge integration" in message
    assert git(repo, "show", "integration:c1.txt") == "ok\n"
    gated = ran.read_text().split()
    assert set(target_history(repo)) <= set(gated)  # every commit the target held passed its gate
    assert len(gated) == len(target_history(repo)) + 2  # plus the merged result that failed, and its retry
    assert "retried once to rule out a flaky gate" in cond["IntegrationFailed"]["message"]


def test_delivery_without_gates_is_a_validation_error_unless_said(repo: Path) -> None:
    script = agents.install(repo.parent)
    path = queue_fleet(repo, [("a1", ["commit"])], script=script)
    path.write_text(path.read_text().replace("gates: [tests]\n", "gates: []\n"))
    out = fleet("validate", "fleet.yaml", cwd=repo)
    assert out.returncode != 0 and "delivery needs gates" in out.stdout + out.stderr
    assert "ungated: true" in out.stdout + out.stderr
    path.write_text(path.read_text().replace("gates: []\n", "gates: []\n    ungated: true\n"))
    out = fleet("validate", "fleet.yaml", cwd=repo)
    assert out.returncode == 0, out.stdout + out.stderr


def test_approval_required_holds_the_queue_until_approved_and_reject_resumes(repo: Path) -> None:
    script = install(repo.parent)
    queue_fleet(repo, [("r1", ["review", str(repo.parent)]), ("r2", ["review", str(repo.parent)])],
                extra="\n            approval: required", script=script)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_sessions(repo)
    diff = fleet("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 0, diff.stdout  # nothing enters the queue before an approval
    assert "r1 waits for approval" in diff.stdout and "fleet approve FILE r1" in diff.stdout
    apply(repo)
    assert git(repo, "branch", "--list", "integration") == ""
    review = fleet("review", "fleet.yaml", "r1", cwd=repo, check=True).stdout
    assert "I wrote r1.txt" in review and "r1 work" in review and "r1.txt" in review and "$0.2500" in review
    md = fleet("review", "fleet.yaml", "r1", "-o", "markdown", cwd=repo, check=True).stdout
    assert "#### Final message" in md and "> I wrote r1.txt" in md and "| GatesPassed |" not in md
    out = fleet("approve", "fleet.yaml", "r1", "--as", "alice", cwd=repo, check=True)
    assert "approved r1" in out.stdout
    out = fleet("reject", "fleet.yaml", "r2", "-m", "say revised, not first", "--as", "bob", cwd=repo, check=True)
    assert "resume" in out.stdout
    rec = json.loads(fleet("describe", "fleet.yaml", "r1", "-o", "json", cwd=repo).stdout)
    assert {c["type"]: c for c in rec["conditions"]}["Approved"]["message"].startswith("by alice for ")
    apply(repo)
    rows = status(repo)
    assert rows["r1"]["phase"] == "Delivered"
    assert "r2.txt" not in git(repo, "ls-tree", "--name-only", "integration")
    wait_sessions(repo)
    message = (repo.parent / "r2.message").read_text()
    assert "bob" in message and "say revised, not first" in message
    assert fleet("diff", "fleet.yaml", cwd=repo).returncode == 0  # the revised tip needs a new approval
    fleet("approve", "fleet.yaml", "r2", cwd=repo, check=True)
    rows = converge(repo, lambda r: r["r2"]["phase"] == "Delivered")
    assert git(repo, "show", "integration:r2.txt") == "revised\n"


def test_overlapping_paths_are_warned_and_out_of_scope_work_is_fed_back(repo: Path) -> None:
    script = install(repo.parent)
    queue_fleet(repo, [("s1", ["scoped", str(repo.parent)]), ("s2", ["files", "src/api/x.py=1"])], script=script,
                agent_extra={"s1": "\n              paths: [src/**]", "s2": "\n              paths: [src/api/*.py]"})
    diff = fleet("diff", "fleet.yaml", cwd=repo).stdout
    assert "paths of s1 (src/**) and s2 (src/api/*.py) overlap" in diff
    fleet("apply", "fleet.yaml", "--yes", "--target", "s1", cwd=repo, check=True)
    wait_sessions(repo)
    plan = json.loads(fleet("diff", "fleet.yaml", "-o", "json", "--target", "s1", cwd=repo).stdout)
    step = next(a for a in plan["actions"] if a["agent"] == "s1")
    assert step["kind"] == "deliver" and step["details"]["files"] == ["notes.txt"]
    assert "OutOfScope: changed notes.txt outside its paths (src/**)" in step["reason"]
    fleet("apply", "fleet.yaml", "--yes", "--target", "s1", cwd=repo, check=True)
    row = status(repo)["s1"]
    assert {c["type"]: c for c in row["conditions"]}["OutOfScope"]["status"] == "True"
    assert git(repo, "branch", "--list", "integration") == ""  # not delivered
    rows = converge(repo, lambda r: r["s1"]["phase"] == "Delivered")
    assert "notes.txt" in (repo.parent / "s1.message").read_text()
    assert "notes.txt" not in git(repo, "ls-tree", "-r", "--name-only", "integration")
    assert rows["s1"]["delivery"].startswith("Delivered")


def test_behind_base_is_shown_in_status_and_diff(repo: Path) -> None:
    script = agents.install(repo.parent)
    queue_fleet(repo, [("a1", ["commit"])], script=script, extra="\n            approval: required")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_sessions(repo)
    for i in range(2):
        (repo / f"main{i}.txt").write_text("later\n")
        git(repo, "add", f"main{i}.txt")
        git(repo, "commit", "-q", "-m", f"main moves on {i}")
    assert status(repo)["a1"]["behind_base"] == 2
    assert "BehindBase: 2 commits" in fleet("status", "fleet.yaml", cwd=repo).stdout
    assert "a1: BehindBase: 2 commits" in fleet("diff", "fleet.yaml", cwd=repo).stdout


def test_target_is_pushed_to_a_bare_remote_and_a_rejected_push_is_never_forced(repo: Path) -> None:
    script = agents.install(repo.parent)
    remote = repo.parent / "remote.git"
    git(repo.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    queue_fleet(repo, [("a1", ["commit"]), ("a2", ["commit"])], script=script,
                extra="\n            push: {remote: origin}")
    fleet("apply", "fleet.yaml", "--yes", "--target", "a1", cwd=repo, check=True)
    wait_sessions(repo)
    out = fleet("apply", "fleet.yaml", "--yes", "--target", "a1", cwd=repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pushed integration to origin" in out.stdout
    assert git(remote, "rev-parse", "integration") == git(repo, "rev-parse", "integration")
    # someone else moves the remote's integration: fleet's next push is rejected, never forced
    other = repo.parent / "other"
    git(repo.parent, "clone", "-q", "-b", "integration", str(remote), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", "integration")
    theirs = git(remote, "rev-parse", "integration")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    wait_sessions(repo)
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert out.returncode == 1
    assert "push of integration to origin was rejected" in out.stdout + out.stderr
    assert status(repo)["a2"]["phase"] == "Delivered"  # delivered locally; the push waits for a person
    assert git(remote, "rev-parse", "integration") == theirs  # not forced


class _GitHub:
    """A scripted GitHub Enterprise REST API (`/api/v3/...`) on 127.0.0.1 over HTTPS: just the
    pull request calls fleet makes through `gh api`, each request kept for the test to read."""

    def __init__(self, cert: Path, key: Path) -> None:
        import http.server
        import ssl
        import threading
        import urllib.parse

        self.requests: list[tuple[str, str, dict]] = []
        self.pulls: list[dict] = []
        self.comments: list[tuple[int, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append((self.command, self.path, body))
                path, _, query = self.path.partition("?")
                args = dict(urllib.parse.parse_qsl(query))
                if self.command == "GET" and path == "/api/v3/repos/acme/app/pulls":
                    head = args.get("head", ":").split(":", 1)[1]
                    self._reply(200, [p for p in outer.pulls if p["state"] == args.get("state", "open")
                                      and p["head"] == head and p["base"] == args.get("base")])
                elif self.command == "POST" and path.startswith("/api/v3/repos/acme/app/issues/"):
                    number = int(path.split("/")[-2])
                    outer.comments.append((number, body["body"]))
                    self._reply(201, {"id": len(outer.comments), **body})
                elif self.command == "POST" and path == "/api/v3/repos/acme/app/pulls":
                    pull = {"number": len(outer.pulls) + 1, "state": "open", **body}
                    outer.pulls.append(pull)
                    self._reply(201, pull)
                elif self.command == "PATCH" and path.startswith("/api/v3/repos/acme/app/pulls/"):
                    pull = outer.pulls[int(path.rsplit("/", 1)[1]) - 1]
                    pull.update(body)
                    self._reply(200, pull)
                else:
                    self._reply(404, {"message": "Not Found"})

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def github(tmp_path: Path):  # type: ignore[no-untyped-def]
    import shutil

    if shutil.which("gh") is None or shutil.which("openssl") is None:
        pytest.skip("needs the gh CLI and openssl (Debian: apt-get install gh openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    api = _GitHub(cert, key)
    config = tmp_path / "gh-config"
    config.mkdir()
    env = {"SSL_CERT_FILE": str(cert), "GH_HOST": f"127.0.0.1:{api.port}", "GH_ENTERPRISE_TOKEN": "test-token",
           "GH_CONFIG_DIR": str(config), "GH_PROMPT_DISABLED": "1", "NO_COLOR": "1"}
    yield api, env
    api.server.shutdown()


def test_pull_request_is_opened_then_updated_through_the_real_gh(repo: Path, github) -> None:  # type: ignore[no-untyped-def]
    api, env = github
    script = install(repo.parent)
    remote = repo.parent / "remote.git"
    git(repo.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    queue_fleet(repo, [("p1", ["review", str(repo.parent)]), ("p2", ["review", str(repo.parent)])], script=script,
                extra="\n            push: {remote: origin}\n            pullRequest: {repo: acme/app, base: main, "
                      "title: 'fleet: delivered work'}")
    fleet("apply", "fleet.yaml", "--yes", "--target", "p1", cwd=repo, check=True, env=env)
    wait_sessions(repo)
    out = fleet("apply", "fleet.yaml", "--yes", "--target", "p1", cwd=repo, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "opened pull request #1" in out.stdout
    (pull,) = api.pulls
    assert (pull["head"], pull["base"], pull["title"], pull["draft"]) == ("integration", "main",
                                                                           "fleet: delivered work", False)
    assert "<!-- fleet-review -->" in pull["body"] and "`p1`" in pull["body"] and "I wrote p1.txt" in pull["body"]
    assert git(remote, "rev-parse", "integration") == git(repo, "rev-parse", "integration")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
    wait_sessions(repo)
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
    assert "updated pull request #1" in out.stdout, out.stdout + out.stderr
    assert len(api.pulls) == 1 and "`p2`" in api.pulls[0]["body"] and "`p1`" in api.pulls[0]["body"]
    methods = [(m, p.split("?", 1)[0]) for m, p, _ in api.requests]
    assert methods == [("GET", "/api/v3/repos/acme/app/pulls"), ("POST", "/api/v3/repos/acme/app/pulls"),
                       ("GET", "/api/v3/repos/acme/app/pulls"), ("PATCH", "/api/v3/repos/acme/app/pulls/1")]


@pytest.mark.parametrize("strategy", ["squash", "rebase"])
def test_squash_and_rebase_deliver_keep_the_agent_tip_and_prune_safely(repo: Path, strategy: str) -> None:
    script = agents.install(repo.parent)
    queue_fleet(repo, [("a1", ["commit"]), ("a2", ["commit"])], script=script,
                extra=f"\n            strategy: {strategy}")
    converge(repo, lambda r: all(r[n]["phase"] == "Delivered" for n in ("a1", "a2")))
    assert len(git(repo, "rev-list", "main..integration").split()) == 2
    assert git(repo, "rev-list", "--merges", "main..integration") == ""  # linear: no merge commit
    for n in ("a1", "a2"):
        assert git(repo, "show", f"integration:{n}.txt") == "\n"
        assert tip(repo, f"refs/fleet/delivered/t/{n}") == tip(repo, f"fleet/t/{n}")
    # the agents' own commits are not in the target, but delivered: pruned without --archive
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().split("  agents:")[0] + "  agents: []\n")
    out = apply(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert git(repo, "branch", "--list", "fleet/t/*") == ""
    scratch = repo / ".fleet" / "worktrees" / ".delivery-t"
    assert scratch.is_dir() and git(repo, "show-ref", "--verify", "refs/heads/integration")
    out = fleet("delete", "fleet.yaml", "--yes", cwd=repo)  # the whole fleet: its scratch tree too
    assert out.returncode == 0 and "removed the delivery scratch tree" in out.stdout, out.stdout + out.stderr
    assert not scratch.exists() and git(repo, "worktree", "list").count("\n") == 1
    assert tip(repo, "integration")  # never deleted


def test_a_failing_batch_is_bisected_and_the_good_members_land(repo: Path) -> None:
    script = install(repo.parent)
    ran = repo.parent / "gate-ran"
    gate = f"git rev-parse HEAD >> {ran}; ! test -f bad.txt || {{ echo 'bad.txt breaks the build'; exit 1; }}"
    queue_fleet(repo, [("g1", ["files", "g1.txt=1"]), ("g2", ["files", "bad.txt=x"]), ("g3", ["files", "g3.txt=3"]),
                       ("g4", ["files", "g4.txt=4"])], gate=gate, script=script, extra="\n            batch: 4")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_sessions(repo)
    out = apply(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = status(repo)
    assert [rows[n]["phase"] for n in ("g1", "g3", "g4")] == ["Delivered"] * 3
    assert {c["type"]: c["status"] for c in rows["g2"]["conditions"]}["IntegrationFailed"] == "True"
    assert "bad.txt" not in git(repo, "ls-tree", "--name-only", "integration")
    assert set(target_history(repo)) <= set(ran.read_text().split())  # only gated commits, as ever


def test_a_flaky_gate_is_retried_once_and_blames_nobody(repo: Path) -> None:
    """A gate that fails only on its first run: the batch is run once more before it would be
    bisected, both members land in the same pass, and the retry is said in their condition."""
    script = install(repo.parent)
    ran, flag = repo.parent / "gate-ran", repo.parent / "failed-once"
    gate = f"git rev-parse HEAD >> {ran}; test -f {flag} || {{ touch {flag}; echo 'flaky'; exit 1; }}"
    queue_fleet(repo, [("f1", ["files", "f1.txt=1"]), ("f2", ["files", "f2.txt=2"])], gate=gate, script=script,
                extra="\n            batch: 2")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_sessions(repo)
    out = apply(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gate tests failed once, passed on its retry" in out.stdout
    rows = status(repo)
    for n in ("f1", "f2"):
        cond = {c["type"]: c for c in rows[n]["conditions"]}
        assert rows[n]["phase"] == "Delivered" and "IntegrationFailed" not in cond
        assert "delivery gate tests failed once: " in cond["Delivered"]["message"]
        assert "passed on its retry" in cond["Delivered"]["message"]
    gated = ran.read_text().split()
    assert len(gated) == 2 and gated[0] == gated[1] == tip(repo, "integration")  # the same result, twice
    assert target_history(repo) == [gated[1]]


def test_per_agent_pull_requests_are_pushed_opened_and_closed_once_delivered(repo: Path, github) -> None:  # type: ignore[no-untyped-def]
    """perAgent with strategy rebase: each agent's branch is pushed (never forced) and has its own
    pull request into the target, its review packet as the body; once delivered (new commits,
    which GitHub cannot see as the PR's) fleet comments where it landed and closes it."""
    api, env = github
    script = install(repo.parent)
    remote = repo.parent / "remote.git"
    git(repo.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    queue_fleet(repo, [("q1", ["review", str(repo.parent)]), ("q2", ["review", str(repo.parent)])], script=script,
                extra="\n            strategy: rebase\n            push: {remote: origin}"
                      "\n            pullRequest: {repo: acme/app, perAgent: true}")
    fleet("apply", "fleet.yaml", "--yes", "--target", "q1", cwd=repo, check=True, env=env)
    wait_sessions(repo)
    diff = fleet("diff", "fleet.yaml", "--target", "q1", cwd=repo, env=env).stdout
    assert "q1: its pull request into integration waits until integration is on origin" in diff
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)  # q1 lands (no PR: no remote target); q2 starts
    assert out.returncode == 0 and "pushed integration to origin" in out.stdout, out.stdout + out.stderr
    assert api.requests == []
    wait_sessions(repo)
    q2 = tip(repo, "fleet/t/q2")
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pushed fleet/t/q2 to origin; opened pull request #1" in out.stdout
    (pull,) = api.pulls
    assert (pull["head"], pull["base"], pull["title"]) == ("fleet/t/q2", "integration", "fleet t: q2")
    assert "<!-- fleet-review -->" in pull["body"] and "`q2`" in pull["body"] and "I wrote q2.txt" in pull["body"]
    assert "against `integration`" in pull["body"]
    assert git(remote, "rev-parse", "fleet/t/q2").strip() == q2  # pushed as it was, then delivered
    assert status(repo)["q2"]["phase"] == "Delivered"
    assert git(remote, "rev-parse", "integration") == git(repo, "rev-parse", "integration")
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)  # the target is on the remote: close it
    assert "closed pull request #1 with a comment" in out.stdout, out.stdout + out.stderr
    assert api.pulls[0]["state"] == "closed"
    ((number, comment),) = api.comments
    assert number == 1 and "into `integration` at" in comment and "strategy `rebase`" in comment
    assert fleet("diff", "fleet.yaml", cwd=repo, env=env).returncode == 0  # converged: nothing opened again
    methods = [(m, p.split("?", 1)[0]) for m, p, _ in api.requests]
    assert methods == [("GET", "/api/v3/repos/acme/app/pulls"), ("POST", "/api/v3/repos/acme/app/pulls"),
                       ("POST", "/api/v3/repos/acme/app/issues/1/comments"),
                       ("PATCH", "/api/v3/repos/acme/app/pulls/1")]


class _Remote:
    """A git remote on 127.0.0.1 that never lets a push through: `asks` answers every request
    401 with a Basic challenge (git then wants a user name and password), `silent` accepts the
    connection and never answers. `requests` counts what reached it."""

    def __init__(self, kind: str) -> None:
        import socket
        import threading

        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/app.git"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, args=(kind,), daemon=True).start()

    def _serve(self, kind: str) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.requests += 1
            if kind == "silent":
                self._held.append(conn)  # read nothing, answer nothing
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"app\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


def fleet_in_a_terminal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The real CLI in a session of its own whose controlling terminal is a pty, as a person runs
    it (so git could prompt there and wait): (exit code, everything it wrote). The time limit
    only keeps a hung run from hanging the suite; it decides nothing a passing run does."""
    import fcntl
    import pty
    import select
    import struct
    import sys
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=controlling_terminal, env={**os.environ, "COLUMNS": "200", **(env or {})})
    os.close(slave)
    out, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every end of the terminal is closed
                    break
                if not chunk:
                    break
                out += chunk
        else:
            os.killpg(proc.pid, 9)
            raise AssertionError(f"fleet {' '.join(args)} still running after 120s, its last output:\n"
                                 f"{out.decode(errors='replace')[-3000:]}")
    finally:
        os.close(master)
    return proc.wait(), out.decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.parametrize("kind", ["asks", "silent"])
def test_a_push_that_cannot_go_through_fails_with_what_to_do_and_never_waits_for_a_prompt(
        repo: Path, kind: str) -> None:
    """A remote that asks for credentials (401) or never answers: fleet's git never prompts, even
    with a terminal to prompt on (GIT_TERMINAL_PROMPT=0, and no terminal for a network call),
    and a push has a time limit (FLEET_GIT_NETWORK_TIMEOUT). Either way the push action fails
    with what went wrong and what to do, the target stays delivered locally, and the next pass
    tries again: it is not a rejection (the remote having other commits)."""
    remote = _Remote(kind)
    try:
        git(repo, "remote", "add", "origin", remote.url)
        queue_fleet(repo, [("a1", ["commit"])], script=agents.install(repo.parent),
                    extra="\n            push: {remote: origin}")
        fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
        wait_sessions(repo)
        env = {"FLEET_GIT_NETWORK_TIMEOUT": "2"} if kind == "silent" else {}
        code, out = fleet_in_a_terminal("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
        assert code == 1, out[-3000:]  # it ended: nothing waited for an answer on the terminal
        out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # the terminal's colours and cursor moves
        assert remote.requests >= 1  # git did reach it
        assert "push of integration to origin failed" in out and "was rejected" not in out
        if kind == "asks":
            assert "terminal prompts disabled" in out and "credential helper" in out
        else:
            assert "did not finish within 2s" in out and "FLEET_GIT_NETWORK_TIMEOUT" in out
        assert status(repo)["a1"]["phase"] == "Delivered"  # delivered locally; the push waits
        assert "push" in fleet("diff", "fleet.yaml", cwd=repo).stdout  # and is planned again
    finally:
        remote.close()


def test_the_delivered_ref_is_moved_by_compare_and_swap(repo: Path) -> None:
    """refs/fleet/delivered/<fleet>/<agent> (what keeps a squashed agent's commits safe to prune)
    is written as the target is: `update-ref REF NEW OLD`, OLD as fleet read it before the
    delivery began. Here the delivery gate itself moves the ref (someone else did, while the
    gate ran): fleet does not overwrite it, says so, and the next pass records the delivery."""
    ref = "refs/fleet/delivered/t/a1"
    once = repo.parent / "moved-once"
    gate = f"test -e {once} || {{ git update-ref {ref} $(git rev-parse main) && touch {once}; }}"
    queue_fleet(repo, [("a1", ["commit"])], script=agents.install(repo.parent), gate=gate,
                extra="\n            strategy: squash")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_sessions(repo)
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert out.returncode == 0, out.stdout + out.stderr  # as when the target moves while gating
    assert f"a1: ok {ref} moved while a1 was being delivered (fleet read no ref" in out.stdout, out.stdout
    assert "not overwritten: the next pass reads it again and records the delivery" in out.stdout
    assert tip(repo, ref) == tip(repo, "main")  # theirs, not overwritten
    landed = tip(repo, "integration")  # the target moved (gated): the delivery itself stands
    assert status(repo)["a1"]["phase"] == "Succeeded"  # not recorded Delivered without its ref
    out = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert status(repo)["a1"]["phase"] == "Delivered"
    assert tip(repo, ref) == tip(repo, "fleet/t/a1")  # read afresh, then moved from it
    assert tip(repo, "integration") == landed  # recorded as it landed, not integrated a second time
    assert git(repo, "log", "-1", "--format=%s", "integration").startswith("fleet: deliver a1")


def test_keep_delivered_moves_its_ref_only_from_what_was_read_and_never_back(repo: Path) -> None:
    from reconciler.act.delivery import keep_delivered
    from reconciler.observe.gitrepo import GitRepo

    ref, first = "refs/fleet/delivered/t/a1", tip(repo, "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = tip(repo, "main")
    gitrepo = GitRepo(repo)
    assert keep_delivered(gitrepo, ref, first, None, agent="a1") is None
    assert tip(repo, ref) == first
    moved = keep_delivered(gitrepo, ref, second, None, agent="a1")  # read as absent: someone wrote it since
    assert moved is not None and moved.startswith(f"{ref} moved while a1 was being delivered")
    assert tip(repo, ref) == first
    assert keep_delivered(gitrepo, ref, second, first, agent="a1") is None
    assert tip(repo, ref) == second
    assert keep_delivered(gitrepo, ref, first, second, agent="a1") is None  # anchored by its descendant
    assert tip(repo, ref) == second  # not moved back


def test_a_hung_merge_hook_is_stopped_and_the_next_pass_delivers(repo: Path) -> None:
    """The queue's merge runs the user's hooks (gittree.write_timeout): a hook that never ends is
    killed with its git, and the scratch tree it left (its index lock, a merge in progress) is
    reset by the next pass, which delivers once the hook is fixed."""
    queue_fleet(repo, [("a1", ["commit"])], script=agents.install(repo.parent))
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-merge-commit"
    hook.write_text("#!/bin/sh\nexec sleep 600\n")
    hook.chmod(0o755)
    env = {"FLEET_GIT_WRITE_TIMEOUT": "3"}
    outputs = []
    for _ in range(3):  # create and start, then merge (a pass observes the ended session first)
        out = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
        outputs.append(out.stdout)
        wait_sessions(repo)
        if "did not finish within 3s" in out.stdout:
            break
    assert "did not finish within 3s" in outputs[-1], "\n".join(outputs)
    assert "FLEET_GIT_WRITE_TIMEOUT=SECONDS" in outputs[-1]
    assert git(repo, "branch", "--list", "integration") == ""  # nothing landed half-way
    assert status(repo)["a1"]["phase"] == "Succeeded"  # the queue failed, not the agent's run
    hook.unlink()
    rows = converge(repo, lambda r: r["a1"]["phase"] == "Delivered")
    assert rows["a1"]["attempts"] == 1  # the failed merge did not run the agent again
    assert git(repo, "show", "integration:a1.txt") == "\n"
