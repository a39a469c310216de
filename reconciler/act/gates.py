"""Running an agent's quality gates in its worktree, as the reconciler (never the agent) sees them."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..observe.gittree import clean_env
from ..spec.desired import DesiredAgent
from ..spec.durations import parse_duration
from ..spec.models import Gate
from ..store.records import FAILED, SUCCEEDED, SessionRecord

_TAIL_LINES = 40
GATE_MARKER = "--- fleet gate "  # before each gate run's output in the session log


@dataclass(frozen=True)
class GateResult:
    passed: bool
    exit_code: int | None  # None: timed out
    output: str
    seconds: float

    @property
    def tail(self) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-_TAIL_LINES:])

    @property
    def summary(self) -> str:
        last = next((line for line in reversed(self.output.splitlines()) if line.strip()), "")
        how = "timed out" if self.exit_code is None else f"exit {self.exit_code}"
        return f"{how}; {last[:200]}" if last else how


def run_gate(name: str, gate: Gate, agent: DesiredAgent, *, log: Path) -> GateResult:
    """`sh -c RUN` in the worktree with the gate's timeout; output appended to the session log."""
    # without GIT_DIR & co (a git hook's): the gate's git must see the tree it runs in
    env = {**clean_env(), "FLEET_AGENT": agent.name, "FLEET_BRANCH": agent.branch, "FLEET_GATE": name}
    start = time.monotonic()
    proc = subprocess.Popen(["sh", "-c", gate.run], cwd=agent.worktree, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=parse_duration(gate.timeout))
        result = GateResult(proc.returncode == 0, proc.returncode, out, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        # the whole group: a test runner's children would otherwise keep the pipe open
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        result = GateResult(False, None, f"{out}\n(gate timed out after {gate.timeout})", time.monotonic() - start)
    with log.open("a", encoding="utf-8") as f:
        verdict = "passed" if result.passed else "FAILED"
        f.write(f"{GATE_MARKER}{name}: {gate.run!r} {verdict} ({result.summary}, {result.seconds:.1f}s)\n")
        f.write(result.output if result.output.endswith("\n") or not result.output else result.output + "\n")
    return result


def gate_feedback(name: str, result: GateResult) -> str:
    """The message a resumed session gets, like a hook's exit code 2 feeding stderr back."""
    return (f"The quality gate `{name}` failed ({result.summary}). Its output:\n\n{result.tail}\n\n"
            "Fix the cause, commit, and finish.")


@dataclass(frozen=True)
class GateVerdict:
    message: str
    feed_back: bool  # a gate failed below its maxAttempts: resume the session with its output
    passed: bool = False  # every gate passed; False: one failed (fed back, or given up)


def record_gates(rec: SessionRecord, agent: DesiredAgent,
                 run_one: Callable[[str, Gate], GateResult]) -> GateVerdict:
    """Run the agent's gates in order until one fails and fold the outcome into `rec`
    (phase, failure counts, conditions, feedback). The caller saves the record."""
    for name, gate in agent.gates.items():
        result = run_one(name, gate)
        if result.passed:
            continue
        rec.gates_pending = False
        rec.gate_failures[name] = rec.gate_failures.get(name, 0) + 1
        rec.last_gate = {"name": name, "exit_code": result.exit_code, "output": result.tail}
        failures = rec.gate_failures[name]
        rec.phase = FAILED
        if failures >= gate.maxAttempts:
            rec.gates_exhausted, rec.gate_feedback = True, None
            rec.reason = f"gate {name} failed {failures}/{gate.maxAttempts} times: {result.summary}"
            rec.set_condition("GatesPassed", "False", "GatesFailed", rec.reason)
            rec.set_condition("Ready", "False", "GatesFailed", rec.reason)
            return GateVerdict(rec.reason, feed_back=False)
        rec.gate_feedback = gate_feedback(name, result)
        rec.reason = f"gate {name} failed ({failures}/{gate.maxAttempts}): {result.summary}"
        rec.set_condition("GatesPassed", "False", "GateFailed", rec.reason)
        rec.set_condition("Ready", "False", "GateFailed", rec.reason)
        return GateVerdict(rec.reason, feed_back=True)
    rec.phase, rec.gates_pending, rec.gate_feedback, rec.reason = SUCCEEDED, False, None, None
    rec.set_condition("GatesPassed", "True", "GatesPassed", f"passed: {', '.join(agent.gates)}")
    rec.set_condition("Ready", "True", "Completed", "session exited 0 and its gates passed")
    return GateVerdict(f"gates passed: {', '.join(agent.gates)}", feed_back=False, passed=True)
