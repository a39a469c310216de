"""The CLI examples in docs/ are what the tool prints now (issue 15 item 11).

scripts/gen_doc_examples.py runs the demo story once in a throwaway repo and regenerates
every example between `<!-- example: NAME -->` markers; this test fails, with the diff and
the command that updates the docs, when a committed example differs.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from conftest import ROOT


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_doc_examples", ROOT / "scripts" / "gen_doc_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_every_cli_example_in_the_docs_is_what_the_tool_prints_now(tmp_path: Path) -> None:
    gen = _generator()
    examples = gen.generate(tmp_path)
    problems = gen.stale(examples)
    assert not problems, (f"docs/ examples differ from what fleet prints now; update them with `{gen.UPDATE}` "
                          "(and review the diff):\n\n" + "\n".join(problems))


def test_the_examples_cover_every_command_the_docs_show() -> None:
    """Each kind of output the docs show has a generated example (no hand-written one is left)."""
    gen = _generator()
    names = {m.group("name") for doc in (ROOT / "docs").glob("*.md") for m in gen.MARKER.finditer(doc.read_text())}
    assert {"validate", "validate-bad", "validate-bad2", "validate-warning", "diff", "diff-json", "diff-markdown",
            "diff-out", "diff-base-rev", "apply", "status", "status-json", "describe", "logs"} <= names
    inputs = gen.doc_inputs()
    assert set(inputs) == {"bad.yaml", "bad2.yaml"} and all(t.startswith("apiVersion:") for t in inputs.values())
