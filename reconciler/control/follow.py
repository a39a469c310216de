"""Whether an agent whose session has ended has another run coming: what `fleet logs -f` waits for.

Asked of the same observation and plan as `fleet diff` (nothing is written): a gate to run,
a resume with a failed gate's output, a restart after its backoff, a spawn or replace for a
changed spec, or one of those waiting for a free slot or the budget. docs/output.md "fleet logs".
"""
from __future__ import annotations

from ..engines.base import Engine
from ..plan.actions import REPLACE, RESUME, RUN_GATE, SPAWN, WAIT
from ..spec.loader import LoadedFleet
from .converge import preview

NEXT_RUN = frozenset({RUN_GATE, RESUME, SPAWN, REPLACE, WAIT})


def another_run_coming(loaded: LoadedFleet, name: str, engine: Engine) -> bool:
    observed, plan = preview(loaded, targets=[name], engine=engine)
    agent = observed.agents.get(name)
    if agent is not None and agent.alive:
        return True
    return any(a.agent == name and a.kind in NEXT_RUN for a in plan.actions)
