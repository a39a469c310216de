"""Notifications (`spec.notify`): the transition rules (pure, table-driven) and the loop sending them
for real, to a command and to a webhook receiver on 127.0.0.1, exactly once per transition."""
from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import fleet, fleet_in_process, session_pids, wait_until, write_fleet

from reconciler.plan.notify import Event, deliveries, facts, transitions
from reconciler.plan.status import AgentStatus, group_of
from reconciler.spec.models import Notify

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def row(name: str, phase: str, *conditions: str, reason: str | None = None) -> AgentStatus:
    r = AgentStatus(agent=name, declared=True, phase=phase, sync="Synced", tier="t", runtime="command", model=None,
                    branch=None, worktree=None, dirty=None, ahead=None, pid=None, started_at=None, finished_at=None,
                    age_seconds=None, idle_seconds=None, exit_code=None, attempts=1, cost_usd=0.0, session_id=None,
                    spec_hash=None, observed_generation=None, reason=reason,
                    conditions=[{"type": c, "status": "True"} for c in conditions])
    r.group = group_of(r)
    return r


def kinds(before: list[AgentStatus] | None, after: list[AgentStatus]) -> list[tuple[str, str | None]]:
    events = transitions("f", after, facts(before) if before is not None else None, NOW)
    return [(e.event, e.agent) for e in events]


@pytest.mark.parametrize(("before", "after", "events"), [
    (None, [row("a", "Failed")], []),  # the first tick records, it does not announce
    ([], [row("a", "Failed")], []),  # an agent seen for the first time: recorded
    ([row("a", "Running")], [row("a", "Running")], []),
    ([row("a", "Running")], [row("a", "Succeeded")], [("succeeded", "a")]),
    ([row("a", "Running")], [row("a", "Failed")], [("needs-attention", "a"), ("failed", "a")]),
    ([row("a", "Failed")], [row("a", "Failed")], []),  # still failed: no new transition
    ([row("a", "Pending")], [row("a", "Blocked")], [("needs-attention", "a")]),
    ([row("a", "Pending")], [row("a", "Pending", "Stalled")], [("needs-attention", "a")]),
    ([row("a", "Failed")], [row("a", "Running")], []),
    ([row("a", "Pending"), row("b", "Pending")], [row("a", "Pending", "BudgetExhausted"),
                                                  row("b", "Pending", "BudgetExhausted")],
     [("needs-attention", "a"), ("needs-attention", "b"), ("budget-exhausted", None)]),
    ([row("a", "Pending", reason="Pilot: waits for notes-1"), row("p", "Running")],
     [row("a", "Pending"), row("p", "Succeeded")], [("succeeded", "p"), ("pilot-done", None)]),
])
def test_transitions(before: list[AgentStatus] | None, after: list[AgentStatus],
                     events: list[tuple[str, str | None]]) -> None:
    assert kinds(before, after) == events


def test_each_entry_gets_the_events_it_lists_and_its_debounce_holds_repeats_back() -> None:
    command = Notify(events=["failed"], command=["true"], debounce="10m")
    hook = Notify(events=["failed", "succeeded"], webhook="http://127.0.0.1:9/x", debounce="1s")
    failed = Event("failed", "f", "a", NOW.isoformat())
    done = Event("succeeded", "f", "b", NOW.isoformat())
    sent: dict[str, str] = {}
    due = deliveries([failed, done], [command, hook], sent, NOW)
    assert [(d.notifier, d.event.event) for d in due] == [(0, "failed"), (1, "failed"), (1, "succeeded")]
    earlier = (NOW - timedelta(minutes=5)).isoformat()
    sent = {"0/a/failed": earlier, "1/a/failed": earlier}
    assert [(d.notifier, d.event.event) for d in deliveries([failed], [command, hook], sent, NOW)] == [(1, "failed")]


def test_a_notify_entry_needs_one_target() -> None:
    for bad in ({"events": ["failed"]}, {"events": ["failed"], "command": ["x"], "webhook": "http://h/"},
                {"events": ["failed"], "webhook": "ftp://h/"}, {"events": [], "command": ["x"]},
                {"events": ["failed"], "command": ["x"], "headers": {"A": "b"}}):
        with pytest.raises(ValueError):
            Notify.model_validate(bad)


# -- the loop, for real ---------------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                received.append({"body": json.loads(self.rfile.read(length)), "auth": self.headers.get("X-Token")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def notify_fleet(repo: Path, hook: str, out: Path) -> None:
    go = repo.parent / "go"  # the sessions wait for it: the first tick sees them Running, whatever the machine's speed
    wait = f"while [ ! -f {go} ]; do sleep 0.05; done"
    record = f"{{ cat; echo; echo \"$FLEET_EVENT_KIND $FLEET_EVENT_AGENT\"; }} >> {out}"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          notify:
            - events: [needs-attention, succeeded, failed]
              command: [sh, -c, {json.dumps(record)}]
            - events: [failed, succeeded]
              webhook: {hook}
              headers: {{X-Token: {{fromEnv: HOOK_TOKEN}}}}
            - events: [failed]
              webhook: http://127.0.0.1:9/nothing-listens
              timeout: 2s
            - events: [succeeded]
              command: [sh, -c, "sleep 30"]
              timeout: 1s
          agents:
            - name: good
              tier: local
              command: [sh, -c, {json.dumps(wait + "; exit 0")}]
              restart: Never
            - name: bad
              tier: local
              command: [sh, -c, {json.dumps(wait + "; exit 3")}]
              restart: Never
    """)


def tick(repo: Path, *, own_process: bool = False) -> None:
    run = fleet if own_process else fleet_in_process
    proc = run("reconcile", "fleet.yaml", "--once", cwd=repo, env={"HOOK_TOKEN": "s3cret", "NO_PROXY": "127.0.0.1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_command_and_a_webhook_get_exactly_one_event_per_transition(repo: Path, receiver: Receiver) -> None:
    out = repo.parent / "events.txt"
    notify_fleet(repo, receiver.url, out)
    tick(repo)  # spawns both; the first tick records what it sees
    assert session_pids(repo) and not out.exists() and receiver.bodies == []
    (repo.parent / "go").touch()
    wait_until(lambda: not session_pids(repo), timeout=60)
    tick(repo)  # good Succeeded, bad Failed (and so needs attention): sent, before this tick exits
    tick(repo)  # nothing changed: nothing sent
    tick(repo, own_process=True)  # a new loop process: it remembers what was sent
    lines = out.read_text().splitlines()
    assert sorted(line for line in lines if not line.startswith("{")) == [
        "failed bad", "needs-attention bad", "succeeded good"]
    command_events = [json.loads(line) for line in lines if line.startswith("{")]
    assert sorted((e["event"], e["agent"]) for e in command_events) == [
        ("failed", "bad"), ("needs-attention", "bad"), ("succeeded", "good")]
    failed = next(e for e in command_events if e["event"] == "failed")
    assert (failed["kind"], failed["fleet"], failed["phase"], failed["previousPhase"], failed["group"]) == (
        "FleetEvent", "t", "Failed", "Running", "Needs attention")
    assert failed["reason"] == "session exited 3"
    # the receivers that failed are in status, and status still works (read first: if the webhook
    # missed an event, its failure says why)
    report = json.loads(fleet_in_process("status", "-o", "json", cwd=repo, check=True).stdout)
    assert sorted((b["body"]["event"], b["body"]["agent"]) for b in receiver.bodies) == [
        ("failed", "bad"), ("succeeded", "good")], (report["notifyFailures"], lines)
    assert {b["auth"] for b in receiver.bodies} == {"s3cret"}
    assert {b["body"]["id"] for b in receiver.bodies} <= {e["id"] for e in command_events}
    assert sorted((f["target"], f["error"].split(":")[0]) for f in report["notifyFailures"]) == [
        ("command sh -c sleep 30", "timed out after 1s"),
        ("webhook http://127.0.0.1:9/nothing-listens", "not delivered")]
    table = fleet_in_process("status", cwd=repo, env={"COLUMNS": "200"}, check=True).stdout
    assert "notify: failed of bad to webhook http://127.0.0.1:9/nothing-listens failed at " in table
    assert os.environ.get("HOOK_TOKEN") is None  # the secret came from fleet's environment only


def test_a_slow_receiver_does_not_hold_up_the_tick(repo: Path) -> None:
    """The tick returns while its delivery still runs (the command is alive after it)."""
    from reconciler.control.loop import ControlLoop

    pid_file = repo.parent / "notifier.pid"
    go = repo.parent / "go"
    wait = f"while [ ! -f {go} ]; do sleep 0.05; done"
    slow = f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 60"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          notify:
            - events: [succeeded]
              command: [sh, -c, {json.dumps(slow)}]
              timeout: 90s
          agents:
            - name: good
              tier: local
              command: [sh, -c, {json.dumps(wait)}]
    """)
    loop = ControlLoop(str(repo / "fleet.yaml"), report=lambda line: None)
    assert loop.tick() == 0  # spawns; records what it sees
    go.touch()
    wait_until(lambda: not session_pids(repo), timeout=60)
    assert loop.tick() == 0  # good Succeeded: its delivery starts on the notifier's thread
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=60))
    try:
        assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert "sleep" in " ".join(psutil.Process(pid).cmdline())  # still delivering, and the tick is over
    finally:
        os.killpg(pid, signal.SIGKILL)
