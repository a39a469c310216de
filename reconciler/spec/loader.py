"""Read fleet.yaml with ruamel.yaml and turn every problem into file:line:col + hint.

Parsing, model validation and cross-field checks all report through `Problem`, so a
user sees every error in one run, each pointing at the key or value to fix.

The file may be hostile (`fleet diff` on an untrusted pull request), so reading it is
bounded (spec/limits.py): its size, its nesting and what its aliases expand to are
checked while it is read, a string no program can take (a NUL) is refused before any
of it is used, and its paths (the file itself, spec.repo, worktrees.root) must stay in
the repository that holds it.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
import shlex
import stat
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, SequenceNode
from ruamel.yaml.scanner import Scanner

from ..errors import FleetError, Problem, SpecInvalid
from . import libyaml
from . import limits as bounds
from .desired import DesiredAgent
from .durations import DURATION_PATTERN
from .gitfile import gitfile_target
from .limits import Limits
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
    positions: Positions  # where each value is in the file
    # absolute: spec.worktrees.root, resolved from the repository's main checkout, so a fleet
    # file read in an agent's worktree (where `repo: .` is that worktree) names the same trees
    worktrees_root: Path

    @property
    def name(self) -> str:
        return self.fleet.metadata.name

    @property
    def raw(self) -> Any:
        """The parsed YAML document, for positions (spec/positions.py `locate`)."""
        return self.positions.doc

    def agent(self, name: str) -> DesiredAgent | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, DesiredAgent]:
        """Agents by name (looked up per agent per pass: a scan would make a pass O(N^2))."""
        by_name: dict[str, DesiredAgent] = {}
        for agent in self.agents:
            by_name.setdefault(agent.name, agent)
        return by_name


class Positions:
    """The document that positions are looked up in: ruamel's own reading of the text.

    Where libyaml read the text (spec/libyaml.py), the values are the same but a few positions
    are not (an empty value's: libyaml puts it after its key's colon, ruamel at the next token);
    so ruamel's parser reads the text again the first time a position is asked for (an error, a
    warning), and every position fleet shows is the one it always showed."""

    def __init__(self, text: str, doc: Any, *, by_libyaml: bool) -> None:
        self._text, self._read, self._by_libyaml = text, doc, by_libyaml

    @cached_property
    def doc(self) -> Any:
        if not self._by_libyaml:
            return self._read
        try:
            return _yaml().load(self._text)
        except Exception:  # noqa: BLE001 - ruamel refusing what libyaml read (`libyaml.eligible` leaves out
            return self._read  # every such text found) must not turn a message into a crash: libyaml's positions


def load_fleet(path: str | Path, *, limits: Limits | None = None) -> LoadedFleet:
    """Parse, validate and expand `path`; raises SpecInvalid listing every problem.

    `limits`: what the file may do (spec/limits.py); default: as configured for this run."""
    path = Path(path)
    shown = str(path)
    limits = limits or bounds.current()
    return _load(_read(path, shown, limits), path=path, shown=shown, limits=limits)


class LoadCache:
    """The loaded fleet of a long-running loop, reused while nothing it was made from changed.

    Parsing and checking a 1,000-agent file costs ~0.1 s a tick; the file changes rarely.
    What a load depends on is the file's text and, for `forEach.glob`, the files the globs
    match in the working tree: both are read every time (the text bounded as by
    `load_fleet`, the globs walked again) and compared with what the cached fleet was made
    from. `LoadedFleet` is frozen, so a reused one cannot carry a previous tick's changes.
    """

    def __init__(self) -> None:
        self._made_from: tuple[str, tuple[Any, ...]] | None = None
        self._loaded: LoadedFleet | None = None

    def load(self, path: str | Path, *, limits: Limits | None = None) -> LoadedFleet:
        path = Path(path)
        limits = limits or bounds.current()
        text = _read(path, str(path), limits)
        if self._loaded is not None and self._made_from == (text, _glob_matches(self._loaded)):
            return self._loaded
        walks: dict[str, tuple[list[str], list[str]]] = {}  # what the load walked: its key, walked once
        loaded = _load(text, path=path, shown=str(path), limits=limits, walks=walks)
        self._loaded, self._made_from = loaded, (text, _glob_matches(loaded, walks))
        return loaded


def _glob_matches(loaded: LoadedFleet, walked: dict[str, tuple[list[str], list[str]]] | None = None
                  ) -> tuple[Any, ...]:
    """What every `forEach.glob` of the file matches in the working tree now (and what leads
    outside); `walked`: globs the load just walked, not walked again."""
    from . import globs

    walked = walked or {}
    return tuple((each.glob, walked[each.glob] if each.glob in walked else globs.walk(loaded.repo, each.glob))
                 for agent in loaded.fleet.spec.agents if (each := agent.forEach) is not None and each.glob is not None)


def load_fleet_text(text: str, *, path: str | Path, shown: str,
                    files: Sequence[str] | None = None, limits: Limits | None = None) -> LoadedFleet:
    """Like `load_fleet`, for a file's text read elsewhere (e.g. `git show REV:path`).

    `path` is where the file lives (relative paths in it resolve from there), `shown`
    names it in errors (`origin/main:fleet.yaml:3:5`), and `files`, if given, are the
    repo-relative paths `forEach.glob` matches instead of the working tree.
    """
    limits = limits or bounds.current()
    if len(text.encode("utf-8", "surrogateescape")) > limits.max_bytes:
        raise FleetError(f"{shown}: larger than the limit of {limits.max_bytes} bytes", hint=_size_hint())
    return _load(text, path=Path(path), shown=shown, files=files, limits=limits)


def _load(text: str, *, path: Path, shown: str, limits: Limits, files: Sequence[str] | None = None,
          walks: dict[str, tuple[list[str], list[str]]] | None = None) -> LoadedFleet:
    from .checks import check_fleet  # checks imports desired; keep the import graph acyclic

    doc, by_libyaml = _parse_yaml(text, shown)
    positions = Positions(text, doc, by_libyaml=by_libyaml)
    if found := _unusable_strings(doc, shown):  # before anything uses them: a NUL in argv is a crash
        raise SpecInvalid(_unusable_strings(positions.doc, shown) or found)  # placed in ruamel's reading
    _refuse_plan(doc, shown)
    fleet = _validate(doc, shown, positions)
    repo, path_issues = _repo_paths(fleet, path, limits)
    if path_issues:
        files = ()  # a path that leads out of the repository: look at nothing there
    main = main_checkout(repo)
    agents, problems = check_fleet(fleet, repo, files=files, main=main, walks=walks)
    problems = path_issues + problems
    if problems:
        raise SpecInvalid(sorted((_place(positions.doc, shown, loc, msg, hint) for loc, msg, hint in problems),
                                 key=lambda p: (p.line or 0, p.col or 0)))
    return LoadedFleet(path=path, fleet=fleet, repo=repo, agents=tuple(agents), positions=positions,
                       worktrees_root=(main / fleet.spec.worktrees.root).resolve())


def main_checkout(repo: Path) -> Path:
    """The main checkout of the repository `repo` belongs to: `repo`, unless `repo` is a linked
    worktree (its `.git` file names a git dir with a `commondir` file, as `git worktree add`
    makes); then the directory holding the shared git dir, where fleet's paths are rooted
    (observe/gitrepo.py `GitRepo.root`). Read from files, as git itself finds it."""
    try:
        if not (repo / ".git").is_file():
            return repo
        gitdir = repo / gitfile_target(repo / ".git")  # an absolute path replaces `repo`
    except OSError:  # unreadable, or no gitfile: git would not take it either
        return repo
    try:
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    except OSError:
        return repo  # a main checkout whose git dir lives elsewhere (`git init --separate-git-dir`)
    return common.parent


def _read(path: Path, shown: str, limits: Limits) -> str:
    """The file's text: a regular file inside the repository that holds it, at most
    `limits.max_bytes`, UTF-8 (a bad byte is reported at its line and column)."""
    if not limits.allow_outside_repo:
        boundary = repository_of(path)
        real = _real(path)
        if real is not None and not _inside(real, boundary):
            raise FleetError(f"{shown} is a symlink to a file outside the repository that holds it ({boundary})",
                             hint=f"pass the fleet file itself; to read it anyway, an operator passes "
                                  f"{bounds.OUTSIDE_FLAG} (or sets {bounds.OUTSIDE_ENV}=1)")
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below, like a device
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FleetError(f"{shown}: no such file", hint="check the path to your fleet.yaml") from None
    except (OSError, ValueError) as exc:
        raise FleetError(f"{shown}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise FleetError(f"{shown}: not a regular file ({what})", hint="pass the fleet file itself")
        try:
            data = f.read(limits.max_bytes + 1)
        except OSError as exc:
            raise FleetError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise FleetError(f"{shown}: larger than the limit of {limits.max_bytes} bytes", hint=_size_hint())
    return _decode(data, shown)


def _size_hint() -> str:
    return (f"a fleet file is a few KiB; if this one is meant to be this big, raise the limit with "
            f"{bounds.SIZE_FLAG} BYTES (or {bounds.SIZE_ENV}=BYTES)")


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        raise SpecInvalid([Problem(f"not valid UTF-8: byte 0x{data[exc.start]:02x} ({exc.reason})", shown, line, col,
                                   "save the file as UTF-8 text")]) from None


class _Located(MarkedYAMLError):
    """A problem found while the document is read (a limit of spec/limits.py crossed, a value
    that cannot be built), with its own message and hint."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _BoundedComposer(Composer):
    """ruamel's composer, refusing a document nested deeper than MAX_DEPTH, aliases that
    would expand to more than MAX_ALIAS_NODES values, and an alias inside the node it names
    (a cycle): each at the event where it happens, before anything expands the document."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self._size: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self._open: list[str] = []  # anchors of the nodes being composed
        self._added = 0  # values added by aliases so far
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise _Located(f"alias *{event.anchor} is inside the node &{event.anchor} it repeats", event.start_mark,
                               "an alias repeats a node defined before it, never the node that contains it")
            node = super().compose_node(parent, index)
            self._added += self._size.get(id(node), 1)
            if self._added > bounds.MAX_ALIAS_NODES:
                raise _Located(f"aliases expand to more than {bounds.MAX_ALIAS_NODES} values", event.start_mark,
                               "anchors and aliases (&name, *name) are for repeating a few settings; write the "
                               "values out or use forEach")
            return node
        self._depth += 1
        if self._depth > bounds.MAX_DEPTH:
            raise _too_deep(event.start_mark)
        if event.anchor is not None:
            self._open.append(event.anchor)
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self._open.pop()
        self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._size.get(id(item), 1) for item in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._size.get(id(k), 1) + self._size.get(id(v), 1) for k, v in node.value)
        self._size[id(node)] = size
        return node


def _too_deep(mark: Any) -> _Located:
    return _Located(f"nested more than {bounds.MAX_DEPTH} levels deep", mark,
                    "a fleet file nests a handful of levels (spec.agents[0].env.NAME is the deepest)")


class _FlowDepth:
    """Mixed into ruamel's scanner: `[` and `{` nested deeper than MAX_DEPTH are refused as they
    are read. The scanner keeps one pending simple key per open bracket and rescans them all
    for every token, so deep flow nesting costs quadratic time before the composer sees a node."""

    flow_level: int
    reader: Any

    def fetch_flow_collection_start(self, token_class: Any, to_push: str) -> None:
        if self.flow_level >= bounds.MAX_DEPTH:
            raise _too_deep(self.reader.get_mark())
        super().fetch_flow_collection_start(token_class, to_push)  # type: ignore[misc]


@functools.cache
def _bounded_scanner(scanner: type) -> type:
    return type(f"Bounded{scanner.__name__}", (_FlowDepth, scanner), {})


class _LocatedConstructor(RoundTripConstructor):
    """A value that cannot be built (a date that does not exist, an integer of 5,000
    digits) is an error at that value, not a crash."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as exc:  # `!!bool x`: KeyError
            raise _Located(f"cannot read this value as {_tag(node)}: {exc}", node.start_mark,
                           "quote it if it is meant as a string; otherwise write a value of that type") from None


def _tag(node: Any) -> str:
    tag = str(getattr(node, "tag", "") or "")
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else (tag or "YAML")


def _yaml() -> YAML:
    """ruamel's round-trip loader (its maps and lists keep each value's position) on its plain
    scanner, which skips comments as YAML does: the round-trip scanner also keeps them, which
    nothing here needs, and its comment handling crashes on some valid files (a comment after a
    key whose value is on the next line, and blank lines at the end: "overlap in comment")."""
    yaml = YAML(typ="rt")
    yaml.Scanner = _bounded_scanner(Scanner)
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _LocatedConstructor
    return yaml


def _parse_yaml(text: str, shown: str) -> tuple[Any, bool]:
    """The document, and whether libyaml's events made it (else ruamel's parser did)."""
    doc = _parse_libyaml(text) if libyaml.eligible(text) else _UNREAD
    by_libyaml = doc is not _UNREAD
    if not by_libyaml:
        try:
            doc = _yaml().load(text)
        except MarkedYAMLError as exc:
            raise SpecInvalid([_yaml_problem(exc, shown)]) from None
        except YAMLError as exc:  # the reader's (a character YAML does not allow): a position, no mark
            raise SpecInvalid([_reader_problem(exc, text, shown)]) from None
        except (ValueError, OverflowError) as exc:  # ruamel's scanner: chr() of an escape past U+10FFFF
            line, col = _escape_position(text)
            raise SpecInvalid([Problem(f"invalid YAML: cannot read an escape sequence ({exc})", shown, line, col,
                                       "a \\U escape names at most U+10FFFF; fix the escape or write the "
                                       "character itself")]) from None
    if not isinstance(doc, dict):
        raise SpecInvalid([Problem("the file must be a YAML mapping with apiVersion, kind, "
                                   "metadata and spec", shown, 1, 1,
                                   "start from fleets/demo.yaml or `fleet schema`")])
    return doc, by_libyaml


def _escape_position(text: str) -> tuple[int | None, int | None]:
    """1-based (line, col) of the first `\\UXXXXXXXX` past U+10FFFF in `text`, else unknown."""
    for match in re.finditer(r"\\U([0-9A-Fa-f]{8})", text):
        if int(match.group(1), 16) > 0x10FFFF:
            start = match.start()
            return text.count("\n", 0, start) + 1, start - (text.rfind("\n", 0, start) + 1) + 1
    return None, None


_UNREAD = object()


def _parse_libyaml(text: str) -> Any:
    """The document read with libyaml's events under ruamel's composer (spec/libyaml.py), or
    _UNREAD if they fail in any way: ruamel's own parser then reads the text, and its error,
    position and hint are the ones reported."""
    yaml = _yaml()
    yaml.Parser = libyaml.Events
    yaml.libyaml_text = text  # type: ignore[attr-defined]  # what libyaml.Events reads
    try:
        return yaml.load(text)
    except Exception:  # noqa: BLE001 - whatever went wrong, the pure parser's reading is the one reported
        return _UNREAD


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
    if isinstance(exc, _Located):
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return Problem(problem, shown, line, col, exc.hint)
    hint = "fix the YAML syntax at this position"
    if "'\\t'" in problem:
        problem, hint = "tab character in indentation", "YAML allows only spaces for indentation"
    elif "duplicate key" in problem:
        hint = "each key may appear once per mapping; remove or rename one of them"
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(f"invalid YAML: {problem}", shown, line, col, hint)


def _reader_problem(exc: YAMLError, text: str, shown: str) -> Problem:
    position = getattr(exc, "position", None)
    char = getattr(exc, "character", None)
    what = f"character U+{char:04X} is not allowed in YAML" if isinstance(char, int) else f"invalid YAML: {exc}"
    if not isinstance(position, int):
        return Problem(what, shown, None, None, "remove it")
    line = text.count("\n", 0, position) + 1
    col = position - (text.rfind("\n", 0, position) + 1) + 1
    return Problem(what, shown, line, col, "remove it; write control characters as escapes in a double-quoted "
                                           "string (\"\\t\") where a value needs one")


def _unusable_strings(doc: Any, shown: str, most: int = 20) -> list[Problem]:
    """Strings (keys and values, anywhere) that no program's argv or environment can hold: a
    NUL, or a lone surrogate (not text at all). Each at its position; at most `most`."""
    found: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while stack and len(found) < most:
        loc, node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:  # an alias: the node it repeats is checked once
                continue
            seen.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and (why := _unusable(key)):
                    found.append(_place(doc, shown, (*loc, key), f"the key {_short(key)} {why}", _UNUSABLE_HINT,
                                        at_key=True))
                stack.append(((*loc, key), value))
        elif isinstance(node, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(node))
        elif isinstance(node, str) and (why := _unusable(node)):
            found.append(_place(doc, shown, loc, f"{_dotted(loc) or 'the document'}: {_short(node)} {why}",
                                _UNUSABLE_HINT))
    return sorted(found, key=lambda p: (p.line or 0, p.col or 0))


_UNUSABLE_HINT = "remove it: strings become program arguments, environment variables and paths, which cannot hold it"


def _short(text: str, most: int = 40) -> str:
    return repr(text) if len(text) <= most else repr(text[:most]) + "..."


def _repr(value: Any, most: int = 60) -> str:
    """A value from the file, for a message: never long, and never a crash (an integer of 5,000
    digits has no decimal repr under Python's limit)."""
    if isinstance(value, str):
        return _short(value, most)
    try:
        text = repr(value)
    except ValueError:
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<a value>"
    return text if len(text) <= most else text[:most] + "..."


def _unusable(text: str) -> str | None:
    if "\0" in text:
        return "contains a NUL character (\\0)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate escape (such as \\ud800), which is not a character"
    return None


def repository_of(path: Path) -> Path:
    """The directory a fleet file's paths must stay in: the git work tree that holds the file
    as named (the nearest directory upwards with a `.git`), else the directory that holds it.
    Found without running git, so `fleet validate` needs none."""
    here = Path(os.path.abspath(path)).parent
    here = _real(here) or here
    for directory in (here, *here.parents):
        if os.path.lexists(directory / ".git"):
            return directory
    return here


def _repo_paths(fleet: Fleet, path: Path, limits: Limits) -> tuple[Path, list[tuple[Loc, str, str | None]]]:
    """spec.repo, resolved, and what is wrong with where it and worktrees.root lead."""
    boundary = repository_of(path)
    here = (_real(path) or Path(os.path.abspath(path))).parent
    issues: list[tuple[Loc, str, str | None]] = []
    allow = (f"an operator can allow it with {bounds.OUTSIDE_FLAG} (or {bounds.OUTSIDE_ENV}=1); "
             f"a pull request cannot")
    repo = _real(here / fleet.spec.repo)
    if repo is None:
        return boundary, [(("spec", "repo"), f"spec.repo {fleet.spec.repo!r} is a symlink loop", "fix the symlink")]
    if not limits.allow_outside_repo and not _inside(repo, boundary):
        return boundary, [(("spec", "repo"), f"spec.repo {fleet.spec.repo!r} leads outside the repository that "
                           f"holds this file ({boundary})",
                           f"point it at that repository or a directory in it (e.g. repo: .); {allow}")]
    root = fleet.spec.worktrees.root
    lexical = not os.path.isabs(root) and os.path.normpath(root).split(os.sep)[0] != ".."  # else checks.py says so
    real_root = _real(repo / root)
    if lexical and real_root is None:
        issues.append((("spec", "worktrees", "root"), f"worktrees.root {root!r} is a symlink loop", "fix the symlink"))
    elif lexical and real_root is not None and not limits.allow_outside_repo and not _inside(real_root, repo):
        issues.append((("spec", "worktrees", "root"), f"worktrees.root {root!r} leads outside the repo through a "
                       f"symlink", f"remove the symlink, or use another directory; {allow}"))
    return repo, issues


def _real(path: Path) -> Path | None:
    """`path` with every symlink resolved (what does not exist yet, as written); None for a loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _validate(doc: Any, shown: str, positions: Positions) -> Fleet:
    try:
        return Fleet.model_validate(_plain(doc))
    except ValidationError as exc:
        doc = positions.doc  # the same values, where ruamel places them
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
        msg = f"{msg}, got {type(got).__name__} {_repr(got)}"
    return _place(doc, shown, loc, f"{dotted}: {msg}", _hint_for(kind, loc, got))


def _in_words(kind: str, loc: Loc, got: Any, ctx: dict[str, Any]) -> tuple[str, str] | None:
    """(message, hint) for the mistakes people make most, saying what to write instead."""
    key = str(loc[-1]) if loc else ""
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == DURATION_PATTERN:
        return f"{_repr(got)} is not a duration", _DURATION_RULE
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS and isinstance(got, str):
        what, rule, why, unsafe = _PATTERNS[ctx["pattern"]]
        fixed = re.sub(unsafe, "_" if ctx["pattern"] == ENV_NAME_PATTERN else "-", got).strip("-.")
        if fixed[:1].isdigit() and ctx["pattern"] == ENV_NAME_PATTERN:
            fixed = "_" + fixed
        example = f"e.g. {fixed!r}" if fixed and re.fullmatch(ctx["pattern"], fixed) else ""
        return f"{_repr(got)} is not {what}: {rule}", "; ".join(p for p in (example, why) if p) or rule
    if kind == "string_type" and isinstance(got, (int, float)) and not isinstance(got, bool) \
            and DURATION_PATTERN in _field_patterns(loc):
        number = _repr(got)
        return f"{number} is a number, not a duration", \
            f"add a unit, e.g. {key}: {number}m (minutes) or {number}s (seconds)"
    if kind == "list_type" and isinstance(got, str):
        items = _split_args(got) if key in {"command", "args"} else [got]
        what = " (the program and its arguments, one item each)" if key == "command" else ""
        return (f"must be a list{what}, not the string {_repr(got)}",
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
        return f"quote it: {last}: \"{str(got).lower() if isinstance(got, bool) else _repr(got)}\""
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
