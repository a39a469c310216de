"""Cross-field checks and forEach expansion, each problem tied to the key at fault."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from . import globs
from .delivery import check_delivery
from .desired import DEFAULT_STALL_AFTER, DesiredAgent
from .durations import parse_duration
from .limits import MAX_AGENTS, MAX_EXPANDED_BYTES
from .models import Agent, Fleet, FleetSpec
from .names import name_problem, ref_problem
from .positions import Loc

Issue = tuple[Loc, str, str | None]  # (path in the document, message, hint)


def check_fleet(fleet: Fleet, repo: Path, *, files: Sequence[str] | None = None, main: Path | None = None,
                walks: dict[str, tuple[list[str], list[str]]] | None = None) -> tuple[list[DesiredAgent], list[Issue]]:
    """Check references and names and expand forEach. `files` (repo-relative paths) is what
    globs match instead of the working tree: the tree of another revision. `main`: the
    repository's main checkout, which worktree paths are relative to (default `repo`).
    `walks`, if given, gets what each glob walked in the working tree (LoadCache's key)."""
    issues: list[Issue] = []
    spec = fleet.spec
    prefix = fleet.branch_prefix
    if (why := ref_problem(prefix + "agent")) is not None:
        issues.append((("spec", "worktrees", "branchPrefix"), f"invalid branch prefix: {why}",
                       "use something like fleet/<fleet-name>/"))
    if (why := ref_problem(spec.base)) is not None:
        issues.append((("spec", "base"), f"invalid base ref: {why}", "name a branch, tag or commit"))
    if (why := _escapes(spec.worktrees.root)) is not None:
        issues.append((("spec", "worktrees", "root"), why, "use a path inside the repo, e.g. .fleet/worktrees"))
    for tier_name, tier in spec.tiers.items():
        if tier.runtime == "command" and tier.model is not None:
            issues.append((("spec", "tiers", tier_name, "model"), "runtime `command` takes no model",
                           "remove model, or use a runtime that has models"))
    if (endpoint := spec.telemetry.otlpEndpoint) is not None and not _is_http_url(endpoint):
        issues.append((("spec", "telemetry", "otlpEndpoint"), f"not an http(s) URL: {endpoint!r}",
                       "the OTLP/HTTP base URL of a collector, e.g. http://127.0.0.1:4318 (null = off)"))
    issues += _check_placement(fleet)
    issues += check_delivery(fleet)
    for tier_name in spec.budget.perTier:
        if tier_name not in spec.tiers:
            issues.append((("spec", "budget", "perTier", tier_name), f"unknown tier {tier_name!r}",
                           _known("tiers", spec.tiers)))
    agents: list[DesiredAgent] = []
    seen: dict[str, int] = {}
    expanded = _Expanded()
    root: Path | None = None
    for index, agent in enumerate(spec.agents):
        issues += _check_agent(fleet, index, agent)
        items, glob_issue = _items(agent, repo, files, walks)
        if glob_issue:
            issues.append(((("spec", "agents", index, "forEach", "glob")), *glob_issue))
            continue
        if (why := expanded.add(len(items), _agent_size(agent, spec))) is not None:
            issues.append((("spec", "agents", index, "forEach" if agent.forEach else "name"), why, _EXPANDED_HINT))
            break  # what it expands to is never built
        named = len(issues)
        for item in items:
            name = _expand(agent.name, item, slug=True, is_path=agent.forEach is not None
                           and agent.forEach.glob is not None)
            loc: Loc = ("spec", "agents", index, "name")
            if len(issues) - named >= _ITEM_ISSUES:  # one bad item is as telling as thousands
                issues.append((loc, "and more agent names like these", None))
                break
            if (why := name_problem(name)) is not None:
                issues.append((loc, f"agent name {why}", "agent names become directories and branch names"))
                continue
            if name in seen:
                issues.append((loc, f"duplicate agent name {name!r} (also agents[{seen[name]}])",
                               "agent names must be unique after forEach expansion"))
                continue
            seen[name] = index
            if agent.tier in spec.tiers and not issues:
                if root is None:  # resolved once: a resolve per agent was ~0.1 ms each, 0.1 s at 1,000
                    root = ((main or repo) / spec.worktrees.root).resolve()
                agents.append(_desired(fleet, root, index, agent, name, item))
    return agents, issues


_ITEM_ISSUES = 5
_EXPANDED_HINT = ("fewer agents, or shorter prompts and commands for a forEach: every expanded agent carries "
                  "its own copy (the limits are in docs/fleet-yaml.md, \"Limits\")")


class _Expanded:
    """What forEach (and aliases) expand the agents to, so far: a small file must not make
    millions of agents or gigabytes of prompts (spec/limits.py)."""

    def __init__(self) -> None:
        self.agents = 0
        self.size = 0

    def add(self, count: int, size: int) -> str | None:
        self.agents += count
        self.size += count * size
        if self.agents > MAX_AGENTS:
            return f"the agents expand to more than {MAX_AGENTS} (this one adds {count})"
        if self.size > MAX_EXPANDED_BYTES:
            return (f"the agents expand to more than {MAX_EXPANDED_BYTES >> 20} MiB of prompts, commands and "
                    f"environment (this one adds {count} x {size} bytes)")
        return None


def _agent_size(agent: Agent, spec: FleetSpec) -> int:
    """Bytes one expanded agent carries: what its session spec holds and is hashed from."""
    tier = spec.tiers.get(agent.tier)
    return (len(agent.name) + len(agent.prompt) + sum(len(a) for a in agent.command or ())
            + sum(len(k) + (len(v) if isinstance(v, str) else 0) for k, v in agent.env.items())
            + (sum(len(a) for a in tier.args) + len(tier.model or "") if tier is not None else 0))


def _check_agent(fleet: Fleet, index: int, agent: Agent) -> list[Issue]:
    spec = fleet.spec
    at = ("spec", "agents", index)
    issues: list[Issue] = []
    tier = spec.tiers.get(agent.tier)
    if tier is None:
        issues.append(((*at, "tier"), f"unknown tier {agent.tier!r}", _known("tiers", spec.tiers)))
    for i, gate in enumerate(agent.gates):
        if gate not in spec.gates:
            issues.append(((*at, "gates", i), f"unknown gate {gate!r}", _known("gates", spec.gates)))
    if tier is not None and tier.runtime == "command" and not agent.command:
        issues.append(((*at, "tier"), f"tier {agent.tier!r} uses runtime `command`, so the agent needs `command`",
                       "add command: [program, args...]"))
    if tier is not None and tier.runtime != "command" and agent.command:
        issues.append(((*at, "command"), f"`command` is only for runtime `command` (tier {agent.tier!r} "
                       f"uses {tier.runtime})", "remove command, or use a tier with runtime: command"))
    if tier is not None and tier.runtime != "command" and not agent.prompt.strip():
        issues.append(((*at, "prompt") if "prompt" in agent.model_fields_set else (*at, "name"),
                       f"agent needs a prompt for runtime {tier.runtime}", "add prompt: |"))
    has_item = "{item}" in agent.name
    if agent.forEach is not None and not has_item:
        issues.append(((*at, "name"), "an agent with forEach needs {item} in its name",
                       "e.g. name: audit-{item}, so each expanded agent is unique"))
    if agent.forEach is None and "{" in agent.name:
        issues.append(((*at, "name"), "{item} in a name needs forEach", "add forEach: {items: [...]}"))
    return issues


def _check_placement(fleet: Fleet) -> list[Issue]:
    """A ray fleet has no shared disk: its sessions need a remote to clone and push (docs/scale-out.md)."""
    placement = fleet.spec.placement
    issues: list[Issue] = []
    if placement.engine == "ray" and not fleet.spec.remote:
        issues.append((("spec", "placement", "engine"), "placement.engine ray needs spec.remote",
                       "add remote: a git URL every node can reach (or the name of a remote of spec.repo, "
                       "e.g. origin)"))
    workdir = placement.workdir
    if workdir is not None and not (os.path.isabs(workdir) or workdir.startswith("~")):
        issues.append((("spec", "placement", "workdir"), f"{workdir!r} is relative; it is a directory on each node",
                       "use an absolute path or one under ~, e.g. ~/.cache/fleet/ray"))
    secrets = placement.secretsDir
    if secrets is not None and not (os.path.isabs(secrets) or secrets.startswith("~")):
        issues.append((("spec", "placement", "secretsDir"), f"{secrets!r} is relative; it is a directory on each node",
                       "use an absolute path or one under ~, e.g. /var/run/secrets/fleet"))
    return issues


def _items(agent: Agent, repo: Path, files: Sequence[str] | None = None,
           walks: dict[str, tuple[list[str], list[str]]] | None = None
           ) -> tuple[list[str | None], tuple[str, str] | None]:
    each = agent.forEach
    if each is None:
        return [None], None
    if each.items is not None:
        return list[str | None](each.items), None
    assert each.glob is not None
    if (why := _escapes(each.glob)) is not None:
        return [], (why, "globs are relative to the repo root")
    if files is not None:
        matched = globs.match(each.glob, files)
        return ([], problem) if (problem := _not_text(matched)) else (list[str | None](matched), None)
    matches, escapes = globs.walk(repo, each.glob)  # bounded; never follows a symlinked directory
    if walks is not None:
        walks[each.glob] = (matches, escapes)
    if escapes:
        named = ", ".join(repr(e) for e in escapes[:5]) + (f" and {len(escapes) - 5} more" if len(escapes) > 5 else "")
        what = "a symlink that leads" if len(escapes) == 1 else "symlinks that lead"
        return [], (f"matches {named}: {what} outside the repository",
                    "a glob lists files of the repository only: remove the symlink or narrow the glob")
    if problem := _not_text(matches):
        return [], problem
    return list[str | None](matches), None  # no match is zero agents, like zero replicas: valid


def _not_text(matches: Sequence[str]) -> tuple[str, str] | None:
    """A problem if a match's name is not UTF-8 (Linux allows any bytes; they arrive as lone
    surrogates): an item becomes the agent's prompt, arguments and environment, which hold text,
    and spawning it failed after its worktree was made."""
    odd = [m for m in matches if not _is_text(m)]
    if not odd:
        return None
    named = ", ".join(f"'{os.fsencode(m).decode('utf-8', 'backslashreplace')}'" for m in odd[:5])  # its bytes, as \xff
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    return (f"matches {named}{more}: a file name that is not UTF-8",
            "an item becomes the agent's prompt and arguments, which are text: rename the file or narrow the glob")


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _expand(template: str, item: str | None, *, slug: bool = False, is_path: bool = False) -> str:
    if item is None:
        return template
    return template.replace("{item}", _slug(item, is_path=is_path) if slug else item)


def _slug(item: str, *, is_path: bool) -> str:
    """An item as a name part: glob match 'src/routes/users.py' -> 'src-routes-users';
    listed items keep their dots ('v1.2' -> 'v1.2'), only unsafe characters become '-'."""
    text = str(PurePosixPath(item).with_suffix("")) if is_path and PurePosixPath(item).suffix else item
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text.replace("/", "-")).strip("-.")


def _desired(fleet: Fleet, root: Path, index: int, agent: Agent, name: str, item: str | None) -> DesiredAgent:
    """`root`: the worktrees root, resolved (a symlink there must not move the worktree out of the repo)."""
    spec = fleet.spec
    return DesiredAgent(
        name=name, index=index, item=item, tier_name=agent.tier, tier=spec.tiers[agent.tier],
        prompt=_expand(agent.prompt, item),
        command=tuple(_expand(a, item) for a in agent.command) if agent.command else None,
        gates={g: spec.gates[g] for g in agent.gates}, restart=agent.restart, protect=agent.protect,
        env={k: (_expand(v, item) if isinstance(v, str) else v) for k, v in agent.env.items()},
        base=spec.base, branch=fleet.branch_prefix + name,
        worktree=root / name, locks=tuple(spec.locks),
        timeout=_seconds(agent.timeout or spec.tiers[agent.tier].timeout),
        stall_after=_seconds(agent.stallAfter or spec.tiers[agent.tier].stallAfter) or DEFAULT_STALL_AFTER,
        deliver=agent.deliver, paths=tuple(agent.paths),
    )


def _seconds(duration: str | None) -> float | None:
    return parse_duration(duration) if duration else None


def _is_http_url(text: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _escapes(rel: str) -> str | None:
    if os.path.isabs(rel):
        return f"{rel!r} is absolute; it must be relative to the repo"
    if os.path.normpath(rel).split(os.sep)[0] == "..":
        return f"{rel!r} escapes the repo"
    return None


def _known(what: str, declared: Mapping[str, object]) -> str:
    return f"declared {what}: {', '.join(declared) or '(none)'}; declare it under spec.{what}"
