"""What an operator asks of one agent from the dashboard: stop, restart, resume with a message.

Each is one reconcile pass (control/converge.py) whose plan is the operator's instead of
the planner's, under the fleet lock like every acting pass, so the loop and an apply see
it as they see any other change:

- stop: the running session is stopped and held (Failed, `StoppedByOperator`): no restart
  policy starts it again until the operator restarts or resumes it, or its spec changes;
- restart: a fresh session of the current spec (the running one is stopped first);
- resume: the last conversation continues with the operator's message (the running
  session is stopped first); only for runtimes that resume, once a run has a session id.

An operator's start is not held back by caps or the budget: they asked for it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FleetError
from ..plan.actions import REPLACE, RESUME, SPAWN, STOP, Action, Plan
from ..runtimes import get_runtime
from ..spec.loader import load_fleet
from .converge import reconcile_once

STOP_ACTION, RESTART_ACTION, RESUME_ACTION = "stop", "restart", "resume"
ACTIONS = (STOP_ACTION, RESTART_ACTION, RESUME_ACTION)
HOLD_REASON = "stopped by an operator from the dashboard; restart or resume it there (or change its spec)"


@dataclass
class Done:
    ok: bool
    message: str


def operate(file: str, agent: str, what: str, *, message: str = "", grace: float = 10.0,
            lock_timeout: float = 30.0) -> Done:
    """Do `what` to `agent` now; FleetError for a request that cannot be done as asked."""
    if what not in ACTIONS:
        raise FleetError(f"unknown action {what!r}", hint=f"one of {', '.join(ACTIONS)}")
    if what == RESUME_ACTION and not message.strip():
        raise FleetError("resume needs a message for the agent", hint="write what it should do next")
    loaded = load_fleet(file)
    desired = loaded.agent(agent)
    if desired is None:
        raise FleetError(f"no agent {agent!r} in fleet {loaded.name}", hint="only declared agents can be operated")
    tier = desired.tier_name

    def planner(observed):  # type: ignore[no-untyped-def]
        obs = observed.agents.get(agent)
        rec = obs.record if obs else None
        running = bool(obs and obs.alive)
        if what == STOP_ACTION:
            if not running or rec is None:
                raise FleetError(f"{agent} has no running session to stop", hint="it shows its phase in status")
            return Plan(loaded.name, (Action(STOP, agent, "stop requested from the dashboard", tier,
                                             {"hold": HOLD_REASON, "pid": rec.pid}),))
        if what == RESTART_ACTION:
            kind = REPLACE if running else SPAWN
            details = {"pid": rec.pid} if running and rec else {}
            return Plan(loaded.name, (Action(kind, agent, "restart requested from the dashboard", tier, details),))
        if obs is None or obs.worktree is None or rec is None or not rec.session_id:
            raise FleetError(f"{agent} has no conversation to resume yet", hint="restart it instead")
        if not get_runtime(desired.tier.runtime).can_resume:
            raise FleetError(f"runtime {desired.tier.runtime} cannot resume a conversation",
                             hint="restart it instead")
        steps = [Action(STOP, agent, "stopped to resume with the operator's message", tier,
                        {"pid": rec.pid})] if running else []
        steps.append(Action(RESUME, agent, "resume requested from the dashboard", tier, {"message": message}))
        return Plan(loaded.name, tuple(steps))

    result = reconcile_once(loaded, planner=planner, lock_timeout=lock_timeout, grace=grace,
                            command=f"fleet ui ({what} {agent})")
    failed = [o for o in result.outcomes if not o.ok]
    if failed:
        return Done(False, "; ".join(o.message for o in failed))
    return Done(True, "; ".join(f"{o.action.kind}: {o.message}" for o in result.outcomes))
