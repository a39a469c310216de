"""`fleet ui`: the live dashboard, in a real headless Chromium, against real sessions.

The fleet page lists the agents; a finishing agent's row changes without a reload; an
action without the token is refused (403) and one with it acts; the server listens on
127.0.0.1 only; another address needs a token.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import agents
import psutil
import pytest
from browser import browser
from conftest import fleet, fleet_in_process, session_pids, wait_until, write_fleet
from conftest import status_in_process as status  # the CLI in this process: the server is its own

pytest.importorskip("starlette")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    token: str | None


@contextmanager
def serve(repo: Path, *args: str) -> Iterator[Served]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "ui", "fleet.yaml", "--port", "0",
                             "--interval", "0.3", *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url, token = None, None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("fleet ui: "):
                url = line.split(": ", 1)[1].strip()
            if line.startswith("actions enabled; they need the token: "):
                token = line.rsplit(" ", 1)[1].strip()
            if line.startswith(("read-only", "  open ")):
                break
        assert url is not None, "fleet ui printed no URL"
        yield Served(proc, url, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def two_agents(repo: Path, tmp_path: Path) -> Path:
    script = agents.install(tmp_path)
    done = tmp_path / "quick.done"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: dash}}
        spec:
          tiers: {{local: {{runtime: command, maxRunning: 4}}}}
          budget: {{usdPerDay: 5}}
          agents:
            - name: quick
              tier: local
              command: {agents.argv(script, "until", str(done))}
            - name: sleeper
              tier: local
              command: {agents.argv(script, "sleep", "300")}
        """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    return done


def post(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# read through JavaScript: the page redraws on every event, so element handles go stale
def text(driver, element_id: str) -> str:  # type: ignore[no-untyped-def]
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
                                 element_id)


def attr(driver, element_id: str, name: str) -> str | None:  # type: ignore[no-untyped-def]
    return driver.execute_script("const e = document.getElementById(arguments[0]); "
                                 "return e ? e.getAttribute(arguments[1]) : null", element_id, name)


def ids(driver, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.id)", selector)


def phase_in_page(driver, agent: str) -> str | None:  # type: ignore[no-untyped-def]
    return attr(driver, f"agent-{agent}", "data-phase")


def test_fleet_page_lists_agents_and_a_finished_agent_changes_without_reload(repo: Path, tmp_path: Path) -> None:
    done = two_agents(repo, tmp_path)
    with serve(repo) as served, browser(tmp_path) as driver:
        driver.get(served.url)
        wait_until(lambda: [phase_in_page(driver, a) for a in ("quick", "sleeper")] == ["Running", "Running"])
        assert sorted(ids(driver, "#group-working tr[id^=agent-]")) == ["agent-quick", "agent-sleeper"]
        driver.execute_script("window.__notReloaded = 'same page'")
        done.write_text("")  # the agent finishes
        wait_until(lambda: phase_in_page(driver, "quick") == "Succeeded", timeout=60)
        assert driver.execute_script("return window.__notReloaded") == "same page"
        assert ids(driver, "#group-done tr[id^=agent-]") == ["agent-quick"]
        assert phase_in_page(driver, "sleeper") == "Running"
        assert "in sync" in text(driver, "plan")


def test_actions_without_the_token_are_refused_and_with_it_they_act(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    with serve(repo, "--actions") as served, browser(tmp_path) as driver:
        assert served.token
        base = served.url.rstrip("/")
        # the page opened without the token: its Stop button is refused, nothing stops
        driver.get(f"{base}/agents/sleeper")
        wait_until(lambda: attr(driver, "actions-card", "hidden") is None)
        driver.find_element("id", "act-stop").click()
        wait_until(lambda: "refused (403)" in text(driver, "action-result"))
        assert "token" in text(driver, "action-result")
        assert status(repo)["sleeper"]["phase"] == "Running"
        assert post(f"{base}/api/agents/sleeper/stop")[0] == 403
        assert post(f"{base}/api/agents/sleeper/stop", token="wrong")[0] == 403
        # opened with ?token=, the same button stops the session, and the page shows it
        driver.get(f"{base}/agents/sleeper?token={served.token}")
        wait_until(lambda: attr(driver, "actions-card", "hidden") is None)
        driver.find_element("id", "act-stop").click()
        wait_until(lambda: attr(driver, "agent-phase", "data-phase") == "Failed",
                   timeout=60)
        row = status(repo)["sleeper"]
        assert row["phase"] == "Failed" and row["pid"] is None
        assert {c["type"]: c["reason"] for c in row["conditions"]}["Ready"] == "StoppedByOperator"
        # held: an apply does not start it again; the operator's restart does
        assert "sleeper" not in fleet_in_process("diff", "fleet.yaml", cwd=repo).stdout
        code, body = post(f"{base}/api/agents/sleeper/restart", token=served.token)
        assert code == 200, body
        assert status(repo)["sleeper"]["phase"] == "Running"
        # resume with a message: the running session is stopped, the conversation goes on with it
        code, body = post(f"{base}/api/agents/sleeper/resume", token=served.token)
        assert code == 409 and "resume needs a message" in body["error"]
        code, body = post(f"{base}/api/agents/sleeper/approve", token=served.token)  # no merge queue here
        assert code == 409 and "declares no spec.delivery" in body["error"]
        first = status(repo)["sleeper"]["pid"]
        code, body = post(f"{base}/api/agents/sleeper/resume", token=served.token, body={"message": "go on"})
        assert code == 200, body
        row = status(repo)["sleeper"]
        assert row["phase"] == "Running" and row["pid"] != first
        env = psutil.Process(row["pid"]).environ()
        assert (env["FLEET_RESUME"], env["FLEET_MESSAGE"]) == ("1", "go on")


def test_a_read_only_dashboard_refuses_actions_even_with_the_token(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    with serve(repo, "--token", "s3cret") as served:
        code, body = post(served.url.rstrip("/") + "/api/agents/sleeper/stop", token="s3cret")
        assert code == 403 and "read-only" in body["error"]
        code, body = post(served.url.rstrip("/") + "/api/agents/sleeper/approve", token="s3cret")
        assert code == 403 and "read-only" in body["error"]
    assert status(repo)["sleeper"]["phase"] == "Running"


def test_it_listens_on_127_0_0_1_only(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    with serve(repo) as served:
        listening = [c for c in psutil.Process(served.proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
        assert served.url == f"http://127.0.0.1:{listening[0].laddr.port}/"
        # another Host name (DNS rebinding) is refused
        req = urllib.request.Request(served.url + "api/fleet", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 400


def test_another_address_needs_a_token(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    proc = fleet("ui", "fleet.yaml", "--host", "0.0.0.0", "--port", "0", cwd=repo, timeout=60)
    assert proc.returncode == 1
    assert "without an access token" in proc.stderr and "--token" in proc.stderr


def test_agent_page_shows_conditions_timeline_commits_and_tails_the_log(repo: Path, tmp_path: Path) -> None:
    script = agents.install(tmp_path)
    go = tmp_path / "go"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: dash}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: writer
              tier: local
              command: {agents.argv(script, "until", str(go))}
        """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    tree = Path(status(repo)["writer"]["worktree"])
    (tree / "notes.txt").write_text("one\ntwo\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=tree, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "writer: notes"], cwd=tree, check=True)
    with serve(repo) as served, browser(tmp_path) as driver:
        driver.get(served.url + "agents/writer")
        wait_until(lambda: "writer waiting for" in text(driver, "log"))
        assert attr(driver, "agent-phase", "data-phase") == "Running"
        assert "Ready" in text(driver, "conditions")
        assert "start" in text(driver, "timeline")
        wait_until(lambda: "writer: notes" in text(driver, "commits"))
        assert "notes.txt" in text(driver, "diffstat")
        go.write_text("")
        wait_until(lambda: "writer done" in text(driver, "log"))  # the live tail
        wait_until(lambda: attr(driver, "agent-phase", "data-phase") == "Succeeded")


def test_reconcile_watch_ui_serves_the_loops_observations(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    loop = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", "fleet.yaml", "--watch",
                             "--interval", "0.5", "--ui", "--port", "0"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert loop.stdout is not None
        url = loop.stdout.readline().split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")

        def fleet_data() -> dict | None:
            with urllib.request.urlopen(url + "api/fleet", timeout=30) as resp:
                data = json.loads(resp.read())
            return data if data["source"] == "loop" and data["loop"] else None

        data = wait_until(fleet_data, timeout=90)
        assert data["loop"]["pid"] == loop.pid and data["actions"] is False
        assert sorted(a["agent"] for a in data["groups"]["Working"]) == ["quick", "sleeper"]
        assert data["history"] and data["caps"]["tiers"]["local"] == {"maxRunning": 4, "running": 2}
        assert data["spend"]["budget"] == 5.0
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.communicate(timeout=30)


def test_ui_with_reconcile_needs_watch(repo: Path, tmp_path: Path) -> None:
    two_agents(repo, tmp_path)
    proc = fleet("reconcile", "fleet.yaml", "--once", "--ui", cwd=repo)
    assert proc.returncode == 2 and "use it with --watch" in proc.stderr


def test_agent_page_shows_the_review_packet_and_approve_reject_need_the_token(repo: Path, tmp_path: Path) -> None:
    """spec.delivery with approval: required: the agent page shows the review packet; Approve
    without the token is refused and changes nothing; with it, it records who and the agent
    enters the queue; Reject with a message resumes the session with it."""
    from test_delivery import install as install_delivery_agent

    script = install_delivery_agent(tmp_path)
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: dash}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          gates: {{tests: {{run: "true", timeout: 30s}}}}
          delivery: {{into: integration, gates: [tests], approval: required}}
          agents:
            - name: r1
              tier: local
              command: {agents.argv(script, "review", str(tmp_path))}
            - name: r2
              tier: local
              command: {agents.argv(script, "review", str(tmp_path))}
        """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: not session_pids(repo), interval=0.05)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # records how they ended (and their cost)
    with serve(repo, "--actions") as served, browser(tmp_path) as driver:
        assert served.token
        base = served.url.rstrip("/")
        driver.get(f"{base}/agents/r1")  # opened without the token
        wait_until(lambda: "I wrote r1.txt" in text(driver, "review-message"))
        assert driver.find_element("id", "act-approve").is_displayed()  # --actions: shown, but needs the token
        assert "r1 work" in text(driver, "review-commits")
        assert "r1.txt" in text(driver, "review-diffstat") and text(driver, "review-cost") == "$0.25"
        assert "approval required" in text(driver, "review-state")
        assert "delivery gates on the merged result: tests" in text(driver, "review-gates")
        assert "against main" in text(driver, "review-against")  # the target does not exist yet
        driver.find_element("id", "act-approve").click()
        wait_until(lambda: "refused (403)" in text(driver, "review-result"))
        assert post(f"{base}/api/agents/r1/approve")[0] == 403
        assert "r1 waits for approval" in fleet_in_process("diff", "fleet.yaml", cwd=repo).stdout  # nothing recorded
        driver.get(f"{base}/agents/r1?token={served.token}")
        wait_until(lambda: attr(driver, "review-actions", "hidden") is None)
        driver.find_element("id", "review-by").send_keys("carol")
        driver.find_element("id", "act-approve").click()
        wait_until(lambda: "approved r1 at " in text(driver, "review-result"))
        wait_until(lambda: "approved by carol at " in text(driver, "review-state"))  # who and when, live
        plan = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
        assert [(a["kind"], a["agent"]) for a in plan["actions"]] == [("merge", "r1")]  # in the queue now
        approved = {c["type"]: c for c in status(repo)["r1"]["conditions"]}["Approved"]
        assert approved["message"].startswith("by carol for ")
        # reject, with its message, resumes r2's session with it
        driver.get(f"{base}/agents/r2?token={served.token}")
        wait_until(lambda: attr(driver, "review-actions", "hidden") is None)
        driver.find_element("id", "reject-message").send_keys("say revised")
        driver.find_element("id", "act-reject").click()
        wait_until(lambda: "rejected r2 at " in text(driver, "review-result"))
        assert "(dashboard)" in text(driver, "review-result")  # no name typed: the ui's user, from the dashboard
        wait_until((tmp_path / "r2.message").exists)
        assert "say revised" in (tmp_path / "r2.message").read_text()
