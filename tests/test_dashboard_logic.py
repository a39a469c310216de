"""The dashboard's pure parts: which group a row is in, and an agent's timeline (no I/O)."""
from __future__ import annotations

import pytest

from reconciler.store.records import Condition, SessionRecord
from reconciler.ui.auth import bearer, is_loopback, matches
from reconciler.ui.detail import timeline
from reconciler.ui.groups import ATTENTION, DONE, PENDING, WORKING, group_of


def cond(type_: str, status: str = "True") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": type_}


@pytest.mark.parametrize(("phase", "conditions", "group"), [
    ("Failed", [], ATTENTION),
    ("Blocked", [], ATTENTION),
    ("Running", [cond("Stalled")], ATTENTION),
    ("Pending", [cond("BudgetExhausted")], ATTENTION),
    ("Pending", [cond("BudgetExhausted", "False")], PENDING),
    ("Running", [cond("Ready", "Unknown")], WORKING),
    ("Succeeded", [cond("Ready")], DONE),
    ("Pending", [], PENDING),
])
def test_groups(phase: str, conditions: list[dict[str, str]], group: str) -> None:
    assert group_of({"phase": phase, "conditions": conditions}) == group


def test_timeline_orders_starts_restarts_resumes_finish_cost_gate_and_conditions() -> None:
    log = ("--- fleet: start 2026-01-01T12:00:00+0000: agent --go\nworking\n"
           "--- fleet: start 2026-01-01T12:05:00+0000: agent --go\n"
           "--- fleet: resume 2026-01-01T12:10:00+0000: agent --resume\ndone\n")
    rec = SessionRecord(agent="a", fleet="f", phase="Succeeded", exit_code=0,
                        finished_at="2026-01-01T12:11:00.000+00:00",
                        ledger={"run-1": {"usd": 0.25, "at": "2026-01-01T12:11:00.000+00:00"}},
                        last_gate={"name": "tests", "exit_code": 1, "at": "2026-01-01T12:04:00.000+00:00"},
                        conditions=[Condition("Ready", "True", "Completed", "session exited 0",
                                              "2026-01-01T12:11:01.000+00:00")])
    events = timeline(rec, log)
    assert [e["kind"] for e in events] == ["start", "gate", "restart", "resume", "finished", "cost", "condition"]
    assert events[1]["text"] == "gate tests failed (exit 1)"
    assert events[4]["text"] == "Succeeded: exit 0"
    assert events[5]["text"] == "$0.2500 (run-1)"


def test_token_rules() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.0.0.5")] == \
        [True, True, True, True, False, False]
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None
    assert matches("abc", "abc") and not matches("abd", "abc") and not matches(None, "abc")
