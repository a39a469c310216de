"""`fleet diff -o markdown`: a pull-request comment a bot can update in place."""
from __future__ import annotations

from reconciler.plan.actions import Action, Plan
from reconciler.render import markdown
from reconciler.render.plan import outcome_line, to_markdown

BLOCKED_PRUNE = Action("blocked", "old-agent", "prune refused: 1 uncommitted file(s), 1 unmerged commit(s)", "worker",
                       {"files": ["notes.md"], "commits": ["abc1234 </details> | *wip*"], "stashes": [],
                        "worktree": "/srv/repo/.fleet/worktrees/old-agent", "branch": "fleet/t/old-agent"})


def test_markdown_has_marker_summary_and_one_collapsed_block_per_agent() -> None:
    plan = Plan("t", (Action("create-worktree", "a", "no worktree; branch fleet/t/a from main", "worker"),
                      Action("spawn", "a", "new agent", "worker"),
                      Action("wait", "b", "spawn waits: concurrency.maxRunning=1 reached", "worker")))
    md = to_markdown(plan)
    lines = md.splitlines()
    assert lines[0] == "<!-- fleet-plan:t -->"
    assert "**Plan: 1 worktree(s) to create, 1 to spawn, 1 waiting.**" in lines
    assert md.count("<details>") == 2 and md.count("</details>") == 2 and "[!WARNING]" not in md
    assert "<summary><code>a</code>: + create-worktree, + spawn</summary>" in md
    assert to_markdown(plan) == md  # nothing varies between runs: an in-place update is a no-op


def test_blocked_prunes_are_highlighted_with_the_work_at_stake() -> None:
    plan = Plan("t", (Action("spawn", "a", "new agent", "worker"), BLOCKED_PRUNE))
    md = to_markdown(plan)
    warning = md[md.index("> [!WARNING]"):md.index("<details")]
    assert "<code>old-agent</code>: prune refused: 1 uncommitted file(s)" in warning
    assert ">   - file: notes.md" in warning and "abc1234" in warning
    assert "<details open>\n<summary><code>old-agent</code>: ! blocked <b>(blocked)</b></summary>" in md


def test_text_from_the_repo_cannot_break_the_comment() -> None:
    md = to_markdown(Plan("t", (BLOCKED_PRUNE,)))
    assert "commit: abc1234 &lt;/details&gt; | \\*wip\\*" in md  # a commit subject is text, not markup
    assert md.count("</details>") == 1
    assert markdown.code("a|b`c") == "<code>a&#124;b`c</code>"


def test_a_huge_plan_stays_under_the_comment_limit() -> None:
    actions = tuple(Action("spawn", f"agent-{i:05d}", "new agent " + "x" * 200, "worker") for i in range(2000))
    md = to_markdown(Plan("t", actions))
    assert len(md) < 65_536
    assert "more agents not shown (comment size limit)" in md and "fleet diff -o json" in md
    assert md.splitlines()[0] == "<!-- fleet-plan:t -->"


def test_an_outcome_line_says_what_happened() -> None:
    """Issue 15 item 4: a gate that failed (fed back or given up) is never shown as a green `ok`."""
    from reconciler.engines.executor import Outcome

    gate = Action("run-gate", "g1", "session exited 0; run gates never", "w", {"gates": ["never"], "resume": False})
    spawn = Action("spawn", "a1", "new agent", "w")
    assert outcome_line(Outcome(gate, True, "gate never failed 2/2 times: exit 1", gate_failed=True)) == \
        "    ~ run-gate        g1: [bold red]gate failed[/] gate never failed 2/2 times: exit 1"
    assert outcome_line(Outcome(gate, True, "gates passed: never")) == \
        "    ~ run-gate        g1: [green]ok[/] gates passed: never"
    assert outcome_line(Outcome(spawn, False, "cannot start 'x': No such file or directory")) == \
        "    + spawn           a1: [bold red]failed[/] cannot start 'x': No such file or directory"
