"""Explain spec drift field by field (deepdiff on the recorded vs desired session spec)."""
from __future__ import annotations

from typing import Any


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Human lines such as "model: 'sonnet' -> 'opus'" or "prompt changed"."""
    if old is None:
        return ["no recorded spec"]
    from deepdiff import DeepDiff  # heavy import, only when a drift must be explained

    diff = DeepDiff(old, new, verbose_level=2)
    lines: list[str] = []
    for path, change in diff.get("values_changed", {}).items():
        field = _field(path)
        before, after = change["old_value"], change["new_value"]
        if isinstance(before, str) and ("\n" in before or len(before) > 40):
            lines.append(f"{field} changed")
        else:
            lines.append(f"{field}: {before!r} -> {after!r}")
    for kind, verb in (("type_changes", "changed type"), ("dictionary_item_added", "added"),
                       ("dictionary_item_removed", "removed"), ("iterable_item_added", "added"),
                       ("iterable_item_removed", "removed")):
        for path in diff.get(kind, {}):
            lines.append(f"{_field(path)} {verb}")
    return sorted(lines) or ["spec changed"]


def _field(path: str) -> str:
    """deepdiff's "root['env']['A']" -> "env.A"."""
    return path.removeprefix("root").replace("']['", ".").replace("['", "").replace("']", "") \
        .replace("[", "[").strip(".") or "spec"
