"""The merge queue's steps, as the executor runs them (docs/delivery.md): `merge`, `deliver`
and `push` actions of plan/delivery.py, with the records kept the way every step keeps them,
intent first.

A `merge` re-checks live (the agent's branch still at the planned tip, the agent not running),
integrates in the scratch tree (act/delivery.py), runs the delivery gates there under the
build lock, records the intent (`delivery.pending`: the result and the target it was made on),
then moves the target by compare-and-swap, and only then records Delivered. A crash anywhere
leaves either the target unmoved (the intent is overwritten by the next try) or moved to a
gated commit with the intent saying whose it is (the planner sees it landed: `deliver landed`).

With `batch > 1` the first action of a batch integrates all of it and gates once; a failing
batch is bisected (each half landed on its own, down to the one that fails), and the batch's
other actions find their verdict already recorded.

Failing gates are run once more, on a clean checkout of the same result, before anyone is
blamed: a batch before it is bisected, a single member before IntegrationFailed (a half of
a bisection is split further without a retry: its failure was seen twice already, and each
single member it comes down to gets its own retry). A flaky gate then costs one run, not an
innocent agent's verdict; the retry is recorded in the condition and counted in metrics.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .. import telemetry
from ..act import delivery as git_delivery
from ..act.failpoints import failpoint
from ..act.gates import GateResult, run_gate
from ..errors import FleetError
from ..locking.slots import try_acquire
from ..observe.delivery import delivered_ref
from ..observe.gittree import last_line
from ..spec.durations import parse_duration
from ..store.records import DELIVERED, FAILED, SUCCEEDED, SessionRecord, now_iso, write_json_atomic

if TYPE_CHECKING:
    from pathlib import Path

    from ..plan.actions import Action
    from ..spec.desired import DesiredAgent
    from ..spec.loader import LoadedFleet
    from ..spec.models import Delivery
    from .base import Engine

_VERDICT_CONDITIONS = ("Conflicted", "IntegrationFailed", "OutOfScope", "NothingToDeliver", "Rejected")


@dataclass
class _Member:
    agent: DesiredAgent
    sha: str
    rec: SessionRecord
    kept: str | None  # its delivered ref (refs/fleet/delivered/...) as read before the delivery began


class Queue:
    """Runs one plan's queue steps against the engine's repository and state store."""

    def __init__(self, loaded: LoadedFleet, engine: Engine) -> None:
        self.loaded, self.engine = loaded, engine
        spec = loaded.fleet.spec
        assert spec.delivery is not None
        self.delivery: Delivery = spec.delivery
        self.repo, self.store = engine.repo, engine.store
        self._tree: Path | None = None

    # -- the actions -----------------------------------------------------------------------

    def merge(self, action: Action) -> str:
        if action.details.get("batchOf"):
            rec = self.store.load(action.agent)
            if rec is not None and (rec.phase == DELIVERED or rec.delivery.get("sha") == action.details["sha"]):
                return f"done with the batch of {action.details['batchOf']}: {rec.delivery.get('state')}"
        names = action.details.get("batch") or [action.agent]
        members = [m for name in names if (m := self._member(name, action if name == action.agent else None))]
        if not members:
            return "nothing to merge now (its branch moved, or it runs again); the next pass decides"
        landed = self._land(members)
        if len(names) == 1:  # the outcome line names the agent already
            landed = [line.removeprefix(f"{action.agent}: ") for line in landed]
        return "; ".join(landed)

    def deliver(self, action: Action) -> str:
        """A verdict the planner reached without merging."""
        agent = self.loaded.agent(action.agent)
        assert agent is not None
        if action.details["step"] == "pr-close":
            return self._close_pull_request(action)
        rec = self._record(action.agent)
        step, sha = action.details["step"], action.details["sha"]
        if git_delivery.tip(self.repo, self.engine.branch_ref(agent)) != sha:
            return "its branch moved since the plan; the next pass decides"
        if step in ("landed", "in-target"):
            moved = self._delivered(rec, agent, sha, action.details.get("result") or sha, kept=self._kept(agent))
            return moved or f"Delivered: in {self.delivery.into}"
        if step == "nothing":
            self._verdict(rec, agent, "NothingToDeliver", sha, message=f"the branch changes no file against "
                          f"{self.delivery.into}; nothing is delivered", feedback=None)
            return "NothingToDeliver"
        files = list(action.details.get("files") or [])
        paths = ", ".join(action.details.get("paths") or [])
        feedback = (f"Your run changed files outside your declared paths ({paths}): {', '.join(files)}. "
                    f"The delivery queue does not take it while it does. Undo those changes (or, if they are "
                    f"needed, say so in your final message), commit, and finish.")
        self._verdict(rec, agent, "OutOfScope", sha, files=files,
                      message=f"changed files outside paths ({paths}): {', '.join(files)}", feedback=feedback)
        return f"OutOfScope: {', '.join(files)}" + ("; fed back" if rec.gate_feedback else "")

    def push(self, action: Action) -> str:
        if action.details.get("pullRequest") == "agent":
            return self._agent_pull_request(action)
        remote, into = action.details["remote"], action.details["into"]
        state = load_state(self.store.home, self.loaded.name)
        pushed = git_delivery.push(self.repo, remote, into)
        state["push"] = {"ok": pushed.ok, "at": now_iso(), "remote": remote,
                         "sha": git_delivery.tip(self.repo, f"refs/heads/{into}"), "message": pushed.words}
        save_state(self.store.home, self.loaded.name, state)
        if pushed.rejected:  # a condition of the target, never a force-push
            raise FleetError(f"push of {into} to {remote} was rejected: {last_line(pushed.words)}",
                             hint=f"{remote}/{into} has commits {into} lacks; fleet never force-pushes: "
                                  f"bring them into {into} or fix the remote, then apply again")
        if not pushed.ok:  # credentials, the network, no answer: the next pass tries again
            # what to do is in the message: a failed action's outcome shows the message only
            raise FleetError(f"push of {into} to {remote} failed: {last_line(pushed.words)}; {pushed.hint}")
        failpoint("deliver:after-push")
        message = f"pushed {into} to {remote}"
        if action.details.get("pullRequest") and self.delivery.pullRequest is not None:
            from .pullrequest import open_or_update

            message += "; " + open_or_update(self.loaded, self.store, self.delivery.pullRequest, into,
                                             self.engine.branch_ref)
        return message

    def _agent_pull_request(self, action: Action) -> str:
        """perAgent: push the agent's branch (never forced), then open or update its pull request
        into the target with its review packet; the pull request's number and the tip it is for
        are kept in the agent's record (`delivery.pullRequest`)."""
        from .pullrequest import open_or_update_agent

        pr = self.delivery.pullRequest
        assert pr is not None
        name, branch, remote, sha = (action.agent, action.details["branch"], action.details["remote"],
                                     action.details["sha"])
        agent = self.loaded.agent(name)
        if agent is None:
            return "no longer declared; the next pass decides"
        ref = self.engine.branch_ref(agent)  # where this repository has the branch (ray: the engine's copy)
        if git_delivery.tip(self.repo, ref) != sha:
            return "its branch moved since the plan; the next pass decides"
        pushed = git_delivery.push(self.repo, remote, branch, src=ref)
        if not pushed.ok and not pushed.rejected:  # credentials, the network, no answer: tried again next pass
            raise FleetError(f"push of {branch} to {remote} failed: {last_line(pushed.words)}; {pushed.hint}")
        if not pushed.ok:  # e.g. the agent rewrote its branch (a rebase): a condition, never a force-push
            rec = self._record(name)
            last = last_line(pushed.words)
            rec.set_condition("PullRequest", "False", "PushRejected", f"push of {branch} to {remote}: {last}")
            self.store.save(rec)
            raise FleetError(f"push of {branch} to {remote} was rejected: {last}",
                             hint=f"{remote}/{branch} has commits the branch lacks (was it rewritten?); fleet never "
                                  f"force-pushes: merge {remote}/{branch} into it, or delete the remote branch")
        number, what = open_or_update_agent(self.loaded, self.store, pr, name, branch, self.delivery.into, ref)
        rec = self._record(name)
        rec.delivery = {**rec.delivery, "pullRequest": {"number": number, "sha": sha, "state": "open",
                                                        "repo": pr.repo, "at": now_iso()}}
        rec.set_condition("PullRequest", "True", "Open", f"#{number} {branch} -> {self.delivery.into} on {pr.repo}")
        self.store.save(rec)
        return f"pushed {branch} to {remote}; {what}"

    def _close_pull_request(self, action: Action) -> str:
        from .pullrequest import close_agent

        pr = self.delivery.pullRequest
        assert pr is not None
        rec = self._record(action.agent)
        number, result = int(action.details["number"]), str(action.details.get("result") or "")
        comment = (f"Delivered by fleet `{self.loaded.name}` into `{self.delivery.into}` at `{result[:12]}` "
                   f"(strategy `{self.delivery.strategy}`: its commits are in `{self.delivery.into}` as new "
                   f"commits, so this pull request cannot show as merged). Closing it.")
        close_agent(pr, number, comment)
        rec.delivery = {**rec.delivery, "pullRequest": {**(rec.delivery.get("pullRequest") or {}),
                                                        "state": "closed", "closedAt": now_iso()}}
        rec.set_condition("PullRequest", "False", "Closed", f"#{number} closed: delivered into {self.delivery.into}")
        self.store.save(rec)
        return f"closed pull request #{number} with a comment"

    # -- landing ---------------------------------------------------------------------------

    def _member(self, name: str, action: Action | None) -> _Member | None:
        agent = self.loaded.agent(name)
        rec = self.store.load(name)
        if agent is None or rec is None or rec.phase != SUCCEEDED:
            return None
        sha = git_delivery.tip(self.repo, self.engine.branch_ref(agent))
        if sha is None or (action is not None and sha != action.details["sha"]):
            return None  # it moved since the plan: the next pass sees the new tip
        return _Member(agent, sha, rec, self._kept(agent))

    def _land(self, members: list[_Member], *, bisected: bool = False) -> list[str]:
        """Land `members` onto the target's live tip; bisect when their gates fail together
        (`bisected`: this is a half of a batch whose failure was already retried)."""
        into = self.delivery.into
        old = git_delivery.tip(self.repo, f"refs/heads/{into}")
        onto = old or git_delivery.tip(self.repo, self.loaded.fleet.spec.base)
        if onto is None:
            raise FleetError(f"neither the target {into} nor the base {self.loaded.fleet.spec.base} exists")
        tree = self._scratch(onto)
        git_delivery.reset_to(tree, onto)
        said: list[str] = []
        merged: list[_Member] = []
        head = onto
        for m in members:
            if git_delivery.contains(self.repo, head, m.sha):
                moved = self._delivered(m.rec, m.agent, m.sha, head, kept=m.kept)
                said.append(f"{m.agent.name}: {moved or f'Delivered (already in {into})'}")
                continue
            done = git_delivery.integrate(tree, onto=head, sha=m.sha, strategy=self.delivery.strategy,
                                          message=self._message(m))
            if done.conflicts:
                self._conflicted(m, done.conflicts, head)
                said.append(f"{m.agent.name}: Conflicted in {', '.join(done.conflicts)}")
            elif done.error is not None:
                raise FleetError(f"cannot integrate {m.agent.branch}: {done.error}")
            elif done.empty:
                self._verdict(m.rec, m.agent, "NothingToDeliver", m.sha, feedback=None,
                              message=f"integrated onto {into} it changes nothing; not delivered")
                said.append(f"{m.agent.name}: NothingToDeliver")
            else:
                assert done.commit is not None
                head = done.commit
                merged.append(m)
        if not merged:
            return said
        failpoint("deliver:after-integrate")
        failed = self._gates(tree, merged[0].agent)
        retried: tuple[str, GateResult] | None = None
        if failed is not None and not (bisected and len(merged) > 1):
            # once more on a clean checkout of the same result: a flake must not blame anyone
            retried = failed
            git_delivery.reset_to(tree, head)
            failed = self._gates(tree, merged[0].agent)
            telemetry.delivery_retry(self.loaded, "failed" if failed is not None else "flaky")
        if failed is not None and len(merged) > 1:
            # bisect: each half on its own (landing the good one), down to the member that fails
            half = len(merged) // 2
            return (said + self._land(merged[:half], bisected=True)
                    + self._land(merged[half:], bisected=True))
        if failed is not None:
            name, result = failed
            self._integration_failed(merged[0], name, result, onto, retried=retried is not None)
            again = ", failed again on its retry" if retried is not None else ""
            return [*said, f"{merged[0].agent.name}: IntegrationFailed (gate {name}: {result.summary}{again}); "
                           f"{into} not moved"]
        flake = None
        if retried is not None:
            flake = {"gate": retried[0], "summary": retried[1].summary, "at": now_iso()}
        failpoint("deliver:after-gates")
        for m in merged:  # the intent, before the target moves: a crash after it is recognised
            m.rec.delivery = {**m.rec.delivery, "pending": {"sha": m.sha, "result": head, "old": old,
                                                            "at": now_iso()}}
            self.store.save(m.rec)
        refused = git_delivery.move_target(self.repo, into, head, old,
                                           why=f"fleet {self.loaded.name}: deliver "
                                               + ", ".join(m.agent.name for m in merged))
        if refused is not None:
            return [*said, f"{into} moved while gating ({refused}); the next pass integrates onto its new tip"]
        for m in merged:
            if moved := self._delivered(m.rec, m.agent, m.sha, head, kept=m.kept, flake=flake):
                said.append(f"{m.agent.name}: {moved}")  # landed; recorded by the next pass (its intent is kept)
                continue
            said.append(f"{m.agent.name}: Delivered into {into} at {head[:12]}"
                        + (f" (gate {flake['gate']} failed once, passed on its retry)" if flake else ""))
        failpoint("deliver:after-record")
        return said

    def _scratch(self, at: str) -> Path:
        if self._tree is None:
            self._tree = git_delivery.ensure_scratch(self.repo, self.loaded.worktrees_root, self.loaded.name, at)
        return self._tree

    def _message(self, m: _Member) -> str:
        return (f"fleet: deliver {m.agent.name} ({m.agent.branch} {m.sha[:12]}) into {self.delivery.into}\n\n"
                f"Fleet-Agent: {m.agent.name}\nFleet-Commit: {m.sha}\n")

    def _gates(self, tree: Path, agent: DesiredAgent) -> tuple[str, GateResult] | None:
        """The delivery gates on the merged result, in the scratch tree, under the build lock;
        the first that fails, or None when all passed (an empty list only with ungated: true)."""
        gates = {g: self.loaded.fleet.spec.gates[g] for g in self.delivery.gates}
        if not gates:
            return None
        log = self.store.log_dir / f"{self.loaded.name}.delivery.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        gated = replace(agent, worktree=tree)
        longest = max(parse_duration(g.timeout) for g in gates.values())
        with self._build_lock(longest):
            for name, gate in gates.items():
                result = run_gate(name, gate, gated, log=log)
                if not result.passed:
                    return name, result
        return None

    @contextlib.contextmanager
    def _build_lock(self, wait: float) -> Iterator[None]:
        locks = self.loaded.fleet.spec.locks
        name = self.delivery.lock or ("build" if "build" in locks else None)
        if name is None:
            yield
            return
        lock_dir = self.store.home / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while (held := try_acquire(lock_dir, name, locks[name].slots)) is None:
            if time.monotonic() > deadline:
                raise FleetError(f"lock {name} stayed busy for {wait:g}s; delivery gates not run",
                                 hint="the next pass tries again")
            time.sleep(0.2)
        try:
            held.record(["fleet", "deliver", self.loaded.name])
            yield
        finally:
            held.release()

    # -- records ---------------------------------------------------------------------------

    def _record(self, name: str) -> SessionRecord:
        rec = self.store.load(name)
        if rec is None:
            raise FleetError(f"agent {name} has no record any more; the next pass decides")
        return rec

    def _kept(self, agent: DesiredAgent) -> str | None:
        return git_delivery.tip(self.repo, delivered_ref(self.loaded.name, agent.name))

    def _delivered(self, rec: SessionRecord, agent: DesiredAgent, sha: str, result: str, *, kept: str | None,
                   flake: dict[str, str] | None = None) -> str | None:
        """Record `agent` Delivered (None), unless its delivered ref moved under us (what happened:
        nothing recorded, the next pass does it)."""
        if self.delivery.strategy != "merge" or not git_delivery.contains(self.repo, result, sha):
            moved = git_delivery.keep_delivered(self.repo, delivered_ref(self.loaded.name, agent.name), sha, kept,
                                                agent=agent.name)
            if moved is not None:
                return moved
        rec.phase, rec.reason = DELIVERED, f"delivered into {self.delivery.into} at {result[:12]}"
        if flake is not None:  # said, so a flaky gate is seen and fixed rather than forgotten
            rec.reason += f" (delivery gate {flake['gate']} failed once: {flake['summary']}; passed on its retry)"
        rec.delivery = {k: v for k, v in rec.delivery.items() if k in ("approved", "failures", "spec", "pullRequest")}
        rec.delivery.update({"state": "Delivered", "sha": sha, "result": result, "at": now_iso(),
                             "into": self.delivery.into})
        if flake is not None:
            rec.delivery["retried"] = flake
        rec.set_condition("Delivered", "True", "Merged", rec.reason)
        for c in _VERDICT_CONDITIONS:
            rec.clear_condition(c, "Delivered")
        self.store.save(rec)
        telemetry.delivery(self.loaded, agent.name, "Delivered", _since(rec.finished_at))
        return None

    def _conflicted(self, m: _Member, files: list[str], onto: str) -> None:
        into = self.delivery.into
        pr = self.delivery.pullRequest
        # with per-agent pull requests the branch is on the remote: a rebase would rewrite it,
        # and fleet never force-pushes, so the agent is told to merge
        how = (f"`git merge {into}` (not a rebase: your branch is pushed for its pull request)"
               if pr is not None and pr.perAgent else f"`git rebase {into}`, or `git merge {into}`")
        feedback = (f"Your branch {m.agent.branch} conflicts with the delivery target {into} (at {onto[:12]}) "
                    f"in: {', '.join(files)}. Bring {into} into your branch in your worktree ({how}), "
                    f"resolve the conflicts in those files keeping both "
                    f"changes' intent, run the tests, commit, and finish. Do not change {into} itself.")
        self._verdict(m.rec, m.agent, "Conflicted", m.sha, files=files, feedback=feedback,
                      message=f"conflicts with {into} at {onto[:12]} in {', '.join(files)}")

    def _integration_failed(self, m: _Member, gate: str, result: GateResult, onto: str, *,
                            retried: bool) -> None:
        into = self.delivery.into
        twice = " (failed twice: retried once to rule out a flaky gate)" if retried else ""
        feedback = (f"Your branch {m.agent.branch} merges cleanly into the delivery target {into} (at "
                    f"{onto[:12]}), but the delivery gate `{gate}` failed on the merged result "
                    f"({result.summary}). Its output:\n\n{result.tail}\n\nBring {into} into your branch (`git "
                    f"merge {into}`), fix the cause, run the tests, commit, and finish.")
        self._verdict(m.rec, m.agent, "IntegrationFailed", m.sha, feedback=feedback, output=result.tail,
                      message=f"gate {gate} failed on the result merged with {into}: {result.summary}{twice}")

    def _verdict(self, rec: SessionRecord, agent: DesiredAgent, state: str, sha: str, *, message: str,
                 feedback: str | None, files: list[str] | None = None, output: str | None = None) -> None:
        """Record a verdict on `sha`; with onConflict: resume (and attempts left) feed it back:
        the agent is Failed with the feedback, so the planner resumes its session."""
        failures = int(rec.delivery.get("failures", 0)) if rec.delivery.get("spec") == agent.spec_hash else 0
        if feedback is not None:
            failures += 1
        rec.delivery = {k: v for k, v in rec.delivery.items() if k in ("approved", "pullRequest")}
        rec.delivery.update({"state": state, "sha": sha, "at": now_iso(), "files": files or [],
                             "output": output, "failures": failures, "spec": agent.spec_hash,
                             "into": self.delivery.into})
        rec.set_condition(state, "True", state, message)
        rec.set_condition("Delivered", "False", state, message)
        telemetry.delivery(self.loaded, agent.name, state)
        resume = (feedback is not None and self.delivery.onConflict == "resume"
                  and failures <= self.delivery.maxAttempts and bool(rec.session_id))
        if resume:
            rec.phase, rec.gate_feedback = FAILED, feedback
            rec.reason = f"{state}: {message}; resuming the session with it"
        else:
            left = "" if feedback is None or self.delivery.onConflict == "block" else \
                f" ({failures - 1} fed back already, maxAttempts {self.delivery.maxAttempts})"
            rec.reason = f"{state}: {message}; not delivered{left}"
        self.store.save(rec)


def _since(when: str | None) -> float | None:
    from datetime import datetime

    from ..store import clock

    if not when:
        return None
    try:
        return (clock.now() - datetime.fromisoformat(when)).total_seconds()
    except ValueError:
        return None


# -- the fleet's own delivery state (push, pull request): <home>/delivery/<fleet>.json ----------


def state_path(home: Path, fleet: str) -> Path:
    return home / "delivery" / f"{fleet}.json"


def load_state(home: Path, fleet: str) -> dict[str, object]:
    import json

    try:
        data = json.loads(state_path(home, fleet).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(home: Path, fleet: str, state: dict[str, object]) -> None:
    write_json_atomic(state_path(home, fleet), state)
