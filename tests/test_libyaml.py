"""libyaml's events under ruamel's composer (spec/libyaml.py) read exactly what ruamel's own
parser reads, and every position and error shown is still ruamel's."""
from __future__ import annotations

import platform
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from reconciler.errors import SpecInvalid
from reconciler.spec import libyaml, loader
from reconciler.spec.loader import load_fleet_text

ROOT = Path(__file__).resolve().parent.parent

# a dependency wherever it can be built (pyproject.toml): missing on CPython is a broken install, not a skip
pytestmark = pytest.mark.skipif(platform.python_implementation() != "CPython",
                                reason="ruamel.yaml.clib is built for CPython only")


def test_libyaml_is_there() -> None:
    assert libyaml.CParser is not None, "ruamel.yaml.clib is not installed: pip install -e ."

# pieces of YAML that its two versions, and so the two parsers, read differently or not at all:
# plain scalars YAML 1.1 and 1.2 resolve differently, flow and block collections, keys, anchors and
# merges, quoting and escapes, block scalars and their headers, comments, document markers
PIECES = [
    "a", "b", "k", "1", "0o7", "07", "1_0", "1__2", "0x1f", "0b1", "1:20", "yes", "Yes", "on", "y", "n", "~", "null",
    "Null", "NULL", "true", "True", "FALSE", "1e3", ".inf", "-.inf", ".NaN", ".5", "1.", "-1", "+1", "2001-12-14",
    "2001-12-14t21:59:43.10-05:00", ":", ": ", ":\n", "::", " :", "-:", "- ", "-", "- -", "\n", "\n  ", "\n    ", " ",
    "  ", "[", "]", "{", "}", ",", ", ", "? ", "?", "'", '"', "''", "#", " # c", "&x ", "*x", "&y ", "*y", "|", "|-",
    ">", ">+", "|2", "<<", "<<: ", "<<: *x", "---", "--- ", "...", "\\", "\\n", "\\/", "\\x41", "\\u00e9", '"\\0"',
    '"\\ud800"', '"\\N"', '"\\_"', '"\\L"', '"\\P"', '"\\e"', '"\\U0001F600"', '"\\\n"', "'\\'", "@", "`", "=", "%",
    "a: b\n", "- x\n", "k: [1, 2]\n", "k: {a: 1}\n", "x:\n  - 1\n  - 2\n", '"a\\\n b"', "'it''s'", "a\n b", "-\n",
    "- - ", "a: |\n  text\n", "a: >\n  f\n  g\n", "? a\n: b\n", "a: b: c", "- a: 1\n  b: 2\n", "[a, b]: c",
    "{a: b}: c", '"a": b', "'a': b", "a:b", "[a:b]", "{a:b}", "[a: b]", "{? a}", "[? a : b]", "- >\n  x\n",
    "key:    # comment\n  value", "a :b", "a\n", "  - ", "\n- ",
    # found by the review's generators: anchors with `:` or `?`, flow `?` keys, a `:` after a quote
    # or bracket, a second document end, a blank line of spaces in a block scalar, a top-level block
    # scalar whose first line starts with `#`
    "&x:y", "&x :", "*x :", "[?, :]", '"b":c', "'b':c", "[b]:c", "...\n...\n", "|\n \n  x\n", " \n", "|\n#x\n", ">\n#",
]


def shape(value: Any) -> Any:
    """`value` with every type spelled out (1 == True == 1.0 in Python; here they differ)."""
    if isinstance(value, CommentedMap):
        merged = [m[1] if isinstance(m, tuple) else m for m in getattr(value, "_yaml_merge", [])]
        return ("map", [(shape(k), shape(v)) for k, v in value.items()], [shape(m) for m in merged])
    if isinstance(value, CommentedSeq):
        return ("seq", [shape(v) for v in value])
    if isinstance(value, (dict, list, set)):
        return (type(value).__name__, repr(value))
    return (type(value).__name__, repr(value))


def pure(text: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ruamel warns of a reused anchor
        return loader._yaml().load(text)


def by_libyaml(text: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loader._parse_libyaml(text)


def assert_reads_the_same(text: str) -> bool:
    """What libyaml's events read is what ruamel's parser reads; True if libyaml read it."""
    if not libyaml.eligible(text):
        return False
    fast = by_libyaml(text)
    if fast is loader._UNREAD:
        return False  # ruamel's parser reads it, and reports what is wrong, as without libyaml
    try:
        expected = pure(text)
    except YAMLError as exc:
        raise AssertionError(f"libyaml read {text!r}, which ruamel refuses: {exc}") from None
    assert shape(fast) == shape(expected), text
    return True


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=25).map("".join))
def test_what_libyaml_reads_is_what_ruamel_reads(text: str) -> None:
    assert_reads_the_same(text)


@pytest.mark.parametrize("path", sorted(ROOT.glob("fleets/*.yaml")), ids=lambda p: p.name)
def test_the_shipped_fleets_are_read_by_libyaml_and_the_same(path: Path) -> None:
    assert assert_reads_the_same(path.read_text())


@pytest.mark.parametrize("text", [
    "a: 1\n", "a: [x, 'y', \"z\"]\n", "- {a: 1}\n", "k: |\n  two\n  lines\n",
    "prompt: what now? fix it\n", 'forEach: {glob: "src/*.py"}\n',
    "a: {<<: {b: 1}, c: 2}\n", "a: yes\nb: 0o17\nc: 017\nd: 1:20\ne: ~\n",
])
def test_texts_it_takes(text: str) -> None:
    assert assert_reads_the_same(text)


@pytest.mark.parametrize("text, why", [
    ("a:\tb\n", "a tab"),
    ("a: b\r\n", "a carriage return"),
    ("a: caf\u00e9\n", "not ASCII"),
    ("\ufeffa: b\n", "a byte order mark"),
    ("a: b\u0085c\n", "NEL, a line break in YAML 1.1 only"),
    ("%YAML 1.1\n---\na: yes\n", "a directive: the version ruamel resolves with"),
    ("a: !!str 1\n", "a tag"),
    ("prompt: Go!\n", "a '!' anywhere (a tag cannot be told from it without scanning)"),
    ("a: |#\n  x\n", "a block scalar header with a comment right after it"),
    ("[&x:y]\n", "an anchor: ruamel's names take `:` (libyaml reads [{None: y}], ruamel [None])"),
    ("a: [&x :b]\n", "an anchor before a `:`"),
    ("- &x:y 1\n", "an anchor with a `:` in its name"),
    ("a: &x k\n*x: 1\n", "an alias as a key"),
    ("a: [?, :]\n", "a `?` key in a flow sequence (libyaml reads one item, ruamel two)"),
    ('command: ["echo":hi]\n', "a `:` right after a quote (libyaml reads a map, ruamel refuses)"),
    ("a: [[b]:c]\n", "a `:` right after a bracket"),
    ("a: 1\n...\n...\n", "a second document end (ruamel refuses it)"),
    ("a: |\n \n  x\n", "a line of spaces in a block scalar (ruamel refuses the more-indented blank line)"),
    ("|\n#x\n", "a top-level block scalar whose first line starts with `#` (libyaml reads '', ruamel '#x')"),
    ("a: " + "[" * (libyaml.MOST_BRACKETS + 1) + "\n", "more brackets than libyaml scans in linear time"),
])
def test_texts_it_leaves_to_ruamel(text: str, why: str) -> None:
    assert not libyaml.eligible(text), why


def test_at_the_bracket_bound_it_still_takes_the_text() -> None:
    assert libyaml.eligible("a: " + "[" * libyaml.MOST_BRACKETS + "\n")


def fleet_text(agents: str) -> str:
    return textwrap.dedent("""\
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          repo: .
          tiers: {local: {runtime: command}}
          agents:
        """) + textwrap.indent(textwrap.dedent(agents), "    ")


def problems(text: str, tmp_path: Path) -> list[tuple[str, int | None, int | None, str | None]]:
    with pytest.raises(SpecInvalid) as err:
        load_fleet_text(text, path=tmp_path / "fleet.yaml", shown="fleet.yaml")
    return [(p.message, p.line, p.col, p.hint) for p in err.value.problems]


# each error in a file libyaml reads, and the same file made one it does not (a '!' in a last
# comment changes no position before it): the same problems at the same places
@pytest.mark.parametrize("agents", [
    """\
    - name: a
      tier: local
      command:
      restart: Never
    """,  # an empty value: ruamel places it at the next token, libyaml after the colon
    """\
    - name: a
      tier: local
      command: [x]
      restrat: Never
    """,
    """\
    - name: "a\\0b"
      tier: local
      command: [x]
    """,
    """\
    - name: a
      tier: local: x
      command: [x]
    """,  # a syntax error: ruamel's message, not libyaml's
    """\
    - name: a
      tier: local
      command: """ + "[" * 100 + """x
    """,  # nested deeper than the bound: libyaml's events are refused at it, and ruamel's scanner says where
])
def test_errors_are_placed_where_ruamel_places_them(agents: str, tmp_path: Path) -> None:
    text = fleet_text(agents)
    assert libyaml.eligible(text)
    assert problems(text, tmp_path) == problems(text + "# !\n", tmp_path)
    assert not libyaml.eligible(text + "# !\n")


def test_positions_are_looked_up_in_ruamels_reading(tmp_path: Path) -> None:
    text = "a:\nb: [1, 2]\nc: {d: }\n"
    doc, read_by_libyaml = loader._parse_yaml(text, "f.yaml")
    assert read_by_libyaml
    positions, expected = loader.Positions(text, doc, by_libyaml=True).doc, pure(text)
    assert [positions.lc.value(k) for k in "abc"] == [expected.lc.value(k) for k in "abc"]
    assert positions["c"].lc.value("d") == expected["c"].lc.value("d")
    # libyaml alone puts the empty values after their colons: that reading is not the one placed from
    assert (doc.lc.value("a"), doc["c"].lc.value("d")) != (expected.lc.value("a"), expected["c"].lc.value("d"))
    loaded = load_fleet_text(fleet_text("- {name: a, tier: local, command: [x]}\n"), path=tmp_path / "fleet.yaml",
                             shown="fleet.yaml")
    assert loaded.raw["spec"]["agents"][0].lc.value("command") == (7, 38)


@pytest.mark.parametrize("last", ["do the thing", "do the thing!"], ids=["libyaml", "ruamel"])
def test_a_comment_before_a_value_on_the_next_line_then_blank_lines_is_read(last: str, tmp_path: Path) -> None:
    """ruamel's round-trip scanner crashed on it ("overlap in comment"): its plain scanner reads it."""
    text = fleet_text(f"""\
        - name: a
          tier: local
          command: [x]
          prompt:    # what to do
            {last}


        """)
    assert libyaml.eligible(text) is (last == "do the thing")
    loaded = load_fleet_text(text, path=tmp_path / "fleet.yaml", shown="fleet.yaml")
    assert loaded.agents[0].prompt == last
    assert loaded.raw["spec"]["agents"][0].lc.value("prompt") == (11, 8)
