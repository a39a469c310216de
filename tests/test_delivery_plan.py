"""The merge queue's planning as a pure function (plan/delivery.py): tables of (spec, observed
records and branch facts) -> the exact queue actions and notes. No git, no processes, no files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.observe.model import BranchFacts, DeliveryFacts, Observed, ObservedAgent
from reconciler.plan.delivery import globs_overlap, out_of_scope, plan_delivery
from reconciler.spec.loader import LoadedFleet, load_fleet_text
from reconciler.store.records import DELIVERED, FAILED, RUNNING, SUCCEEDED, SessionRecord

REPO = Path("/nonexistent/fleet-delivery-tests/repo")
DELIVERY = {"into": "integration", "gates": ["tests"]}


def load(agents: list[dict[str, Any]], **delivery: Any) -> LoadedFleet:
    doc = {"apiVersion": "fleet/v1alpha1", "kind": "Fleet", "metadata": {"name": "t"},
           "spec": {"tiers": {"cmd": {"runtime": "command"}}, "gates": {"tests": {"run": "true"}},
                    "delivery": {**DELIVERY, **delivery},
                    "agents": [{"tier": "cmd", "command": ["work"], **a} for a in agents]}}
    return load_fleet_text(json.dumps(doc), path=REPO / "fleet.yaml", shown="fleet.yaml", files=[])


def facts(tip: str = "t1", **kw: Any) -> BranchFacts:
    base = {"tip": tip, "in_target": False, "ahead": 1, "behind_target": 0, "behind_base": 0,
            "changed": ("a.txt",)}
    return BranchFacts(**{**base, **kw})


def observed(loaded: LoadedFleet, agents: dict[str, dict[str, Any]], target: str | None = "T",
             **delivery_facts: Any) -> Observed:
    obs = Observed(base_exists=True)
    branches: dict[str, BranchFacts] = {}
    for name, spec in agents.items():
        desired = loaded.agent(name)
        assert desired is not None
        rec = SessionRecord(agent=name, fleet="t", phase=spec.get("phase", SUCCEEDED), spec_hash=desired.spec_hash,
                            session_id="s", finished_at=spec.get("ended", f"2025-06-01T10:00:0{len(branches)}"))
        rec.delivery = spec.get("delivery", {})
        obs.agents[name] = ObservedAgent(name, record=rec, alive=spec.get("alive", False))
        if spec.get("branch", True):
            branches[name] = spec.get("facts", facts())
    obs.delivery = DeliveryFacts(into="integration", target_tip=target, base_tip="B", branches=branches,
                                 **delivery_facts)
    return obs


def kinds(actions: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(a.kind, a.agent, a.details.get("step") or (f"{a.details['position']}/{a.details['of']}"
                                                          if a.kind == "merge" else None)) for a in actions]


CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, dict[str, Any]], dict[str, Any], list[Any]]] = [
    ("succeeded agents are queued in the order their runs ended",
     [{"name": "a"}, {"name": "b"}], {},
     {"a": {"ended": "2025-06-01T10:00:09"}, "b": {"ended": "2025-06-01T10:00:01"}}, {},
     [("merge", "b", "1/2"), ("merge", "a", "2/2")]),
    ("running, failed, undelivered and delivered agents are not queued",
     [{"name": "a"}, {"name": "b"}, {"name": "c", "deliver": False}, {"name": "d"}], {},
     {"a": {"phase": RUNNING, "alive": True}, "b": {"phase": FAILED}, "c": {}, "d": {"phase": DELIVERED}}, {}, []),
    ("a branch already in the target is recorded Delivered",
     [{"name": "a"}], {}, {"a": {"facts": facts(in_target=True)}}, {}, [("deliver", "a", "in-target")]),
    ("a verdict on the same tip holds; a new tip is queued again",
     [{"name": "a"}, {"name": "b"}], {},
     {"a": {"delivery": {"state": "Conflicted", "sha": "t1"}},
      "b": {"delivery": {"state": "Conflicted", "sha": "old"}}}, {}, [("merge", "b", "1/1")]),
    ("approval required: only the tip approved is queued",
     [{"name": "a"}, {"name": "b"}, {"name": "c"}], {"approval": "required"},
     {"a": {"delivery": {"approved": {"sha": "t1"}}}, "b": {"delivery": {"approved": {"sha": "old"}}}, "c": {}}, {},
     [("merge", "a", "1/1")]),
    ("a branch that changes no file is NothingToDeliver, never merged",
     [{"name": "a"}], {}, {"a": {"facts": facts(changed=())}}, {}, [("deliver", "a", "nothing")]),
    ("approval required: a branch that changes no file needs no approval; it is NothingToDeliver",
     [{"name": "a"}], {"approval": "required"}, {"a": {"facts": facts(changed=())}}, {}, [("deliver", "a", "nothing")]),
    ("files outside paths are OutOfScope",
     [{"name": "a", "paths": ["src/**"]}, {"name": "b", "paths": ["docs/*.md"]}], {},
     {"a": {"facts": facts(changed=("src/x.py", "README.md"))}, "b": {"facts": facts(changed=("docs/a.md",))}}, {},
     [("deliver", "a", "scope"), ("merge", "b", "1/1")]),
    ("an interrupted delivery that landed is recorded, not merged again",
     [{"name": "a"}], {}, {"a": {"delivery": {"pending": {"sha": "t1", "result": "R"}},
                                 "facts": facts(in_target=True, landed=True)}}, {}, [("deliver", "a", "landed")]),
    ("the target checked out somewhere blocks the queue",
     [{"name": "a"}], {}, {"a": {}}, {"checked_out": "/repo"}, [("blocked", "a", None)]),
    ("push after merges, and when the remote is behind",
     [{"name": "a"}, {"name": "b"}], {"push": {"remote": "origin"}},
     {"a": {}, "b": {"phase": DELIVERED}}, {"remote_tip": "T"}, [("merge", "a", "1/1"), ("push", "integration", None)]),
    ("nothing to push when the remote has the target",
     [{"name": "b"}], {"push": {"remote": "origin"}}, {"b": {"phase": DELIVERED}}, {"remote_tip": "T"}, []),
    ("perAgent: a queued agent's branch is pushed with its pull request before it merges",
     [{"name": "a"}, {"name": "b"}], {"push": {"remote": "origin"}, "pullRequest": {"repo": "o/r", "perAgent": True}},
     {"a": {}, "b": {"delivery": {"pullRequest": {"number": 1, "sha": "t1", "state": "open"}},
                     "facts": facts(remote_tip="t1")}},
     {"remote_tip": "T"}, [("push", "a", None), ("merge", "a", "1/2"), ("merge", "b", "2/2"),
                           ("push", "integration", None)]),
    ("perAgent: an approval-waiting agent gets its pull request; a new tip updates it",
     [{"name": "a"}, {"name": "b"}], {"push": {"remote": "origin"}, "approval": "required",
                                     "pullRequest": {"repo": "o/r", "perAgent": True}},
     {"a": {}, "b": {"delivery": {"pullRequest": {"number": 1, "sha": "old", "state": "open"}},
                     "facts": facts(remote_tip="old")}},
     {"remote_tip": "T"}, [("push", "a", None), ("push", "b", None)]),
    ("perAgent: no pull request into a target the remote does not have yet",
     [{"name": "a"}], {"push": {"remote": "origin"}, "pullRequest": {"repo": "o/r", "perAgent": True}},
     {"a": {}}, {}, [("merge", "a", "1/1"), ("push", "integration", None)]),
    ("perAgent with rebase: a delivered agent's pull request is closed once the target is pushed",
     [{"name": "a"}, {"name": "b"}], {"push": {"remote": "origin"}, "strategy": "rebase",
                                     "pullRequest": {"repo": "o/r", "perAgent": True}},
     {"a": {"phase": DELIVERED, "delivery": {"pullRequest": {"number": 3, "sha": "t1", "state": "open"}}},
      "b": {"phase": DELIVERED, "delivery": {"pullRequest": {"number": 4, "sha": "t1", "state": "closed"}}}},
     {"remote_tip": "T"}, [("deliver", "a", "pr-close")]),
    ("perAgent with merge: the forge sees a delivered pull request merged; fleet leaves it",
     [{"name": "a"}], {"push": {"remote": "origin"}, "pullRequest": {"repo": "o/r", "perAgent": True}},
     {"a": {"phase": DELIVERED, "delivery": {"pullRequest": {"number": 3, "sha": "t1", "state": "open"}}}},
     {"remote_tip": "T"}, []),
    ("a batch: positions run on, the first carries the members",
     [{"name": "a"}, {"name": "b"}, {"name": "c"}], {"batch": 2}, {"a": {}, "b": {}, "c": {}}, {},
     [("merge", "a", "1/3"), ("merge", "b", "2/3"), ("merge", "c", "3/3")]),
]


@pytest.mark.parametrize(("why", "agents", "delivery", "seen", "target_facts", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_queue(why: str, agents: list[dict[str, Any]], delivery: dict[str, Any], seen: dict[str, dict[str, Any]],
               target_facts: dict[str, Any], expected: list[Any]) -> None:
    loaded = load(agents, **delivery)
    actions, _ = plan_delivery(loaded, observed(loaded, seen, **target_facts))
    assert kinds(actions) == expected


def test_busy_agents_wait_and_batches_name_their_members() -> None:
    loaded = load([{"name": "a"}, {"name": "b"}, {"name": "c"}], batch=2)
    actions, _ = plan_delivery(loaded, observed(loaded, {"a": {}, "b": {}, "c": {}}), busy={"b"})
    assert [(a.agent, a.details["batch"], a.details["batchOf"]) for a in actions] == [
        ("a", ["a", "c"], None), ("c", [], "a")]
    assert actions[0].reason == "into integration (queue 1 of 2), batch a, c: merge, then gates tests"


def test_notes_say_behind_base_overlap_and_approval() -> None:
    loaded = load([{"name": "a", "paths": ["src/**"]}, {"name": "b", "paths": ["src/api/x.py"]}],
                  approval="required")
    _, notes = plan_delivery(loaded, observed(loaded, {"a": {"facts": facts(behind_base=3)}, "b": {}}))
    assert notes == (
        "paths of a (src/**) and b (src/api/x.py) overlap: their changes may conflict in the delivery queue",
        "a: BehindBase: 3 commits (its fork point is behind the base)",
        "a waits for approval before it enters the queue: `fleet review` it, then `fleet approve FILE a` "
        "(or `fleet reject FILE a -m ...`)",
        "b waits for approval before it enters the queue: `fleet review` it, then `fleet approve FILE b` "
        "(or `fleet reject FILE b -m ...`)")


@pytest.mark.parametrize(("p", "q", "overlap"), [
    ("src/**", "src/api/*.py", True), ("src/a/**", "src/b/**", False), ("README.md", "README.md", True),
    ("README.md", "docs/*.md", False), ("*.md", "README.md", True), ("docs/**", "*.md", True),
    ("src/api/x.py", "src/api/y.py", False),
])
def test_globs_overlap(p: str, q: str, overlap: bool) -> None:
    assert globs_overlap(p, q) is overlap
    assert globs_overlap(q, p) is overlap


def test_out_of_scope_lists_what_no_glob_matches() -> None:
    assert out_of_scope(["src/**", "tests/test_*.py"], ["src/a/b.py", "tests/test_a.py", "setup.py"]) == ["setup.py"]
    assert out_of_scope([], ["anything"]) == []
