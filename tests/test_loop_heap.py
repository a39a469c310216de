"""`fleet reconcile --watch` freezes its heap after the first tick (control/loop.py
`_settle_heap`); a loop embedded in another program leaves that program's heap alone."""
from __future__ import annotations

import gc
from pathlib import Path

import agents

from reconciler.control.loop import ControlLoop


def test_only_a_loop_that_owns_its_process_freezes_the_heap(repo: Path) -> None:
    agents.fleet_yaml(repo, "- {name: w-a, tier: local, command: [\"true\"]}")
    gc.unfreeze()
    try:
        embedded = ControlLoop(str(repo / "fleet.yaml"), report=lambda line: None)
        embedded.tick()
        assert gc.get_freeze_count() == 0
        own = ControlLoop(str(repo / "fleet.yaml"), report=lambda line: None, settle_heap=True)
        own.tick()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        gc.collect()
        own.tick()
        # once, after the first tick: no second freeze adds this tick's objects (refcounting may
        # free a frozen one, so the count can only go down)
        assert gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
