#!/usr/bin/env python3
"""Regenerate the CLI examples in docs/ from real runs, so they cannot drift from the tool.

    PYTHONPATH=. .venv/bin/python scripts/gen_doc_examples.py           # rewrite them in docs/
    PYTHONPATH=. .venv/bin/python scripts/gen_doc_examples.py --check   # exit 1 with a diff if stale

Every example in docs/ sits between marker comments, named after what it shows:

    <!-- example: status -->
    ```console
    $ fleet status fleet.yaml
    ...
    ```
    <!-- /example -->

An input the docs show with its output (a bad fleet file) sits between
`<!-- example-input: bad.yaml -->` and `<!-- /example-input -->`, around its yaml block:
the docs own it, the example shows what `fleet validate bad.yaml` prints for it.

The text between the example markers is replaced by what the real CLI prints in one throwaway git
repository with the demo fleet (fleets/demo.yaml: three scripted `command` agents, at most
two running), run in-process through its click entry point (the same code as the `fleet`
command, without one interpreter start per command). The story: validate, diff, apply, two
agents finish while the third waits for a slot (status, describe, logs), an orphan session
appears (a stop), the third runs while its spec is edited (a replace), then it is removed
from the file while its commit is unmerged (a blocked prune); and, in a CI clone of a pull
request, the spec-level change of the audit fleet (`fleet diff --base-rev`).

What would differ between two runs is normalised, never left out: the repo's path reads
/tmp/docrepo, times read 2026-01-01T12:00:01 (a start), :03 (an end) or :04 (any other
moment), pids and session ids are numbered in order of appearance, ages read 5s. Commits
are made with fixed author and committer dates, so their shas are the same every time.
tests/test_doc_examples.py runs this and fails when a committed example differs.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
UPDATE = "PYTHONPATH=. .venv/bin/python scripts/gen_doc_examples.py"
SHOWN_REPO = "/tmp/docrepo"
MARKER = re.compile(r"(<!-- example: (?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)(<!-- /example -->)", re.S)
GIT_DATE = "2026-01-01T12:00:00+00:00"

# Inputs the docs show next to an example (the bad files of docs/fleet-yaml.md): the docs own them,
# the tool's output for them is generated.
INPUT = re.compile(r"<!-- example-input: (?P<file>[A-Za-z0-9_.-]+) -->\n```yaml\n(?P<text>.*?)```\n"
                   r"<!-- /example-input -->", re.S)


# The pull request of docs/gitops.md's `fleet diff --base-rev` example: the audit fleet before
# (origin/main) and after (the PR's head, which also adds src/routes/admin.py).
AUDIT_BEFORE = """\
apiVersion: fleet/v1alpha1
kind: Fleet
metadata: {name: audit}
spec:
  tiers:
    worker: {runtime: claude, model: sonnet, maxRunning: 2}
    local: {runtime: command}
  concurrency: {maxRunning: 4}
  budget: {usdPerDay: 50}
  gates:
    tests: {run: pytest, timeout: 15m, maxAttempts: 3}
  agents:
    - name: audit-{item}
      forEach: {glob: "src/routes/*.py"}
      tier: worker
      prompt: Audit {item} for missing auth checks, fix what you find, commit.
      gates: [tests]
    - name: docs
      tier: local
      command: [python, tools/docs.py]
"""
AUDIT_AFTER = (AUDIT_BEFORE
               .replace("model: sonnet, maxRunning: 2", "model: opus, maxRunning: 4")
               .replace("concurrency: {maxRunning: 4}", "concurrency: {maxRunning: 8}")
               .replace("budget: {usdPerDay: 50}", "budget: {usdPerDay: 80, perTier: {worker: 60}}\n"
                        "  locks: {build: {slots: 1}}")
               .replace("tests: {run: pytest, timeout: 15m, maxAttempts: 3}",
                        'tests: {run: "pytest -q", timeout: 15m, maxAttempts: 2}\n'
                        '    lint: {run: "ruff check .", timeout: 15m}')
               .replace("      gates: [tests]\n", "      gates: [tests, lint]\n      restart: Always\n")
               .replace("    - name: docs\n      tier: local\n      command: [python, tools/docs.py]",
                        "    - name: changelog\n      tier: local\n      command: [python, tools/changelog.py]"))


# --- running the CLI ---------------------------------------------------------------------------------------

@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Demo:
    """The throwaway repo and the CLI run in it, with an environment that is the same every time."""

    work: Path
    repo: Path = field(init=False)
    env: dict[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.repo = self.work / "docrepo"
        gitconfig = self.work / "gitconfig"
        gitconfig.write_text("[user]\n\tname = fleet demo\n\temail = demo@fleet.invalid\n"
                             "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
        self.env = {
            "PYTHONPATH": str(ROOT),  # sessions run this checkout's reconciler (the demo agent, the host)
            "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE,  # the same commits, the same shas
            "GIT_AUTHOR_NAME": "fleet demo agent", "GIT_AUTHOR_EMAIL": "demo-agent@fleet.invalid",
            "GIT_COMMITTER_NAME": "fleet demo agent", "GIT_COMMITTER_EMAIL": "demo-agent@fleet.invalid",
            "DEMO_DELAY": "0",  # the demo agents work without pauses: the story takes seconds
            "OTEL_SDK_DISABLED": "true", "COLUMNS": None, "LINES": None, "FORCE_COLOR": None, "NO_COLOR": None,
            "TERM": "dumb",
        }
        for key in os.environ:  # nothing of the caller's fleet or git setup may leak into the runs
            if key.startswith(("FLEET_", "GIT_")) and key not in self.env:
                self.env[key] = None

    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = {k: v for k, v in {**os.environ, **self.env}.items() if v is not None}
        return subprocess.run(["git", *args], cwd=cwd or self.repo, env=env, check=True, capture_output=True,
                              text=True).stdout

    def fleet(self, *args: str, cwd: Path | None = None, env: dict[str, str | None] | None = None) -> Run:
        from click.testing import CliRunner

        from reconciler.cli.main import cli

        with _cwd(cwd or self.repo):
            result = CliRunner().invoke(cli, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    def exit_path(self, agent: str) -> Path:
        from reconciler.engines import engine_for
        from reconciler.spec.loader import load_fleet

        return engine_for(load_fleet(self.repo / "fleet.yaml")).store.exit_path(agent)

    def wait_for_exit(self, *agents: str, timeout: float = 60.0) -> None:
        """Until each agent's session has written its exit record (the session host does, at the end)."""
        paths = [self.exit_path(a) for a in agents]
        deadline = time.monotonic() + timeout
        while not all(p.exists() for p in paths):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo agents {agents} did not finish within {timeout:g}s")
            time.sleep(0.05)


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --- normalising what differs between runs -----------------------------------------------------------------

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_PID = re.compile(r'(?P<pre>"pid": |\bpid )(?P<pid>\d+)')


class Normaliser:
    """Numbers pids and session ids in order of first appearance, across all examples."""

    def __init__(self, repo: Path) -> None:
        from reconciler.render.markdown import text as in_markdown

        paths = {str(repo), str(repo.resolve())}
        # as written in a PR comment too (markdown-escaped), the longest first
        self.repos = sorted(paths | {in_markdown(p) for p in paths}, key=len, reverse=True)
        self.pids: dict[str, str] = {}
        self.uuids: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        for path in self.repos:
            text = text.replace(path, SHOWN_REPO)
        text = _UUID.sub(lambda m: self.uuids.setdefault(
            m.group(0), f"6b3bd8a2-72d6-439d-a6d9-{len(self.uuids) + 1:012d}"), text)
        text = _PID.sub(lambda m: m.group("pre") + self.pids.setdefault(m.group("pid"), str(11901 + len(self.pids))),
                        text)
        text = "\n".join(_times(line) for line in text.split("\n"))
        text = re.sub(r'"(age_seconds|idle_seconds)": [0-9.]+', r'"\1": 5.0', text)
        text = _table_ages(text)
        return "\n".join(line.rstrip() for line in text.split("\n"))


def _times(line: str) -> str:
    def one(m: re.Match[str]) -> str:
        before = line[:m.start()].lower()
        stamp = m.group(0)
        if re.search(r"start|run-", before[-40:]):
            second = "01"
        elif re.search(r"finish|\"at\"", before[-40:]):
            second = "03"
        else:
            second = "04"
        if "." in stamp:
            return f"2026-01-01T12:00:{second}.000+00:00"
        offset = stamp[19:20]
        return f"2026-01-01T12:00:{second}" + ("+0000" if offset in ("+", "-") else offset)

    return _TIME.sub(one, line)


def _table_ages(text: str) -> str:
    """The status table's AGE and IDLE cells read 5s (columns kept where the tool put them)."""
    lines = text.split("\n")
    header = next((line for line in lines if line.startswith("AGENT ") and " AGE " in line), None)
    if header is None:
        return text
    for col in ("AGE", "IDLE"):
        start = header.find(f" {col} ") + 1
        if start == 0:
            continue
        width = len(col)
        for i, line in enumerate(lines):
            cell = line[start:start + width + 1]
            if re.fullmatch(r"\d[\dsmhd]* *", cell) and line[start - 1:start] == " ":
                if len(cell.rstrip()) > width:
                    raise RuntimeError(f"status ran late: {col} {cell.strip()!r} does not fit; run again")
                lines[i] = line[:start] + "5s".ljust(len(cell)) + line[start + len(cell):]
    return "\n".join(lines)


# --- the story ---------------------------------------------------------------------------------------------

def console(command: str, run: Run, *, stderr: bool = False) -> str:
    """A console block: the command and what it printed (stderr first: it is printed first)."""
    out = (run.stderr + run.stdout) if stderr else run.stdout
    return f"```console\n$ {command}\n{out.rstrip()}\n```\n"


def json_block(command: str, data: object) -> str:
    return (f"```console\n$ {command}\n```\n\n```json\n{json.dumps(data, indent=2, sort_keys=True)}\n```\n")


def generate(work: Path) -> dict[str, str]:
    """Every example, by name: the text that belongs between its markers."""
    demo = Demo(work)
    demo.repo.mkdir(parents=True)
    demo.git("init", "-q", "-b", "main")
    (demo.repo / "README.md").write_text("# fleet demo repo\n")
    demo.git("add", "README.md")
    demo.git("commit", "-q", "-m", "demo repo")
    shutil.copy(ROOT / "fleets" / "demo.yaml", demo.repo / "fleet.yaml")
    norm = Normaliser(demo.repo)
    ex: dict[str, str] = {}

    def keep(name: str, text: str) -> None:
        ex[name] = norm(text)

    # validation: fleet-yaml.md
    keep("validate", console("fleet validate fleet.yaml", demo.fleet("validate", "fleet.yaml")))
    for name, text in doc_inputs().items():
        (demo.work / name).write_text(text)
        run = demo.fleet("validate", name, cwd=demo.work)
        keep(f"validate-{name.removesuffix('.yaml')}", console(f"fleet validate {name}", run, stderr=True))
    keep("validate-warning", _readme_fleet_without_claude(demo))

    # the first plan: output.md
    diff = demo.fleet("diff", "fleet.yaml")
    keep("diff", console("fleet diff fleet.yaml", diff))
    keep("diff-json", json_block("fleet diff fleet.yaml -o json",
                                 json.loads(demo.fleet("diff", "fleet.yaml", "-o", "json").stdout)))
    saved = demo.fleet("diff", "fleet.yaml", "--target", "notes-parser", "--out", "plan.json")
    keep("diff-out", f"```console\n$ fleet diff fleet.yaml --target notes-parser --out plan.json\n"
                     f"{saved.stdout.rstrip()}\n{saved.stderr.rstrip()}\n```\n")
    (demo.repo / "plan.json").unlink()

    applied = demo.fleet("apply", "fleet.yaml", "--yes")
    keep("apply", console("fleet apply fleet.yaml --yes", applied))
    demo.wait_for_exit("notes-parser", "notes-storage")

    # two have finished, the third waits for a slot: status, describe, logs (nothing written since)
    status = json.loads(demo.fleet("status", "fleet.yaml", "-o", "json").stdout)
    status["agents"] = [a for a in status["agents"] if a["agent"] != "notes-storage"]  # for length
    keep("status-json", json_block("fleet status fleet.yaml -o json", status))
    # as an 80-column terminal shows it (the demo's last screen), and every column
    keep("status", console("fleet status fleet.yaml", demo.fleet("status", "fleet.yaml", env={"COLUMNS": "80"})))
    keep("status-wide", console("fleet status fleet.yaml -o wide", demo.fleet("status", "fleet.yaml", "-o", "wide")))
    keep("describe", console("fleet describe fleet.yaml notes-parser",
                             demo.fleet("describe", "fleet.yaml", "notes-parser")))
    keep("logs", console("fleet logs fleet.yaml notes-parser", demo.fleet("logs", "fleet.yaml", "notes-parser")))
    keep("logs-raw", console("fleet logs fleet.yaml notes-parser --raw",
                             demo.fleet("logs", "fleet.yaml", "notes-parser", "--raw")))
    keep("logs-all", console("fleet logs --all fleet.yaml",
                             demo.fleet("logs", "--all", "fleet.yaml")))
    keep("logs-claude", _claude_log())

    keep("orphan-stop", _orphan_stop(demo))

    # the third runs (a little slower, so its spec can be edited while it runs: a replace)
    # (2 s a step: two diffs must run while it does, also on a loaded machine)
    demo.fleet("apply", "fleet.yaml", "--yes", env={"DEMO_DELAY": "2"})
    spec = (demo.repo / "fleet.yaml").read_text()
    edited = spec.replace('DEMO_STEPS: "3"', 'DEMO_STEPS: "4"\n        TOKEN: {fromEnv: DEMO_TOKEN}')
    edited = edited.replace("and commit them.", "and commit them.\n        Keep each note under ten lines.")
    assert edited.count("DEMO_TOKEN") == 1 and "ten lines" in edited, "fleets/demo.yaml changed: adapt the story"
    (demo.repo / "fleet.yaml").write_text(edited)
    table = demo.fleet("diff", "fleet.yaml").stdout
    keep("replace-line", "```\n" + next(line for line in table.splitlines() if "replace" in line) + "\n```\n")
    replace = next(a for a in json.loads(demo.fleet("diff", "fleet.yaml", "-o", "json").stdout)["actions"]
                   if a["kind"] == "replace")
    keep("replace-json", f"```json\n{json.dumps(replace, indent=2, sort_keys=True)}\n```\n")
    (demo.repo / "fleet.yaml").write_text(spec)
    demo.wait_for_exit("notes-api")
    demo.fleet("apply", "fleet.yaml", "--yes")

    # then it is no longer declared while its commit is on its branch only: a blocked prune
    (demo.repo / "fleet.yaml").write_text(spec.replace("[parser, storage, api]", "[parser, storage]"))
    plan = json.loads(demo.fleet("diff", "fleet.yaml", "-o", "json").stdout)
    blocked = next(a for a in plan["actions"] if a["kind"] == "blocked")
    keep("blocked-prune", f"```json\n{json.dumps(blocked, indent=2, sort_keys=True)}\n```\n")
    markdown = demo.fleet("diff", "fleet.yaml", "-o", "markdown").stdout
    keep("diff-markdown", f"````markdown\n{markdown.rstrip()}\n````\n")
    keep("diff-base-rev", _spec_diff(demo))
    return ex


def _spec_diff(demo: Demo) -> str:
    """A pull request's spec-level change, in a CI clone of its own (reads git only)."""
    clone = demo.work / "audit"
    clone.mkdir()
    demo.git("init", "-q", "-b", "main", cwd=clone)
    routes = clone / "src" / "routes"
    routes.mkdir(parents=True)
    for name in ("users", "billing"):
        (routes / f"{name}.py").write_text(f"# the {name} routes\n")
    (clone / "fleet.yaml").write_text(AUDIT_BEFORE)
    demo.git("add", "-A", cwd=clone)
    demo.git("commit", "-q", "-m", "audit fleet", cwd=clone)
    demo.git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=clone)
    (routes / "admin.py").write_text("# the admin routes\n")
    (clone / "fleet.yaml").write_text(AUDIT_AFTER)
    demo.git("add", "-A", cwd=clone)
    demo.git("commit", "-q", "-m", "opus, lint gate, build lock, admin routes, changelog", cwd=clone)
    demo.git("checkout", "-q", "--detach", cwd=clone)  # as CI checks out a pull request
    run = demo.fleet("diff", "--base-rev", "origin/main", "fleet.yaml", cwd=clone)
    return console("fleet diff --base-rev origin/main fleet.yaml", run)


def _claude_log() -> str:
    """A real claude 2.1.332 session (stream-json, a failed gate, the resume), captured against the
    scripted model server (tests/data), as `fleet logs` renders it."""
    from reconciler.render.session_log import render_text

    log = (ROOT / "tests" / "data" / "claude-2.1.332-session.log").read_text()
    shown = "\n".join(t.plain for t in render_text(log))
    return f"```console\n$ fleet logs fleet.yaml solver\n{shown}\n```\n"


def _orphan_stop(demo: Demo) -> str:
    """A session of this fleet that no record knows (an agent `ghost`, long gone from the file)."""
    from reconciler.observe.gitrepo import GitRepo
    from reconciler.observe.processes import ENV_AGENT, ENV_FLEET, ENV_REPO

    env = {k: v for k, v in {**os.environ, **demo.env}.items() if v is not None}
    env.update({ENV_FLEET: "demo", ENV_REPO: str(GitRepo(demo.repo).common_dir), ENV_AGENT: "ghost"})
    ghost = subprocess.Popen(["sh", "-c", "sleep 300"], env=env, start_new_session=True)
    try:
        plan = json.loads(demo.fleet("diff", "fleet.yaml", "-o", "json").stdout)
        stop = next(a for a in plan["actions"] if a["kind"] == "stop" and a["agent"] == "ghost")
    finally:
        ghost.kill()
        ghost.wait()
    return f"```json\n{json.dumps(stop, indent=2, sort_keys=True)}\n```\n"


def _readme_fleet_without_claude(demo: Demo) -> str:
    """The README's minimal fleet, validated where `claude` is not installed."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A minimal fleet.yaml"):]
    text = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n") + 8)]
    where = demo.work / "minimal"
    where.mkdir()
    (where / "fleet.yaml").write_text(text)
    only_git = demo.work / "bin"  # a PATH with git and no agent CLI
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    run = demo.fleet("validate", "fleet.yaml", cwd=where, env={"PATH": str(only_git)})
    return console("fleet validate fleet.yaml", run, stderr=True)


def doc_inputs() -> dict[str, str]:
    found: dict[str, str] = {}
    for doc in sorted(DOCS.glob("*.md")):
        for m in INPUT.finditer(doc.read_text(encoding="utf-8")):
            found[m.group("file")] = m.group("text")
    return found


# --- the docs ----------------------------------------------------------------------------------------------

def rewritten(examples: dict[str, str]) -> tuple[dict[Path, tuple[str, str]], list[str]]:
    """{doc: (text now, text with every example regenerated)} and the problems with the markers."""
    out: dict[Path, tuple[str, str]] = {}
    used: set[str] = set()
    problems: list[str] = []
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text(encoding="utf-8")

        def fill(m: re.Match[str], doc: Path = doc) -> str:
            name = m.group("name")
            if name not in examples:
                problems.append(f"{doc.relative_to(ROOT)}: unknown example {name!r} (known: {', '.join(examples)})")
                return m.group(0)
            used.add(name)
            return m.group(1) + examples[name] + m.group(4)

        new = MARKER.sub(fill, text)
        if new != text or MARKER.search(text):
            out[doc] = (text, new)
    problems += [f"example {name!r} is generated but no doc shows it" for name in examples if name not in used]
    return out, problems


def stale(examples: dict[str, str]) -> list[str]:
    """A unified diff per doc whose examples differ from what the tool prints now."""
    docs, problems = rewritten(examples)
    diffs = ["".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                          f"{doc.relative_to(ROOT)} (committed)", f"{doc.relative_to(ROOT)} (now)"))
             for doc, (old, new) in docs.items() if old != new]
    return problems + diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an example is stale")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fleet-docs-") as tmp:
        examples = generate(Path(tmp))
    if args.check:
        problems = stale(examples)
        for problem in problems:
            print(problem)
        if problems:
            print(f"docs/ examples are stale; update them with `{UPDATE}`", file=sys.stderr)
        return 1 if problems else 0
    docs, problems = rewritten(examples)
    for problem in problems:
        print(problem, file=sys.stderr)
    for doc, (old, new) in docs.items():
        if old != new:
            doc.write_text(new, encoding="utf-8")
            print(f"updated {doc.relative_to(ROOT)}")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
