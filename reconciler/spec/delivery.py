"""Checks of `spec.delivery` and the agents' `deliver`/`paths` (docs/delivery.md), each tied to its key."""
from __future__ import annotations

import os
from collections.abc import Mapping

from .models import Fleet
from .names import ref_problem
from .positions import Loc

Issue = tuple[Loc, str, str | None]


def check_delivery(fleet: Fleet) -> list[Issue]:
    spec, delivery = fleet.spec, fleet.spec.delivery
    issues: list[Issue] = []
    for index, agent in enumerate(spec.agents):
        for i, glob in enumerate(agent.paths):
            if os.path.isabs(glob) or os.path.normpath(glob).split(os.sep)[0] == "..":
                issues.append((("spec", "agents", index, "paths", i), f"{glob!r} is not inside the repo",
                               "paths are globs relative to the repo root, e.g. src/api/**"))
    if delivery is None:
        return issues
    at = ("spec", "delivery")
    if (why := ref_problem(delivery.into)) is not None:
        issues.append(((*at, "into"), f"invalid target branch: {why}", "name a branch, e.g. integration"))
    elif delivery.into.startswith(fleet.branch_prefix):
        issues.append(((*at, "into"), f"{delivery.into!r} is inside the agents' branch prefix "
                       f"{fleet.branch_prefix!r}", "pick a branch the fleet does not create for agents"))
    for i, gate in enumerate(delivery.gates):
        if gate not in spec.gates:
            issues.append(((*at, "gates", i), f"unknown gate {gate!r}", _known(spec.gates)))
    if not delivery.gates and not delivery.ungated:
        # the queue's verdict is its gates: an empty list must not read as "passed"
        issues.append(((*at, "gates"), "delivery needs gates to run on the merged result",
                       "name gates of spec.gates (e.g. gates: [tests]), or set ungated: true to deliver "
                       "without testing the merged result"))
    if delivery.gates and delivery.ungated:
        issues.append(((*at, "ungated"), "ungated: true contradicts the gates listed",
                       "remove ungated, or the gates"))
    if delivery.lock is not None and delivery.lock not in spec.locks:
        issues.append(((*at, "lock"), f"unknown lock {delivery.lock!r}",
                       f"declared locks: {', '.join(spec.locks) or '(none)'}; declare it under spec.locks"))
    if delivery.pullRequest is not None and delivery.push is None:
        issues.append(((*at, "pullRequest"), "a pull request needs the target pushed",
                       "add push: {remote: origin}"))
    pr = delivery.pullRequest
    if pr is not None and pr.base is None and not pr.perAgent:
        issues.append(((*at, "pullRequest"), "pullRequest opens nothing: it has no base and perAgent is false",
                       "set base: main (a pull request from the target into main), or perAgent: true"))
    if pr is not None and pr.base is not None and pr.base == delivery.into:
        issues.append(((*at, "pullRequest", "base"), f"a pull request from {delivery.into} into itself",
                       "name the branch the target merges into (e.g. main), or drop base and use perAgent"))
    if spec.placement.engine == "ray" and delivery.push is None:
        # the controller integrates in its own checkout; the result must reach the remote the nodes use
        issues.append(((*at, "push"), "delivery with placement.engine ray needs the target pushed",
                       "add push: {remote: origin} (a remote of spec.repo that is spec.remote)"))
    return issues


def _known(declared: Mapping[str, object]) -> str:
    return f"declared gates: {', '.join(declared) or '(none)'}; declare it under spec.gates"
