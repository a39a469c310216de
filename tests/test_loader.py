"""fleet validate: every bad input gives file:line:col, a message and a hint, never a traceback."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import FLEETS, fleet_in_process, write_fleet

GOOD = """\
apiVersion: fleet/v1alpha1
kind: Fleet
metadata:
  name: t
spec:
  tiers:
    worker: {runtime: claude, model: sonnet, maxRunning: 2}
    local: {runtime: command}
  gates:
    tests: {run: "pytest -q", timeout: 5m}
  agents:
    - name: a
      tier: worker
      prompt: do a
      gates: [tests]
    - name: b
      tier: local
      command: [python, agent.py]
"""


@pytest.mark.parametrize("example", sorted(FLEETS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_fleet_is_valid(example: Path) -> None:
    proc = fleet_in_process("validate", str(example), cwd=example.parent)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_valid_file_reports_agent_count(tmp_path: Path) -> None:
    proc = fleet_in_process("validate", str(write_fleet(tmp_path, GOOD)), cwd=tmp_path)
    assert proc.returncode == 0
    assert "2 agents" in proc.stdout


# (name, replace-this, with-this, expected line, fragment of the message)
BAD = [
    ("unknown key", "      prompt: do a\n", "      prompt: do a\n      promt: typo\n", 15, "unknown key 'promt'"),
    ("unknown tier", "      tier: local\n", "      tier: lokal\n", 17, "unknown tier 'lokal'"),
    ("unknown gate", "gates: [tests]", "gates: [tests, lint]", 15, "unknown gate 'lint'"),
    ("bad runtime", "runtime: command}", "runtime: bash}", 8, "runtime"),
    ("bad duration", "timeout: 5m", "timeout: five minutes", 10, "timeout"),
    ("wrong type", "maxRunning: 2}", "maxRunning: two}", 7, "maxRunning"),
    ("duplicate key", "kind: Fleet\n", "kind: Fleet\nkind: Fleet\n", 3, "duplicate key"),
    ("tab indentation", "  name: t\n", "\tname: t\n", 4, "tab"),
    ("bad name", "- name: a\n", "- name: a/b\n", 12, "name"),
    ("duplicate names", "- name: b\n", "- name: a\n", 16, "duplicate agent name 'a'"),
    ("missing spec key", "  tiers:\n", "  tierz:\n", 6, "unknown key 'tierz'"),
    ("escaping root", "spec:\n", "spec:\n  worktrees: {root: ../outside}\n", 6, "escapes the repo"),
    ("command on claude tier", "      prompt: do a\n", "      prompt: do a\n      command: [x]\n", 15,
     "only for runtime `command`"),
    ("bad cron", "spec:\n", "spec:\n  reconcile: {cron: \"61 * * * *\"}\n", 6, "cron"),
    ("wrong apiVersion", "fleet/v1alpha1", "fleet/v2", 1, "apiVersion"),
    ("forEach without item", "    - name: b\n", "    - name: b\n      forEach: {items: [x, y]}\n", 16,
     "{item}"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_reported_with_position_and_hint(tmp_path: Path, case: tuple) -> None:
    _, old, new, line, fragment = case
    assert old in GOOD
    path = write_fleet(tmp_path, GOOD.replace(old, new, 1))
    proc = fleet_in_process("validate", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: .*{re.escape(fragment)}", proc.stderr), proc.stderr
    assert "hint:" in proc.stderr


def test_several_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("tier: local", "tier: nope").replace("gates: [tests]", "gates: [nada]")
    proc = fleet_in_process("validate", str(write_fleet(tmp_path, text)), cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown tier 'nope'" in proc.stderr and "unknown gate 'nada'" in proc.stderr
    assert "2 errors" in proc.stderr


def test_unknown_key_suggests_the_close_match(tmp_path: Path) -> None:
    proc = fleet_in_process("validate", str(write_fleet(tmp_path, GOOD.replace("maxRunning: 2", "maxRuning: 2"))),
                 cwd=tmp_path)
    assert "did you mean 'maxRunning'" in proc.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = fleet_in_process("validate", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_foreach_expands_items_and_glob(tmp_path: Path) -> None:
    from reconciler.spec.loader import load_fleet

    (tmp_path / "src" / "routes").mkdir(parents=True)
    for f in ("users.py", "admin.py"):
        (tmp_path / "src" / "routes" / f).write_text("")
    text = GOOD.replace("    - name: b\n", "    - name: audit-{item}\n      forEach: {glob: \"src/routes/*.py\"}\n"
                        "      prompt: Audit {item}\n", 1)
    text = text.replace("command: [python, agent.py]", "command: [python, agent.py, \"{item}\"]")
    loaded = load_fleet(write_fleet(tmp_path, text))
    names = [a.name for a in loaded.agents]
    assert names == ["a", "audit-src-routes-admin", "audit-src-routes-users"]
    admin = loaded.agent("audit-src-routes-admin")
    assert admin is not None and admin.command == ("python", "agent.py", "src/routes/admin.py")
    assert admin.branch == "fleet/t/audit-src-routes-admin"


def test_keys_named_like_types_keep_their_position(tmp_path: Path) -> None:
    text = GOOD.replace("    local: {runtime: command}\n",
                        "    Worker: {runtime: bash}\n    local: {runtime: command}\n")
    text = text.replace("      command: [python, agent.py]\n",
                        "      command: [python, agent.py]\n      env:\n        TOKEN: 42\n")
    path = write_fleet(tmp_path, text)
    proc = fleet_in_process("validate", str(path), cwd=tmp_path)
    assert re.search(rf"{re.escape(str(path))}:8:\d+: spec\.tiers\.Worker\.runtime", proc.stderr), proc.stderr
    assert re.search(rf"{re.escape(str(path))}:21:\d+: spec\.agents\[1\]\.env\.TOKEN", proc.stderr), proc.stderr
    assert proc.stderr.count("env.TOKEN") == 1  # one problem, not one per union member


def test_listed_items_keep_their_dots_in_names(tmp_path: Path) -> None:
    from reconciler.spec.loader import load_fleet

    text = GOOD.replace("    - name: b\n", "    - name: bump-{item}\n      forEach: {items: [v1.1, v1.2]}\n")
    loaded = load_fleet(write_fleet(tmp_path, text))
    assert [a.name for a in loaded.agents] == ["a", "bump-v1.1", "bump-v1.2"]


def test_quoted_number_gets_the_right_hint(tmp_path: Path) -> None:
    proc = fleet_in_process("validate", str(write_fleet(tmp_path, GOOD.replace("maxRunning: 2", 'maxRunning: "2"'))),
                 cwd=tmp_path)
    assert proc.returncode == 1 and "without quotes" in proc.stderr


# Messages say what to write instead, in words (issue 15, item 7): exact text, so a
# regression to pydantic's own wording ("Input should be ...", a regex) fails here.
def _errors(proc) -> list[str]:  # type: ignore[no-untyped-def]
    return proc.stderr.removeprefix("error: ").splitlines()


def test_a_number_for_a_duration_is_told_to_add_a_unit(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, GOOD.replace("timeout: 5m", "timeout: 10"))
    proc = fleet_in_process("validate", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert _errors(proc) == [f"{path}:10:40: spec.gates.tests.timeout: 10 is a number, not a duration",
                             "  hint: add a unit, e.g. timeout: 10m (minutes) or 10s (seconds)",
                             f"1 error in {path}"]


def test_a_duration_without_a_known_unit_names_the_rule(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, GOOD.replace("timeout: 5m", "timeout: 5 minutes"))
    assert _errors(fleet_in_process("validate", str(path), cwd=tmp_path))[:2] == [
        f"{path}:10:40: spec.gates.tests.timeout: '5 minutes' is not a duration",
        "  hint: durations are a number and a unit: 30s, 15m, 1h30m"]


def test_a_command_string_is_told_to_be_a_list(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, GOOD.replace("command: [python, agent.py]", "command: tools/agent.sh"))
    assert _errors(fleet_in_process("validate", str(path), cwd=tmp_path))[:2] == [
        (f"{path}:18:16: spec.agents[1].command: must be a list (the program and its arguments, one item each), "
         "not the string 'tools/agent.sh'"),
        "  hint: write it as a list: command: [tools/agent.sh]"]
    path.write_text(GOOD.replace("command: [python, agent.py]", "command: python agent.py --fast 'a b'"))
    assert _errors(fleet_in_process("validate", str(path), cwd=tmp_path))[1] == \
        '  hint: write it as a list: command: [python, agent.py, --fast, "a b"]'


@pytest.mark.parametrize(("name", "example"), [("a/b", "a-b"), ('"c d"', "c-d")])
def test_a_bad_agent_name_is_explained_in_words(tmp_path: Path, name: str, example: str) -> None:
    path = write_fleet(tmp_path, GOOD.replace("- name: a\n", f"- name: {name}\n"))
    shown = name.strip('"')
    assert _errors(fleet_in_process("validate", str(path), cwd=tmp_path))[:2] == [
        (f"{path}:12:13: spec.agents[0].name: {shown!r} is not a valid name: use letters, digits, '.', '_' and "
         "'-', starting with a letter or digit"),
        (f"  hint: e.g. {example!r}; agent names become directory and git branch names ({{item}} is allowed "
         "with forEach)")]


def test_a_bad_env_name_and_a_bad_map_key_name_their_map(tmp_path: Path) -> None:
    text = GOOD.replace("    local: {runtime: command}\n",
                        "    local: {runtime: command}\n    my tier: {runtime: command}\n")
    text = text.replace("      command: [python, agent.py]\n",
                        "      command: [python, agent.py]\n      env: {MY-VAR: x}\n")
    path = write_fleet(tmp_path, text)
    assert _errors(fleet_in_process("validate", str(path), cwd=tmp_path)) == [
        (f"{path}:9:5: spec.tiers: 'my tier' is not a valid name: use letters, digits, '.', '_' and '-', starting "
         "with a letter or digit"),
        "  hint: e.g. 'my-tier'; names become directory and git branch names",
        (f"{path}:20:13: spec.agents[1].env: 'MY-VAR' is not a valid environment variable name: use letters, "
         "digits and '_', not starting with a digit"),
        "  hint: e.g. 'MY_VAR'",
        f"2 errors in {path}"]


def test_a_missing_file_has_the_error_prefix(tmp_path: Path) -> None:
    proc = fleet_in_process("validate", "nope.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (1, ("error: nope.yaml: no such file\nhint: check the path to your "
                                                  "fleet.yaml\n"))


def test_validate_of_several_files_says_which_are_invalid(tmp_path: Path) -> None:
    good = write_fleet(tmp_path, GOOD, name="good.yaml")
    bad = write_fleet(tmp_path, GOOD.replace("tier: local", "tier: nope"), name="bad.yaml")
    # a `claude` on PATH, so the stderr below is the errors only, whether this machine has one or not
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\n")
    (fake / "claude").chmod(0o755)
    proc = fleet_in_process("validate", "good.yaml", "bad.yaml", "nope.yaml", cwd=tmp_path,
                 env={"PATH": f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert proc.returncode == 1 and good.exists() and bad.exists()
    assert proc.stdout == "good.yaml: valid (fleet t, 2 agents)\n"
    assert _errors(proc) == ["bad.yaml:17:13: unknown tier 'nope'",
                             "  hint: declared tiers: worker, local; declare it under spec.tiers",
                             "1 error in bad.yaml",
                             "nope.yaml: no such file",
                             "  hint: check the path to your fleet.yaml",
                             "2 of 3 files are invalid: bad.yaml, nope.yaml"]


def test_a_saved_plan_is_not_read_as_a_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text('{"apiVersion": "fleet/v1alpha1", "kind": "SavedPlan", "plan": {}}')
    proc = fleet_in_process("validate", "plan.json", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1, ("error: plan.json is a saved plan, not a fleet file\nhint: check that it is still current with "
            "`fleet apply plan.json --dry-run`; apply it with `fleet apply plan.json`\n"))
