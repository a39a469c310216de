"""Read fleet.yaml with ruamel.yaml and turn every problem into file:line:col + hint.

Parsing, model validation and cross-field checks all report through `Problem`, so a
user sees every error in one run, each pointing at the key or value to fix.
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from ..errors import FleetError, Problem, SpecInvalid
from .desired import DesiredAgent
from .durations import DURATION_PATTERN
from .models import Fleet
from .names import AGENT_NAME_PATTERN, ENV_NAME_PATTERN, ENV_NAME_RULE, NAME_PATTERN, NAME_RULE
from .positions import Loc, locate

_DURATION_RULE = "durations are a number and a unit: 30s, 15m, 1h30m"
# what a pattern means, in words: the message never shows a regex
_PATTERNS: dict[str, tuple[str, str, str, str]] = {  # pattern -> (what it is not, rule, why, unsafe chars)
    NAME_PATTERN: ("a valid name", NAME_RULE, "names become directory and git branch names", r"[^A-Za-z0-9._-]"),
    AGENT_NAME_PATTERN: ("a valid name", NAME_RULE,
                         "agent names become directory and git branch names ({item} is allowed with forEach)",
                         r"[^A-Za-z0-9._{}-]"),
    ENV_NAME_PATTERN: ("a valid environment variable name", ENV_NAME_RULE, "", r"[^A-Za-z0-9_]"),
}


@dataclass(frozen=True)
class LoadedFleet:
    """A validated fleet file: the model, where it lives and its expanded agents."""

    path: Path
    fleet: Fleet
    repo: Path  # absolute: the checkout `spec.repo` names (forEach globs match its files)
    agents: tuple[DesiredAgent, ...]
    raw: Any  # the parsed YAML document, for positions
    # absolute: spec.worktrees.root, resolved from the repository's main checkout, so a fleet
    # file read in an agent's worktree (where `repo: .` is that worktree) names the same trees
    worktrees_root: Path

    @property
    def name(self) -> str:
        return self.fleet.metadata.name

    def agent(self, name: str) -> DesiredAgent | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, DesiredAgent]:
        """Agents by name (looked up per agent per pass: a scan would make a pass O(N^2))."""
        by_name: dict[str, DesiredAgent] = {}
        for agent in self.agents:
            by_name.setdefault(agent.name, agent)
        return by_name


def load_fleet(path: str | Path) -> LoadedFleet:
    """Parse, validate and expand `path`; raises SpecInvalid listing every problem."""
    path = Path(path)
    shown = str(path)
    return _load(_read(path, shown), path=path, shown=shown)


def load_fleet_text(text: str, *, path: str | Path, shown: str,
                    files: Sequence[str] | None = None) -> LoadedFleet:
    """Like `load_fleet`, for a file's text read elsewhere (e.g. `git show REV:path`).

    `path` is where the file lives (relative paths in it resolve from there), `shown`
    names it in errors (`origin/main:fleet.yaml:3:5`), and `files`, if given, are the
    repo-relative paths `forEach.glob` matches instead of the working tree.
    """
    return _load(text, path=Path(path), shown=shown, files=files)


def _load(text: str, *, path: Path, shown: str, files: Sequence[str] | None = None) -> LoadedFleet:
    from .checks import check_fleet  # checks imports desired; keep the import graph acyclic

    doc = _parse_yaml(text, shown)
    _refuse_plan(doc, shown)
    fleet = _validate(doc, shown)
    repo = (path.resolve().parent / fleet.spec.repo).resolve()
    main = main_checkout(repo)
    agents, problems = check_fleet(fleet, repo, files=files, main=main)
    if problems:
        raise SpecInvalid([_place(doc, shown, loc, msg, hint) for loc, msg, hint in problems])
    return LoadedFleet(path=path, fleet=fleet, repo=repo, agents=tuple(agents), raw=doc,
                       worktrees_root=(main / fleet.spec.worktrees.root).resolve())


def main_checkout(repo: Path) -> Path:
    """The main checkout of the repository `repo` belongs to: `repo`, unless `repo` is a linked
    worktree (its `.git` file names a git dir with a `commondir` file, as `git worktree add`
    makes); then the directory holding the shared git dir, where fleet's paths are rooted
    (observe/gitrepo.py `GitRepo.root`). Read from files, as git itself finds it."""
    try:
        text = (repo / ".git").read_text() if (repo / ".git").is_file() else ""
    except OSError:
        return repo
    if not text.startswith("gitdir:"):
        return repo
    gitdir = repo / text.removeprefix("gitdir:").strip()  # an absolute path replaces `repo`
    try:
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    except OSError:
        return repo  # a main checkout whose git dir lives elsewhere (`git init --separate-git-dir`)
    return common.parent


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetError(f"{shown}: no such file", hint="check the path to your fleet.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"{shown}: cannot read: {exc}") from None


def _parse_yaml(text: str, shown: str) -> Any:
    try:
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise SpecInvalid([_yaml_problem(exc, shown)]) from None
    if not isinstance(doc, dict):
        raise SpecInvalid([Problem("the file must be a YAML mapping with apiVersion, kind, "
                                   "metadata and spec", shown, 1, 1,
                                   "start from fleets/demo.yaml or `fleet schema`")])
    return doc


def _refuse_plan(doc: dict[str, Any], shown: str) -> None:
    """A plan is JSON, so valid YAML: say what it is and what takes it, rather than list schema errors."""
    if doc.get("kind") == "SavedPlan":
        raise FleetError(f"{shown} is a saved plan, not a fleet file",
                         hint=f"check that it is still current with `fleet apply {shown} --dry-run`; "
                              f"apply it with `fleet apply {shown}`")
    if doc.get("kind") == "Plan" and "actions" in doc:
        raise FleetError(f"{shown} is a plan printed by `fleet diff -o json`, not a fleet file",
                         hint="pass the fleet file; to apply a reviewed plan, save it with "
                              "`fleet diff FILE --out PLAN`, then run `fleet apply PLAN`")


def _yaml_problem(exc: MarkedYAMLError, shown: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or str(exc)
    hint = "fix the YAML syntax at this position"
    if "'\\t'" in problem:
        problem, hint = "tab character in indentation", "YAML allows only spaces for indentation"
    elif "duplicate key" in problem:
        hint = "each key may appear once per mapping; remove or rename one of them"
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(f"invalid YAML: {problem}", shown, line, col, hint)


def _validate(doc: Any, shown: str) -> Fleet:
    try:
        return Fleet.model_validate(_plain(doc))
    except ValidationError as exc:
        problems: dict[tuple[object, ...], Problem] = {}
        errors = exc.errors()
        deeper = {_doc_loc(doc, e["loc"])[:-1] for e in errors}
        for err in errors:
            loc = _doc_loc(doc, err["loc"])
            if err["type"].endswith("_type") and isinstance(err.get("input"), dict) and loc in deeper:
                continue  # a union member of another shape ('str' for {fromEnv: ...}); the deeper error says it
            # a union reports once per member; the first says it best
            problems.setdefault((*loc, err["type"] == "extra_forbidden"), _pydantic_problem(doc, shown, err, loc))
        raise SpecInvalid(sorted(problems.values(), key=lambda p: (p.line or 0, p.col or 0))) from None


def _doc_loc(doc: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's loc without the union-member tags it inserts ('str', 'FromEnv', ...).

    A part is a tag only where the document has no such key, so a key named like a
    type ('Worker', 'TOKEN') is never mistaken for one."""
    out: list[Any] = []
    node = doc
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif _is_union_tag(part):
            continue
        else:
            node = None  # a missing key: keep it, it names what is missing
        out.append(part)
    return tuple(out)


def _plain(node: Any) -> Any:
    """ruamel's CommentedMap/Seq as plain dict/list, so strict validation accepts them."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _pydantic_problem(doc: Any, shown: str, err: Any, loc: tuple[Any, ...]) -> Problem:
    kind = err["type"]
    dotted = _dotted(loc)
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return _place(doc, shown, loc, f"unknown key {key!r} in {_dotted(loc[:-1]) or 'the document'}",
                      hint, at_key=True)
    if kind == "missing":
        return _place(doc, shown, loc, f"missing required key {dotted}",
                      f"add `{loc[-1]}:` here; see schemas/fleet.schema.json")
    got = err.get("input")
    if (words := _in_words(kind, loc, got, err.get("ctx") or {})) is not None:
        where = _dotted(loc[:-2]) if loc[-1:] == ("[key]",) else dotted  # a map key: name the map
        return _place(doc, shown, loc, f"{where}: {words[0]}", words[1])
    msg = err["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") and not isinstance(got, (dict, list)):
        msg = f"{msg}, got {type(got).__name__} {got!r}"
    return _place(doc, shown, loc, f"{dotted}: {msg}", _hint_for(kind, loc, got))


def _in_words(kind: str, loc: Loc, got: Any, ctx: dict[str, Any]) -> tuple[str, str] | None:
    """(message, hint) for the mistakes people make most, saying what to write instead."""
    key = str(loc[-1]) if loc else ""
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == DURATION_PATTERN:
        return f"{got!r} is not a duration", _DURATION_RULE
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS and isinstance(got, str):
        what, rule, why, unsafe = _PATTERNS[ctx["pattern"]]
        fixed = re.sub(unsafe, "_" if ctx["pattern"] == ENV_NAME_PATTERN else "-", got).strip("-.")
        if fixed[:1].isdigit() and ctx["pattern"] == ENV_NAME_PATTERN:
            fixed = "_" + fixed
        example = f"e.g. {fixed!r}" if fixed and re.fullmatch(ctx["pattern"], fixed) else ""
        return f"{got!r} is not {what}: {rule}", "; ".join(p for p in (example, why) if p) or rule
    if kind == "string_type" and isinstance(got, (int, float)) and not isinstance(got, bool) \
            and DURATION_PATTERN in _field_patterns(loc):
        return f"{got} is a number, not a duration", f"add a unit, e.g. {key}: {got}m (minutes) or {got}s (seconds)"
    if kind == "list_type" and isinstance(got, str):
        items = _split_args(got) if key in {"command", "args"} else [got]
        what = " (the program and its arguments, one item each)" if key == "command" else ""
        return (f"must be a list{what}, not the string {got!r}",
                f"write it as a list: {key}: [{', '.join(_flow_item(i) for i in items)}]")
    return None


def _field_patterns(loc: Loc) -> set[str]:
    """The patterns the model field at `loc` must match, through Optional and Annotated."""
    parent: Any = Fleet
    for part in loc[:-1]:
        parent = _step(parent, part)
        if parent is None:
            return set()
    parent = _unwrap(parent)
    field = parent.model_fields.get(str(loc[-1])) if _is_model(parent) else None
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(getattr(node, "pattern", None), str):
            found.add(node.pattern)
        for meta in getattr(node, "metadata", None) or ():
            visit(meta)
        if (annotation := getattr(node, "annotation", None)) is not None:
            visit(annotation)
        for arg in typing.get_args(node):
            visit(arg)

    if field is not None:
        visit(field)
    return found


def _split_args(text: str) -> list[str]:
    try:
        return shlex.split(text) or [text]
    except ValueError:  # unbalanced quotes: suggest it whole
        return [text]


def _flow_item(item: str) -> str:
    """`item` as an element of a YAML flow list: plain when that reads back as the same string."""
    plain = re.fullmatch(r"[A-Za-z0-9_./~+=@%^-][A-Za-z0-9_./~+=@%^:-]*", item) and not item.startswith("-") \
        or re.fullmatch(r"--?[A-Za-z0-9][A-Za-z0-9_./=-]*", item)
    looks_typed = re.fullmatch(r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|true|false|null|~", item, re.IGNORECASE)
    return item if plain and not looks_typed else json.dumps(item)


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member's type to loc (e.g. 'str', 'FromEnv'); not a YAML key
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "list[str]"}
                                      or part[:1].isupper() or part.startswith("function-"))


def _hint_for(kind: str, loc: Loc, got: Any = None) -> str:
    last = loc[-1] if loc else None
    if kind == "literal_error":
        return "use one of the allowed values listed"
    if last == "cron" or (kind == "value_error" and "cron" in str(loc)):
        return "5 fields: minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\""
    if kind in {"int_type", "float_type", "bool_type"} and isinstance(got, str):
        return "write the value without quotes"
    if kind == "string_type" and isinstance(got, (bool, int, float)):
        return f"quote it: {last}: \"{str(got).lower() if isinstance(got, bool) else got}\""
    if kind.endswith("_type"):
        return "check the value's type (quote strings that look like numbers or booleans)"
    return "see schemas/fleet.schema.json for the allowed values"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: Loc) -> list[str]:
    model: Any = Fleet
    for part in loc:
        model = _step(model, part)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _step(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    if _is_model(tp):
        field = tp.model_fields.get(str(part))
        return _unwrap(field.annotation) if field else None
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is list and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated down to the model or container type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, __import__("types").UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in members if _is_model(a)]
            tp = models[0] if models else members[0]
            continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _place(doc: Any, shown: str, loc: Loc, message: str, hint: str | None,
           *, at_key: bool = False) -> Problem:
    line, col = locate(doc, loc, at_key=at_key)
    return Problem(message, shown, line, col, hint)
