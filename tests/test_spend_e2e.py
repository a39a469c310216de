"""Issue 17 end to end: spend that cannot run away, with the real Claude Code CLI against the
scripted model server (tests/model_server.py) on 127.0.0.1.

Costs: the server returns the usage each test chooses; claude prices sonnet 4.5 at $3/M input
and $15/M output, and so does fleet's price table (runtimes/pricing.py) for what it prices
itself (a killed process's transcript). The old CLI (2.1.197, per-process cost) is found in
$FLEET_TEST_CLAUDE_OLD, else .ci/claude-2.1.197 (`.ci/run` installs it).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, session_pids, wait_until
from conftest import fleet_in_process as fleet  # the CLI in this process: sessions stay real processes
from model_server import ModelServer, Reply, Request, Stall, Text, ToolUse, Usage, play
from test_claude_e2e import CLAUDE, INSTALL, MODEL, claude_fleet
from test_telemetry import _attr, _Collector

pytestmark = pytest.mark.skipif(CLAUDE is None, reason=f"the real Claude Code CLI is not installed; run `{INSTALL}`")

OLD_VERSION = "2.1.197"
SONNET_IN, SONNET_OUT = 3 / 1e6, 15 / 1e6


def _old_claude() -> str | None:
    local = ROOT / f".ci/claude-{OLD_VERSION}/node_modules/.bin/claude"
    for path in (os.environ.get("FLEET_TEST_CLAUDE_OLD"), str(local)):
        if path and Path(path).exists():
            out = subprocess.run([path, "--version"], check=False, capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.startswith(OLD_VERSION):
                return path
    return None


OLD_CLAUDE = _old_claude()


def usd_of(usage: Usage) -> float:
    return usage.input_tokens * SONNET_IN + usage.output_tokens * SONNET_OUT


class Billing:
    """Wraps a script: what the model server billed, reply by reply (main loop and side requests)."""

    def __init__(self, script: Callable[[Request], Reply]) -> None:
        self.script = script
        self.usd = 0.0

    def __call__(self, req: Request) -> Reply:
        reply = self.script(req)
        if isinstance(reply, (Text, ToolUse)) and req.is_main_loop:
            self.usd += usd_of(reply.usage)
        return reply


@pytest.fixture
def serve_with(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModelServer]]:
    """Like test_claude_e2e's `serve`, with the claude binary to put first on PATH."""
    servers: list[ModelServer] = []

    def start(script: Callable[[Request], Reply], claude: str | None = CLAUDE) -> ModelServer:
        server = ModelServer(script).__enter__()
        servers.append(server)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        for key in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR", "IS_SANDBOX",
                    "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "FLEET_CLOCK_OFFSET"):
            monkeypatch.delenv(key, raising=False)
        assert claude is not None
        monkeypatch.setenv("PATH", str(Path(claude).parent) + os.pathsep + os.environ["PATH"])
        return server

    yield start
    for server in servers:
        server.close()


def apply(repo: Path) -> None:
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def status(repo: Path) -> dict[str, dict]:
    proc = fleet("status", "fleet.yaml", "-o", "json", cwd=repo, check=True)
    return {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}


def converge(repo: Path, done: Callable[[dict[str, dict]], bool], rounds: int = 8) -> dict[str, dict]:
    """apply, let the sessions it started finish, repeat until `done(status)` (test_claude_e2e's, in process)."""
    rows: dict[str, dict] = {}
    for _ in range(rounds):
        apply(repo)
        wait_until(lambda: not session_pids(repo), timeout=60)
        rows = status(repo)
        if done(rows):
            return rows
    raise AssertionError(f"not done after {rounds} applies: {rows}")


def record(repo: Path, agent: str) -> dict:
    return json.loads(next((repo / ".git" / "fleet" / "state" / "t").glob(f"{agent}.json")).read_text())


def ledger(repo: Path, agent: str) -> dict[str, dict]:
    return record(repo, agent)["ledger"]


def raw_log(repo: Path, agent: str) -> str:
    """The session log `fleet logs FILE AGENT --raw` prints, read from the state store (a CLI call saved)."""
    return (repo / ".git" / "fleet" / "logs" / "t" / f"{agent}.log").read_text()


def results(repo: Path, agent: str) -> list[dict]:
    """Every result object claude printed in the agent's session log."""
    return [json.loads(line) for line in raw_log(repo, agent).splitlines()
            if line.startswith("{") and '"type":"result"' in line]


def diff_json(repo: Path, env: dict[str, str] | None = None) -> dict:
    return json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo, env=env).stdout)


ONE_DOLLAR = Usage(input_tokens=300_000, output_tokens=6_000)  # $0.90 + $0.09 = $0.99


def test_three_one_dollar_agents_under_a_day_budget_of_1_50(repo: Path, serve_with) -> None:
    server = serve_with(lambda req: Text("looked", ONE_DOLLAR))
    claude_fleet(repo, """
            - name: w-{item}
              forEach: {items: [a, b, c]}
              tier: worker
              prompt: Look at {item}.
    """, extra="""  budget: {usdPerDay: 1.5}""")
    text = (repo / "fleet.yaml").read_text().replace("model: claude-sonnet-4-5-20250929,",
                                                     "model: claude-sonnet-4-5-20250929, maxUsdPerRun: 1,")
    (repo / "fleet.yaml").write_text(text)
    plan = diff_json(repo)
    kinds = {a["agent"]: a["kind"] for a in plan["actions"] if a["kind"] in ("spawn", "wait")}
    # all three planned in one apply: two fit (each reserving its $1 cap), the third waits
    assert kinds == {"w-a": "spawn", "w-b": "spawn", "w-c": "wait"}, plan["actions"]
    spawns = [a for a in plan["actions"] if a["kind"] == "spawn"]
    assert [a["details"]["reserveUsd"] for a in spawns] == [1, 1]
    wait = next(a for a in plan["actions"] if a["kind"] == "wait")
    held = "budget.usdPerDay $1.50 reached ($0.00 spent today, $2.00 reserved by sessions running or starting)"
    assert held in wait["reason"]
    apply(repo)
    wait_until(lambda: not session_pids(repo), timeout=90)
    apply(repo)  # folds both runs in; w-c still waits
    report = json.loads(fleet("status", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    rows = {a["agent"]: a for a in report["agents"]}
    assert [rows[w]["phase"] for w in ("w-a", "w-b")] == ["Succeeded", "Succeeded"], rows
    assert rows["w-c"]["phase"] == "Pending" and rows["w-c"]["session_id"] is None
    assert "budget.usdPerDay $1.50 reached ($1.98 spent today)" in rows["w-c"]["reason"], rows["w-c"]
    assert "resumes at 00:00 UTC" in rows["w-c"]["reason"]
    assert any(c["type"] == "BudgetExhausted" and c["status"] == "True" for c in rows["w-c"]["conditions"])
    # never more than one run's reservation over the budget
    assert report["spendTodayUsd"] == pytest.approx(2 * usd_of(ONE_DOLLAR))
    assert report["spendTodayUsd"] <= 1.5 + 1
    day = next(b for b in report["budgets"] if b["name"] == "budget.usdPerDay")
    assert day["spent"] == pytest.approx(1.98) and day["reserved"] == 0 and day["limit"] == 1.5
    assert len({r.session_id for r in server.main_requests()}) == 2  # the third never reached the model
    assert "--max-budget-usd 1 " in raw_log(repo, "w-a")  # its hard cap is its reservation


def _killed_then_resumed(repo: Path, serve_with, claude: str | None) -> tuple[Billing, dict, list[dict]]:
    turn1, turn2 = Usage(input_tokens=100_000, output_tokens=10_000), Usage(input_tokens=50_000, output_tokens=5_000)

    def script(req: Request) -> Reply:
        if "Your previous run" in req.prompt():
            return Text("finished after the interruption", turn2)
        return play(req, ToolUse("Bash", {"command": "echo half", "description": "step"}, usage=turn1), Stall())

    bill = Billing(script)
    server = serve_with(bill, claude)
    claude_fleet(repo, """
            - name: solo
              tier: worker
              prompt: Do the work in two steps.
              restart: OnFailure
    """)
    apply(repo)
    wait_until(server.stalled.is_set, timeout=60)  # the priced tool turn is done; claude waits on the model
    # and claude has written that turn's final usage to its transcript, which it does a moment after
    # the next request goes out: killed before then, the transcript has no final usage to price
    # (only the log's stream-start one), which is a different case from the one tested here
    wait_until(lambda: _transcript_output_tokens(record(repo, "solo")) == turn1.output_tokens, timeout=30)
    os.killpg(record(repo, "solo")["pid"], signal.SIGKILL)  # no result object from this process
    wait_until(lambda: not session_pids(repo))
    apply(repo)  # records the loss and its cost, backs off
    lost = record(repo, "solo")
    assert lost["phase"] == "Failed"
    assert lost["cost_usd"] == pytest.approx(usd_of(turn1))  # priced from the transcript: it was not free

    def resumed() -> bool:
        actions = diff_json(repo)["actions"]
        return bool(actions) and actions[0]["kind"] == "resume"

    wait_until(resumed, timeout=30, interval=0.2)  # after the 1s backoff
    rows = converge(repo, lambda r: r["solo"]["phase"] in ("Succeeded", "Failed"))
    return bill, rows["solo"], results(repo, "solo")


def _transcript_output_tokens(rec: dict) -> int | None:
    """The output tokens of the last assistant message in the session's transcript, as claude wrote it."""
    from reconciler.observe.progress import read_transcript
    from reconciler.store.records import SessionRecord

    found = None
    for line in (read_transcript(SessionRecord.from_json(rec)) or "").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        usage = entry.get("message", {}).get("usage") if entry.get("type") == "assistant" else None
        if isinstance(usage, dict):
            found = usage.get("output_tokens")
    return found


def test_killed_mid_turn_then_resumed_the_ledger_equals_what_the_server_billed(repo: Path, serve_with) -> None:
    bill, row, found = _killed_then_resumed(repo, serve_with, CLAUDE)
    assert row["phase"] == "Succeeded" and row["attempts"] == 2, row
    (result,) = found  # only the resumed process printed a result, and its total misses the killed turn
    assert result["total_cost_usd"] == pytest.approx(0.225)
    assert row["cost_usd"] == pytest.approx(bill.usd) and bill.usd == pytest.approx(0.675)
    apply(repo)  # status folds the ended run in memory; an apply records it
    entries = ledger(repo, "solo").values()
    assert sum(e["usd"] for e in entries) == pytest.approx(bill.usd)
    sources = sorted(e["source"] for e in entries)
    assert sources == ["result", "transcript"], ledger(repo, "solo")


@pytest.mark.skipif(OLD_CLAUDE is None, reason=f"claude {OLD_VERSION} not installed (`npm install --prefix "
                                               f".ci/claude-{OLD_VERSION} @anthropic-ai/claude-code@{OLD_VERSION}`)")
@pytest.mark.parametrize("which", ["pinned", "old"])
def test_resumed_conversation_cost_is_counted_once_per_cli_semantics(repo: Path, serve_with, which: str) -> None:
    # 2.1.332 reports a resumed run's total per conversation, 2.1.197 per process: the ledger is the same
    # the resume is capped at twice the tier's median run ($0.60, plus what the conversation restored):
    # its $0.45 stays under it
    first, second = Usage(input_tokens=100_000, output_tokens=0), Usage(input_tokens=150_000, output_tokens=0)

    def script(req: Request) -> Reply:
        if "quality gate `answer` failed" in req.prompt():
            return play(req, ToolUse("Bash", {"command": "echo good > answer.txt && git commit -qam good",
                                              "description": "fix"}, usage=second), Text("fixed", Usage(0, 0)))
        return play(req, ToolUse("Bash", {"command": "echo bad > answer.txt && git add answer.txt && "
                                                     "git commit -qm bad", "description": "answer"}, usage=first),
                    Text("done", Usage(0, 0)))

    bill = Billing(script)
    serve_with(bill, CLAUDE if which == "pinned" else OLD_CLAUDE)
    claude_fleet(repo, """
            - name: solver
              tier: worker
              prompt: Put the answer in answer.txt and commit.
              gates: [answer]
    """, extra="""  gates:
            answer: {run: "grep -q good answer.txt", timeout: 30s, maxAttempts: 3}""")
    rows = converge(repo, lambda r: r["solver"]["phase"] in ("Succeeded", "Failed") and not r["solver"]["reason"])
    row = rows["solver"]
    assert row["phase"] == "Succeeded" and row["attempts"] == 2, row
    totals = [r["total_cost_usd"] for r in results(repo, "solver")]
    if which == "pinned":
        assert totals == pytest.approx([0.3, 0.75])  # the conversation's running total
    else:
        assert totals == pytest.approx([0.3, 0.45])  # this process's own
    entries = ledger(repo, "solver").values()
    assert sorted(e["cli"] for e in entries) == [OLD_VERSION if which == "old" else "2.1.332"] * 2
    assert row["cost_usd"] == pytest.approx(0.75) and bill.usd == pytest.approx(0.75)
    log = raw_log(repo, "solver")
    # the gate-feedback resume is capped too: at twice the median run, on top of the total the pinned
    # CLI restores for the conversation (its transcript's cost-state) and compares the cap with
    cap = {"pinned": "0.9", "old": "0.6"}[which]
    assert f"--resume {row['session_id']} --model {MODEL} --max-budget-usd {cap} " in log


def test_pilot_of_one_in_a_group_of_four(repo: Path, serve_with) -> None:
    run = Usage(input_tokens=100_000, output_tokens=0)  # $0.30 a run
    server = serve_with(lambda req: Text("checked", run))
    claude_fleet(repo, """
            - name: w-{item}
              forEach: {items: [a, b, c, d]}
              rollout: {pilot: 1}
              tier: worker
              prompt: Check {item}.
              gates: [ok]
    """, extra="""  budget: {usdPerDay: 1.0}
          gates:
            ok: {run: "true", timeout: 30s}""")
    apply(repo)
    wait_until(lambda: not session_pids(repo), timeout=90)
    rows = status(repo)
    assert [rows[f"w-{x}"]["session_id"] is not None for x in "abcd"] == [True, False, False, False]
    for x in "bcd":
        assert rows[f"w-{x}"]["phase"] == "Pending" and rows[f"w-{x}"]["reason"].startswith("Pilot: waiting"), rows
    rows = converge(repo, lambda r: r["w-a"]["phase"] == "Succeeded" and not r["w-a"]["reason"])
    # too little left: $1.00 - $0.30 = $0.70 < 3 x $0.30; the rest stay Pending with the projection as the reason
    plan = diff_json(repo)
    projection = "projected $1.20 for 4 agents ($0.90 for the 3 not started); budget left $0.70"
    assert any(projection in note for note in plan["notes"]), plan["notes"]
    assert plan["projections"][0]["projectedUsd"] == pytest.approx(1.2)
    for x in "bcd":
        assert projection in rows[f"w-{x}"]["reason"] and rows[f"w-{x}"]["phase"] == "Pending", rows[f"w-{x}"]
        assert any(c["type"] == "Pilot" and c["status"] == "True" for c in rows[f"w-{x}"]["conditions"])
    assert projection in fleet("diff", "fleet.yaml", cwd=repo).stdout
    assert len({r.session_id for r in server.main_requests()}) == 1
    # with enough budget the other three start
    text = (repo / "fleet.yaml").read_text().replace("usdPerDay: 1.0", "usdPerDay: 5")
    (repo / "fleet.yaml").write_text(text)
    apply(repo)
    wait_until(lambda: not session_pids(repo), timeout=90)
    assert len({r.session_id for r in server.main_requests()}) == 4
    assert [record(repo, f"w-{x}")["session_id"] is not None for x in "bcd"] == [True, True, True]


def test_a_five_hour_window_exhausted_waits_until_its_reset(repo: Path, serve_with) -> None:
    serve_with(lambda req: Text("done", Usage(input_tokens=400_000, output_tokens=0)))  # $1.20 a run
    claude_fleet(repo, """
            - name: w-{item}
              forEach: {items: [a, b]}
              tier: worker
              prompt: Do {item}.
    """, extra="""  concurrency: {maxRunning: 1}
          budget: {windows: [{every: 5h, usd: 1}]}""")
    rows = converge(repo, lambda r: r["w-a"]["phase"] == "Succeeded" and r["w-b"]["phase"] == "Pending"
                    and "budget.windows[0]" in (r["w-b"]["reason"] or ""))
    reason = rows["w-b"]["reason"]
    opened = rows["w-a"]["finished_at"]
    hhmm = _plus_hours(opened, 5)
    assert "budget.windows[0] $1.00 per 5h reached ($1.20 spent in the window since" in reason, reason
    assert f"resumes at {hhmm} UTC" in reason
    wait = next(a for a in diff_json(repo)["actions"] if a["agent"] == "w-b")
    assert wait["kind"] == "wait" and wait["details"]["condition"] == "BudgetExhausted"
    assert wait["details"]["resumesAt"].startswith(_plus_hours(opened, 5, iso=True))
    # five hours and a minute later (the injected clock): the window has reset
    later = {"FLEET_CLOCK_OFFSET": str(5 * 3600 + 60)}
    assert [a["kind"] for a in diff_json(repo, env=later)["actions"] if a["agent"] == "w-b"] == ["spawn"]
    assert fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=later).returncode == 0
    wait_until(lambda: not session_pids(repo), timeout=90)
    row = json.loads(fleet("status", "fleet.yaml", "-o", "json", cwd=repo, check=True, env=later).stdout)["agents"][1]
    assert row["agent"] == "w-b" and row["phase"] == "Succeeded", row


def _plus_hours(when_iso: str, hours: int, *, iso: bool = False) -> str:
    """`when_iso` + hours: as the ISO prefix to the second, or as status shows a reset (HH:MM, rounded up)."""
    when = datetime.fromisoformat(when_iso) + timedelta(hours=hours)
    if iso:
        return when.isoformat(timespec="seconds")[:19]
    if when.second or when.microsecond:
        when = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return when.strftime("%H:%M")


def test_a_cli_warning_about_the_model_is_a_condition_in_describe(repo: Path, serve_with) -> None:
    serve_with(lambda req: Text("done", Usage(input_tokens=1000, output_tokens=100)))
    claude_fleet(repo, """
            - name: old
              tier: worker
              prompt: Anything.
    """)
    text = (repo / "fleet.yaml").read_text().replace("model: claude-sonnet-4-5-20250929", "model: claude-2.1")
    (repo / "fleet.yaml").write_text(text)
    converge(repo, lambda r: r["old"]["phase"] == "Succeeded")
    apply(repo)
    row = status(repo)["old"]
    warning = next(c for c in row["conditions"] if c["type"] == "CLIWarning")
    assert "[claude-code:unrecognized_model]" in warning["message"] and "claude-2.1" in warning["message"]
    shown = fleet("describe", "fleet.yaml", "old", cwd=repo, check=True).stdout
    assert "CLIWarning" in shown and "unrecognized_model" in shown
    assert 0 < row["cost_usd"] < 0.01
    assert "$0.00 " not in fleet("status", "fleet.yaml", cwd=repo, check=True).stdout  # a small cost is shown


@pytest.fixture
def otlp() -> Iterator[_Collector]:
    """A real OTLP/HTTP receiver on 127.0.0.1 (tests/test_telemetry.py's) for fleet's own telemetry."""
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _gauges(collector: _Collector, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """The last exported value of each of a metric's points, by their attributes other than fleet.name."""
    out: dict[tuple[tuple[str, Any], ...], float] = {}
    for metric in collector.metrics:
        if metric.name != name:
            continue
        points = metric.gauge.data_points if metric.HasField("gauge") else metric.sum.data_points
        for p in points:
            attrs = tuple(sorted((kv.key, _attr([kv], kv.key)) for kv in p.attributes if kv.key != "fleet.name"))
            out[attrs] = p.as_double if p.HasField("as_double") else float(p.as_int)
    return out


def test_live_spend_over_the_budget_pauses_the_session_then_it_resumes_the_same_one(repo: Path, serve_with,
                                                                                    otlp: _Collector) -> None:
    # two priced tool turns, $0.303 each, nearly all of it output: claude's stream-json log shows each
    # message's output count at its start (1 token), so from the log this run would have cost $0.006;
    # claude's own cost metric, which fleet receives over OTLP while it runs, has the $0.606
    step = Usage(input_tokens=1_000, output_tokens=20_000)
    run = 2 * usd_of(step)

    def script(req: Request) -> Reply:
        if "Your previous run" in req.prompt():
            return Text("finished after the pause", Usage(input_tokens=1_000, output_tokens=10))
        return play(req, ToolUse("Bash", {"command": "echo one", "description": "one"}, usage=step),
                    ToolUse("Bash", {"command": "echo two", "description": "two"}, usage=step), Stall())

    bill = Billing(script)
    server = serve_with(bill)
    collector = otlp  # fleet's own telemetry goes there
    claude_fleet(repo, """
            - name: solo
              tier: worker
              prompt: Do the work.
    """, extra=f"""  budget: {{usdPerDay: 1.0}}
          telemetry: {{otlpEndpoint: "{collector.endpoint}"}}""")
    text = (repo / "fleet.yaml").read_text().replace("model: claude-sonnet-4-5-20250929,",
                                                     "model: claude-sonnet-4-5-20250929, maxUsdPerRun: 2,")
    (repo / "fleet.yaml").write_text(text)
    apply(repo)  # the spawn reserves its $2 cap
    assert _gauges(collector, "fleet.budget.reserved")[(("fleet.budget", "budget.usdPerDay"),)] == pytest.approx(2)
    assert _gauges(collector, "fleet.cost")[(("fleet.agent", "solo"), ("fleet.tier", "worker"))] == 0
    wait_until(server.stalled.is_set, timeout=60)  # both priced turns are done; the session still runs
    spend_file = repo / ".git" / "fleet" / "state" / "t" / "live" / "solo.json"

    def exported() -> float:
        text = spend_file.exists() and spend_file.read_text()
        return sum(s["usd"] for s in json.loads(text)["sessions"].values()) if text else 0.0

    wait_until(lambda: exported() >= run - 1e-9, timeout=30)  # claude exports every second
    running = status(repo)["solo"]
    assert running["phase"] == "Running" and running["live_usd"] == pytest.approx(run), running
    # claude's own metric reaches the collector too: fleet's receiver forwards each export (as protobuf,
    # the protocol fleet's telemetry gives sessions) after writing it down
    def forwarded() -> float:
        return sum(p.as_double for m in list(collector.metrics) if m.name == "claude_code.cost.usage"
                   for p in m.sum.data_points)

    wait_until(lambda: forwarded() >= run - 1e-9, timeout=30)
    assert forwarded() == pytest.approx(run)
    # a pass while it runs (nothing to do: $0.61 of $1.00) exports the live figures, not the last run's
    collector.metrics.clear()
    apply(repo)
    assert _gauges(collector, "fleet.cost")[(("fleet.agent", "solo"), ("fleet.tier", "worker"))] == pytest.approx(run)
    assert _gauges(collector, "fleet.budget.remaining")[()] == pytest.approx(1.0 - run)
    reserved = _gauges(collector, "fleet.budget.reserved")
    assert reserved[(("fleet.budget", "budget.usdPerDay"),)] == pytest.approx(2 - run)
    left = _gauges(collector, "fleet.budget.left")
    assert left[(("fleet.budget", "budget.usdPerDay"), ("fleet.budget.unit", "usd"))] == pytest.approx(-1.0)
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().replace("usdPerDay: 1.0", "usdPerDay: 0.5"))
    stop = next(a for a in diff_json(repo)["actions"] if a["agent"] == "solo")
    assert stop["kind"] == "stop" and stop["details"]["budget"] == "pause", stop
    assert "budget.usdPerDay $0.50 reached ($0.61 spent today, $1.39 reserved by sessions" in stop["reason"]
    collector.metrics.clear()
    apply(repo)  # pauses it: stopped, its cost recorded, the conversation kept
    wait_until(lambda: not session_pids(repo))
    assert _gauges(collector, "fleet.cost")[(("fleet.agent", "solo"), ("fleet.tier", "worker"))] == pytest.approx(run)
    assert _gauges(collector, "fleet.budget.remaining")[()] == 0
    assert _gauges(collector, "fleet.budget.reserved")[(("fleet.budget", "budget.usdPerDay"),)] == 0
    paused = status(repo)["solo"]
    assert paused["phase"] == "Pending" and paused["pid"] is None, paused
    # it waits to be resumed when the budget allows
    assert paused["reason"].startswith("resume waits: budget.usdPerDay $0.50 reached ($0.61 spent today)"), paused
    rec = record(repo, "solo")
    assert rec["paused"] is True and rec["reason"].startswith("paused: BudgetExhausted: budget.usdPerDay"), rec
    assert paused["cost_usd"] == pytest.approx(run)  # nothing stopped without its cost
    assert any(c["type"] == "BudgetExhausted" and c["status"] == "True" for c in paused["conditions"])
    # (its reason above is the plan's wait: the budget is still spent); with more budget it is resumed, the
    # same conversation
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().replace("usdPerDay: 0.5", "usdPerDay: 5"))
    rows = converge(repo, lambda r: r["solo"]["phase"] == "Succeeded")
    assert rows["solo"]["session_id"] == paused["session_id"]
    assert {r.session_id for r in server.main_requests()} == {paused["session_id"]}
    apply(repo)
    assert sum(e["usd"] for e in ledger(repo, "solo").values()) == pytest.approx(bill.usd)
    assert bill.usd == pytest.approx(run + usd_of(Usage(input_tokens=1_000, output_tokens=10)))
