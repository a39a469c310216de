"""The delivery pull requests (docs/delivery.md "Pull requests"), opened or updated through the
real `gh` CLI: the target's (into `pullRequest.base`), with the review packets of the
delivered agents as its body, and with `perAgent` one per agent branch into the target, with
that agent's packet as its body (closed with a comment once a squash or rebase delivered it).

Only `gh api` (GitHub's REST API) is used: it needs no git remote that points at the host,
works against GitHub Enterprise hosts (GH_HOST, GH_ENTERPRISE_TOKEN) and takes the body
as a field, so a scripted API on 127.0.0.1 can stand in for GitHub in tests. One open pull
request per (head, base): listed first, then PATCHed, else POSTed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from ..errors import FleetError
from ..observe.review import review_packet
from ..plan.review import pull_request_body
from ..store.records import now_iso

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..spec.desired import DesiredAgent
    from ..spec.loader import LoadedFleet
    from ..spec.models import PullRequest
    from ..store.records import StateStore

_TIMEOUT = 120.0


def _gh(*args: str, fields: dict[str, str] | None = None, typed: dict[str, str] | None = None) -> Any:
    gh = shutil.which("gh")
    if gh is None:
        raise FleetError("delivery.pullRequest needs the GitHub CLI `gh`, which is not on PATH",
                         hint="install it (Debian: apt-get install gh) and log in (`gh auth login`, or GH_TOKEN)")
    argv = [gh, "api", *args]
    for key, value in (fields or {}).items():
        argv += ["-f", f"{key}={value}"]
    for key, value in (typed or {}).items():  # -F: true/false/numbers as JSON values
        argv += ["-F", f"{key}={value}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FleetError(f"gh api {args[0] if args else ''} timed out after {_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        raise FleetError(f"gh api {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}",
                         hint="check `gh auth status` (GH_HOST, GH_TOKEN / GH_ENTERPRISE_TOKEN) and "
                              "delivery.pullRequest.repo")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def _upsert(pr: PullRequest, head: str, base: str, title: str, body: str) -> tuple[int | None, str]:
    """Update the open pull request head -> base (title, body), or open one: (number, what was done)."""
    owner = pr.repo.split("/", 1)[0]
    found = _gh(f"repos/{pr.repo}/pulls?head={owner}:{head}&base={base}&state=open", "--method", "GET")
    if isinstance(found, list) and found:
        number = found[0]["number"]
        _gh(f"repos/{pr.repo}/pulls/{number}", "--method", "PATCH", fields={"title": title, "body": body})
        return number, f"updated pull request #{number}"
    made = _gh(f"repos/{pr.repo}/pulls", "--method", "POST",
               fields={"title": title, "head": head, "base": base, "body": body},
               typed={"draft": "true" if pr.draft else "false"})
    number = made["number"] if isinstance(made, dict) else None
    return number, f"opened pull request #{number}"


def agent_title(fleet: str, agent: str) -> str:
    return f"fleet {fleet}: {agent}"


def open_or_update_agent(loaded: LoadedFleet, store: StateStore, pr: PullRequest, agent: str, branch: str,
                         into: str, ref: str) -> tuple[int | None, str]:
    """The agent's own pull request, branch -> target, with its review packet as the body
    (`ref`: where this repository has the branch, the engine's `branch_ref`)."""
    from ..observe.gitrepo import GitRepo
    from ..plan.review import MARKER, packet_markdown

    packet = review_packet(loaded, GitRepo(loaded.repo), store, agent, against=into, ref=ref)
    body = MARKER + "\n" + (packet_markdown(packet) if packet is not None else f"`{agent}`\n")
    return _upsert(pr, branch, into, agent_title(loaded.name, agent), body)


def close_agent(pr: PullRequest, number: int, comment: str) -> None:
    """Say why on the pull request, then close it (a squash or rebase delivery GitHub cannot see)."""
    _gh(f"repos/{pr.repo}/issues/{number}/comments", "--method", "POST", fields={"body": comment})
    _gh(f"repos/{pr.repo}/pulls/{number}", "--method", "PATCH", fields={"state": "closed"})


def open_or_update(loaded: LoadedFleet, store: StateStore, pr: PullRequest, into: str,
                   branch_ref: Callable[[DesiredAgent], str] | None = None) -> str:
    """The target's pull request into `pr.base`; `branch_ref`: the engine's, for the packets."""
    from ..observe.gitrepo import GitRepo
    from .queue import load_state, save_state

    assert pr.base is not None  # the plan asks for the target's pull request only with a base
    repo = GitRepo(loaded.repo)
    delivered = [r.agent for r in store.all().values() if r.delivery.get("state") == "Delivered"]
    def ref(name: str) -> str | None:
        agent = loaded.agent(name)
        return branch_ref(agent) if branch_ref is not None and agent is not None else None

    packets = [p for name in sorted(delivered)
               if (p := review_packet(loaded, repo, store, name, against=pr.base, ref=ref(name))) is not None]
    body = pull_request_body(loaded.name, into, packets)
    number, what = _upsert(pr, into, pr.base, pr.title, body)
    state = load_state(store.home, loaded.name)
    state["pullRequest"] = {"number": number, "repo": pr.repo, "at": now_iso(), "agents": sorted(delivered)}
    save_state(store.home, loaded.name, state)
    return what
