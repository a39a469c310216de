"""Names that must be safe as path components and git branch names."""
from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
AGENT_NAME_PATTERN = r"^[A-Za-z0-9{][A-Za-z0-9._{}-]*$"  # before expansion: may hold {item}
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit"
ENV_NAME_RULE = "use letters, digits and '_', not starting with a digit"
_NAME = re.compile(NAME_PATTERN)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an agent/fleet name, or None if it can."""
    if not _NAME.match(name):
        return f"{name!r} is not a valid name: {NAME_RULE}"
    if len(name) > 100:
        return f"{name!r} is too long (over 100 characters)"
    return ref_problem(name)


def ref_problem(ref: str) -> str | None:
    """Why `ref` breaks `git check-ref-format` rules, or None. Pure, so validation spawns nothing."""
    if not ref:
        return "empty ref name"
    if ref.startswith("-"):  # git would read it as an option (`--output=FILE` writes a file)
        return f"{ref!r}: must not start with '-'"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return f"{ref!r}: must not start or end with '/' or contain '//'"
    if ".." in ref or "@{" in ref or ref == "@":
        return f"{ref!r}: must not contain '..' or '@{{'"
    if ref.endswith("."):
        return f"{ref!r}: must not end with '.'"
    if re.search(r"[\x00-\x20\x7f~^:?*\[\\]", ref):
        return f"{ref!r}: must not contain spaces, control characters or any of ~^:?*[\\"
    for part in ref.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return f"{ref!r}: no path component may start with '.' or end with '.lock'"
    return None
