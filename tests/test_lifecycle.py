"""The record state machine (act/lifecycle.py) as pure functions: no git, no processes, no files.

Issue 15: a run's `finished_at` is never before its `started_at` (item 5); a run whose program
did not start, or whose exit record cannot be read, is Failed and held, not restarted (items 3
and 6); a gate failure never leaves `Ready` True/Completed (item 4).
"""
from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.act import lifecycle
from reconciler.act.gates import GateResult, record_gates
from reconciler.observe.model import ObservedAgent
from reconciler.spec.desired import DesiredAgent
from reconciler.spec.loader import load_fleet_text
from reconciler.spec.models import Backoff
from reconciler.store.records import FAILED, PENDING, RUNNING, SUCCEEDED, CannotStart, ExitRecord, SessionRecord

REPO = Path("/nonexistent/fleet-lifecycle-tests/repo")  # never touched
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
NOT_FOUND = CannotStart("NotFound", "cannot start 'claude': No such file or directory (searched PATH)")


@functools.cache
def desired(max_attempts: int = 3, gates: tuple[str, ...] = ()) -> DesiredAgent:
    doc = {"apiVersion": "fleet/v1alpha1", "kind": "Fleet", "metadata": {"name": "t"},
           "spec": {"tiers": {"cmd": {"runtime": "command"}},
                    "gates": {"lint": {"run": "make lint", "maxAttempts": max_attempts}},
                    "agents": [{"name": "a", "tier": "cmd", "command": ["work"], "restart": "OnFailure",
                                "gates": list(gates)}]}}
    return load_fleet_text(json.dumps(doc), path=REPO / "fleet.yaml", shown="fleet.yaml", files=[]).agents[0]


def iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def running(agent: DesiredAgent, started_at: str, pid: int = 4242) -> SessionRecord:
    rec = SessionRecord(agent="a", fleet="t", branch=agent.branch)
    lifecycle.started(rec, agent, session_id="s-1", pid=pid, create_time=1.0, ready=f"pid {pid}",
                      started_at=started_at)
    return rec


def ended(rec: SessionRecord, exit_: ExitRecord | None) -> SessionRecord:
    new = lifecycle.refreshed(ObservedAgent("a", record=rec, exit=exit_, alive=False), None, Backoff())
    assert new is not None and new is not rec
    return new


def condition(rec: SessionRecord, type_: str) -> tuple[str, str]:
    found = [(c.status, c.reason) for c in rec.conditions if c.type == type_]
    assert len(found) == 1, rec.conditions
    return found[0]


# --- item 5: finished >= started, on every path that ends a run -----------------------------------------

# starts on both sides of the real clock (stops and lost sessions are stamped with it)
STARTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(timezone.utc))
OFFSETS = st.floats(min_value=-86400, max_value=86400, allow_nan=False)
ENDINGS = st.sampled_from(["exit0", "exit1", "cannot-start", "corrupt", "lost", "stopped", "stalled",
                           "workspace-lost", "start-failed-at-once"])


@settings(max_examples=200, deadline=None)
@given(start=STARTS, exit_offset=OFFSETS, ending=ENDINGS)
def test_a_run_never_finishes_before_it_started(start: datetime, exit_offset: float, ending: str) -> None:
    """Whatever clock wrote the exit record (the session host's, a remote node's), and however the
    run ended, the record never says it finished before it started."""
    agent = desired()
    rec = running(agent, iso(start))
    exit_at = iso(start + timedelta(seconds=exit_offset))
    if ending in ("exit0", "exit1"):
        rec = ended(rec, ExitRecord(4242, 0 if ending == "exit0" else 1, exit_at))
    elif ending == "cannot-start":
        rec = ended(rec, ExitRecord(4242, 127, exit_at, cannot_start=NOT_FOUND))
    elif ending == "corrupt":
        rec = ended(rec, ExitRecord(0, -1, "", corrupt="exit record a.exit.json is unreadable (x)"))
    elif ending == "lost":
        rec = ended(rec, None)
    elif ending in ("stopped", "stalled"):
        lifecycle.stopped(rec, reason="stop", condition="Stalled" if ending == "stalled" else None, tail=[],
                          api_error=None, policy=Backoff())
    elif ending == "workspace-lost":
        rec.finished_at = exit_at
        lifecycle.workspace_lost(rec, reason="clone lost", condition="CloneLost", policy=Backoff())
    else:
        lifecycle.could_not_start(rec, NOT_FOUND)
    assert rec.started_at is not None and rec.finished_at is not None
    assert datetime.fromisoformat(rec.finished_at) >= datetime.fromisoformat(rec.started_at), (rec.started_at,
                                                                                                rec.finished_at)


def test_the_start_time_is_the_one_taken_before_the_launch() -> None:
    rec = running(desired(), iso(T0))
    assert rec.started_at == iso(T0)


def test_an_exit_recorded_before_the_recorded_start_finishes_at_the_start() -> None:
    """The case a user saw: a command that does not exist exits before `started` was stamped."""
    rec = ended(running(desired(), iso(T0)), ExitRecord(4242, 127, iso(T0 - timedelta(milliseconds=8))))
    assert rec.finished_at == iso(T0)


# --- item 3: a run that could not start --------------------------------------------------------------------

def test_a_run_whose_program_did_not_start_is_failed_held_and_not_backed_off() -> None:
    rec = ended(running(desired(), iso(T0)), ExitRecord(4242, 127, iso(T0), cannot_start=NOT_FOUND))
    assert rec.phase == FAILED and rec.exit_code == 127
    assert rec.held == NOT_FOUND.message
    assert rec.reason == f"{NOT_FOUND.message}; not restarted until the spec changes"
    assert condition(rec, "StartFailed") == ("True", "NotFound")
    assert condition(rec, "Ready") == ("False", "StartFailed")
    assert rec.backoff_until is None and rec.restarts == 0  # no CrashLoopBackOff: nothing will restart it


def test_the_same_run_told_at_launch_is_recorded_the_same() -> None:
    """The executor learns it from the launch, observation from the exit record: one outcome."""
    told = running(desired(), iso(T0))
    lifecycle.could_not_start(told, NOT_FOUND)
    seen = ended(running(desired(), iso(T0)), ExitRecord(4242, 127, iso(T0), cannot_start=NOT_FOUND))
    for field in ("phase", "exit_code", "reason", "held", "backoff_until", "restarts"):
        assert getattr(told, field) == getattr(seen, field), field
    assert condition(told, "StartFailed") == condition(seen, "StartFailed")


def test_a_new_run_clears_the_hold() -> None:
    agent = desired()
    rec = ended(running(agent, iso(T0)), ExitRecord(4242, 127, iso(T0), cannot_start=NOT_FOUND))
    lifecycle.started(rec, agent, session_id="s-2", pid=5151, create_time=2.0, ready="pid 5151")
    assert rec.phase == RUNNING and rec.held is None
    assert condition(rec, "StartFailed") == ("False", "Started")


def test_an_ordinary_crash_still_backs_off() -> None:
    rec = ended(running(desired(), iso(T0)), ExitRecord(4242, 127, iso(T0 + timedelta(seconds=1))))
    assert rec.phase == FAILED and rec.held is None and rec.backoff_until is not None
    assert condition(rec, "Ready") == ("False", "Error")


# --- item 6: an exit record that cannot be read ------------------------------------------------------------

def test_an_unreadable_exit_record_is_not_a_kill() -> None:
    why = "exit record /s/a.exit.json is unreadable (Expecting value: line 1 column 1 (char 0))"
    rec = ended(running(desired(), iso(T0)), ExitRecord(0, -1, "", corrupt=why))
    assert rec.phase == FAILED and rec.exit_code is None
    assert rec.reason == f"exit status unknown: {why}; not restarted until someone looks"
    assert rec.held == rec.reason and rec.backoff_until is None
    assert condition(rec, "ExitRecordCorrupt") == ("True", "ExitRecordCorrupt")
    assert condition(rec, "Ready") == ("False", "ExitRecordCorrupt")
    message = next(c.message for c in rec.conditions if c.type == "ExitRecordCorrupt")
    assert "a.exit.json.corrupt-" in message and "fleet logs FILE a" in message and "fleet delete" in message
    assert not any(c.type == "SessionLost" or c.reason == "SessionLost" for c in rec.conditions)


def test_the_observed_phase_of_an_unreadable_exit_is_not_success() -> None:
    rec = running(desired(), iso(T0), pid=0)  # even a pid the placeholder shares
    obs = ObservedAgent("a", record=rec, exit=ExitRecord(0, -1, "", corrupt="unreadable"))
    assert obs.phase == FAILED and obs.exit_code is None and not obs.ended_here


# --- item 4: gates never leave Ready True/Completed when they fail ----------------------------------------

def gated(max_attempts: int = 2) -> tuple[DesiredAgent, SessionRecord]:
    agent = desired(max_attempts, gates=("lint",))
    rec = ended(running(agent, iso(T0)), ExitRecord(4242, 0, iso(T0 + timedelta(seconds=5))))
    return agent, rec


def failing(name: str, gate: object) -> GateResult:
    return GateResult(False, 1, "tests: 3 failed\n", 0.1)


def test_an_exit_0_waiting_for_its_gates_is_not_ready_yet() -> None:
    _, rec = gated()
    assert rec.phase == PENDING and rec.gates_pending
    assert condition(rec, "Ready") == ("Unknown", "GatesPending")
    assert condition(rec, "GatesPassed") == ("Unknown", "Pending")


def test_a_gate_fed_back_sets_ready_false() -> None:
    agent, rec = gated(max_attempts=2)
    verdict = record_gates(rec, agent, failing)
    assert verdict.feed_back and not verdict.passed
    assert rec.phase == FAILED and condition(rec, "Ready") == ("False", "GateFailed")


def test_a_gate_that_gave_up_leaves_the_agent_failed_with_its_reason() -> None:
    agent, rec = gated(max_attempts=1)
    verdict = record_gates(rec, agent, failing)
    assert not verdict.feed_back and not verdict.passed
    assert rec.phase == FAILED and rec.gates_exhausted
    assert rec.reason == "gate lint failed 1/1 times: exit 1; tests: 3 failed"
    assert condition(rec, "Ready") == ("False", "GatesFailed")
    assert condition(rec, "GatesPassed") == ("False", "GatesFailed")


def test_gates_that_pass_complete_the_run() -> None:
    agent, rec = gated()
    verdict = record_gates(rec, agent, lambda name, gate: GateResult(True, 0, "", 0.1))
    assert verdict.passed and rec.phase == SUCCEEDED
    assert condition(rec, "Ready") == ("True", "Completed")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(session_spec=st.dictionaries(st.text(max_size=5), _json, max_size=3),
       ledger=st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), _json, max_size=3), max_size=3),
       delivery=st.dictionaries(st.text(max_size=5), _json, max_size=3),
       last_output=st.lists(st.text(max_size=5), max_size=3))
def test_a_cloned_record_equals_its_original_and_shares_nothing_mutable(
        session_spec: dict, ledger: dict, delivery: dict, last_output: list) -> None:
    # refreshed() folds an exit into a clone; status shows the original: a shared dict or
    # list would let that fold change what a read-only command prints
    rec = SessionRecord(agent="a", fleet="t", phase=RUNNING, session_spec=session_spec, ledger=ledger,
                        delivery=delivery, last_output=last_output, gates=["lint"], gate_failures={"lint": 1},
                        last_gate={"name": "lint", "output": ["x"]})
    rec.set_condition("Ready", "Unknown", "Running", "pid 1")
    before = json.dumps(rec.to_json(), sort_keys=True)
    new = rec.clone()
    assert new == rec
    seen: set[int] = set()

    def containers(value: object) -> None:
        if isinstance(value, (dict, list)):
            seen.add(id(value))
            for v in (value.values() if isinstance(value, dict) else value):
                containers(v)

    for name in ("session_spec", "ledger", "delivery", "last_output", "gates", "gate_failures", "last_gate"):
        containers(getattr(rec, name))
    seen |= {id(rec.conditions)} | {id(c) for c in rec.conditions}
    mine: set[int] = set()
    for name in ("session_spec", "ledger", "delivery", "last_output", "gates", "gate_failures", "last_gate"):
        stack = [getattr(new, name)]
        while stack:
            v = stack.pop()
            if isinstance(v, (dict, list)):
                mine.add(id(v))
                stack.extend(v.values() if isinstance(v, dict) else v)
    mine |= {id(new.conditions)} | {id(c) for c in new.conditions}
    assert not (seen & mine)
    new.set_condition("Ready", "False", "Error", "exited 1")
    new.ledger["run-x"] = {"usd": 1.0}
    new.last_output.append("more")
    assert json.dumps(rec.to_json(), sort_keys=True) == before


def test_a_record_holding_what_json_never_gives_is_still_copied_whole() -> None:
    # clone() copies JSON's types with marshal; anything else (a subclass, a path set by code)
    # takes the Python walk, and is still not shared
    from collections import OrderedDict

    rec = SessionRecord(agent="a", fleet="t", delivery=OrderedDict(state="ready", files=[Path("x")]))
    new = rec.clone()
    assert new == rec
    assert new.delivery is not rec.delivery and new.delivery["files"] is not rec.delivery["files"]
    new.delivery["files"].append(Path("y"))
    assert rec.delivery["files"] == [Path("x")]
