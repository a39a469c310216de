"""`fleet` entry point: argument parsing and dispatch only.

Heavy modules are imported inside each command so `fleet --help`, `fleet validate`
and `fleet status` start fast.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from .. import __version__
from ..errors import EXIT_DIFF_ERROR, EXIT_ERROR

OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json", "markdown"]), default="table",
                      show_default=True, help="Output format.")
ARCHIVE = click.option("--archive", is_flag=True,
                       help="Before pruning a worktree with unsaved or unmerged work, save all of it under "
                            "refs/fleet/archive/<fleet>/<agent>/<time>, then prune.")
TARGET = click.option("--target", "targets", multiple=True, metavar="NAME",
                      help="Limit to this agent (repeatable).")


def _set_max_file_size(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        from ..spec import limits

        limits.configure(max_bytes=value)


def _set_allow_outside_repo(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from ..spec import limits

        limits.configure(allow_outside_repo=True)


def input_limits(command: Any) -> Any:
    """The bounds on reading a fleet file that an operator may move (spec/limits.py,
    docs/fleet-yaml.md "Limits"); the file itself never can."""
    command = click.option("--allow-outside-repo", is_flag=True, expose_value=False, callback=_set_allow_outside_repo,
                           help="Let spec.repo (or FILE, through a symlink) lead outside the repository that holds "
                                "FILE. Also FLEET_ALLOW_OUTSIDE_REPO=1.")(command)
    return click.option("--max-file-size", type=click.IntRange(min=1), metavar="BYTES", expose_value=False,
                        callback=_set_max_file_size,
                        help="Refuse a fleet file larger than this (default 1 MiB). Also FLEET_MAX_FILE_SIZE.")(command)


def _run(command: str, /, *, error_code: int = EXIT_ERROR, first: str | None = None, **kwargs: Any) -> None:
    """Import reconciler.commands.<command> and exit with what its run() returns. `first`: a
    function of that module to try before, with the same arguments but no consoles, so that
    it can answer without Rich (`fleet status` and the loop's snapshot); None from it: run()."""
    from .errors import guarded

    def call() -> int:
        module = importlib.import_module(f"reconciler.commands.{command}")
        if first is not None and (early := getattr(module, first)(**kwargs)) is not None:
            return int(early)
        from ..render.terminal import console

        return module.run(console=console(), err=console(stderr=True), **kwargs)

    code = guarded(call, error_code=error_code)
    if (telemetry := sys.modules.get("reconciler.telemetry")) is not None:
        telemetry.shutdown()  # flush spans and metrics (nothing to do when telemetry is off)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fleet")
def cli() -> None:
    """Declarative reconciler for fleets of coding-agent sessions.

    \b
    Typical use:
      fleet validate fleet.yaml      # check the file (pre-commit, CI)
      fleet diff fleet.yaml          # what would change (dry run, PR review)
      fleet apply fleet.yaml         # converge once
      fleet status fleet.yaml        # one row per agent
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@input_limits
def validate(files: tuple[str, ...]) -> None:
    """Parse and check fleet files; no side effects.

    Exit 0 when every file is valid, 1 otherwise; every problem is printed as
    file:line:col with a hint.

    \b
    Example:
      fleet validate fleets/*.yaml
    """
    _run("validate", files=list(files))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Choice(["table", "json", "markdown", "plan"]), default="table",
              show_default=True, help="Output format; `plan` prints a saved plan (as --out writes).")
@TARGET
@ARCHIVE
@click.option("--base-rev", metavar="REV",
              help="Show the spec-level change from FILE at git revision REV to FILE now (agents, tiers, "
                   "caps, budgets, gates, locks) instead of the plan. Reads git only.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), metavar="PLANFILE",
              help="Also save the plan, with what it was made from, for `fleet apply PLANFILE`.")
@click.option("--connect", is_flag=True,
              help="placement.engine ray: connect to the Ray cluster and fetch spec.remote to plan against the "
                   "live sessions. Without it, diff opens no connection and plans from local state only.")
@input_limits
def diff(file: str, output: str, targets: tuple[str, ...], archive: bool, base_rev: str | None,
         out_file: str | None, connect: bool) -> None:
    """Show what `fleet apply` would do, and why. Never changes anything.

    Safe on untrusted pull requests: it writes nothing (but PLANFILE), spawns nothing,
    runs no gate or command from the file, opens no connection (unless --connect),
    reads nothing outside FILE's repository and is bounded in time and memory
    (docs/gitops.md). Exit 0 no changes, 1 changes, 2 error.

    \b
    Examples:
      fleet diff fleet.yaml
      fleet diff fleet.yaml -o markdown > plan.md     # a PR comment
      fleet diff fleet.yaml -o json | jq '.actions[]'
      fleet diff --base-rev origin/main fleet.yaml    # what a PR changes in the spec
      fleet diff fleet.yaml --out plan.json           # then: fleet apply plan.json
    """
    _run("diff", error_code=EXIT_DIFF_ERROR, first="run_plain", file=file, output=output, targets=list(targets),
         archive=archive, base_rev=base_rev, out_file=out_file, connect=connect)


YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
LOCK_TIMEOUT = click.option("--lock-timeout", type=float, default=None, metavar="SECONDS",
                            help="Give up if the fleet lock is not free within this time (default: wait).")
GRACE = click.option("--grace", type=float, default=10.0, show_default=True, metavar="SECONDS",
                     help="Time between SIGTERM and SIGKILL when stopping a session.")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@YES
@click.option("--dry-run", is_flag=True, help="Show the plan only (same as `fleet diff`).")
@TARGET
@ARCHIVE
@LOCK_TIMEOUT
@GRACE
@input_limits
def apply(file: str, yes: bool, dry_run: bool, targets: tuple[str, ...], archive: bool,
          lock_timeout: float | None, grace: float) -> None:
    """Converge the fleet once: create worktrees, spawn/resume/replace sessions, prune.

    Runs under the fleet lock (a concurrent apply waits). Shows the plan and asks
    before acting unless --yes. Exit 0 converged or progressing, 1 error, 3 blocked
    (a prune or stop was refused to protect work; nothing was deleted).

    FILE may be a saved plan (`fleet diff FILE --out PLANFILE`): then exactly its
    actions run, without asking, or none if the spec or the observed state it was
    made from has changed since (exit 1, saying what moved).

    \b
    Examples:
      fleet apply fleet.yaml            # review, type yes
      fleet apply fleet.yaml --yes      # CI / cron
      fleet apply fleet.yaml --target audit-users --yes
      fleet apply plan.json             # a saved plan
    """
    _run("apply", file=file, yes=yes, dry_run=dry_run, targets=list(targets), lock_timeout=lock_timeout,
         grace=grace, archive=archive)


STATUS_OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table",
                             show_default=True,
                             help="table: fitted to the terminal (less important columns give way); wide: every "
                                  "column; json: FleetStatus.")
WATCH = click.option("-w", "--watch", is_flag=True, help="Redraw in place until Ctrl-C (then exit 0).")
WATCH_INTERVAL = click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
                              metavar="SECONDS", help="With --watch: time between refreshes.")


REFRESH = click.option("--refresh", is_flag=True,
                       help="Observe now even when a running loop has a fresh observation (git status in every "
                            "worktree: slower on a large fleet).")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@STATUS_OUTPUT
@REFRESH
@WATCH
@WATCH_INTERVAL
@input_limits
def status(file: str | None, output: str, refresh: bool, watch: bool, interval: float) -> None:
    """One row per agent, grouped: Needs attention, Working, Pending, Done.

    Columns: agent, phase, sync, tier/model, branch, dirty, ahead, pid, age, idle, cost,
    reason. The table fits the terminal: agent, phase and reason are never cut (the
    reason wraps), the other columns give way, least useful first; `-o wide` shows all.
    FILE defaults to ./fleet.yaml. While `fleet reconcile FILE --watch` runs, this shows
    the loop's last observation (and says how old it is) once a cheap check finds that
    nothing it saw has moved; otherwise, or with --refresh, it observes now.

    \b
    Examples:
      fleet status fleet.yaml
      fleet status fleet.yaml --refresh
      fleet status --watch             # redraws every 2 s until Ctrl-C
      fleet status fleet.yaml -o wide
      fleet status fleet.yaml -o json | jq '.agents[] | {agent, phase, group}'
    """
    _status(file, output, watch, interval, refresh)


def _status(file: str | None, output: str, watch: bool, interval: float, refresh: bool = False) -> None:
    if watch and output == "json":
        raise click.UsageError("--watch redraws the table; for JSON, run `fleet status -o json` when you need it")
    _run("status", first="run_snapshot", file=_fleet_file(file), output=output, watch=watch, interval=interval,
         refresh=refresh)


@cli.group()
def get() -> None:
    """kubectl-style listing (`fleet get agents`)."""


@get.command("agents")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@STATUS_OUTPUT
@REFRESH
@WATCH
@WATCH_INTERVAL
@input_limits
def get_agents(file: str | None, output: str, refresh: bool, watch: bool, interval: float) -> None:
    """Same as `fleet status [FILE]`."""
    _status(file, output, watch, interval, refresh)


def _fleet_file(file: str | None) -> str:
    """FILE, or ./fleet.yaml when the command allows leaving it out."""
    if file:
        return file
    if os.path.exists("fleet.yaml"):
        return "fleet.yaml"
    raise click.UsageError("no FILE given and no ./fleet.yaml here; pass the fleet file")


def _file_and_name(args: tuple[str, ...]) -> tuple[str, str]:
    """`[FILE] NAME`: FILE defaults to ./fleet.yaml, as for `fleet status`."""
    if len(args) > 2:
        raise click.UsageError("expected [FILE] NAME")
    if len(args) == 1 and args[0].endswith((".yaml", ".yml")) and os.path.isfile(args[0]):
        raise click.UsageError(f"missing NAME: which agent of {args[0]}?")
    return (args[0], args[1]) if len(args) == 2 else (_fleet_file(None), args[0])


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[FILE] NAME")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@input_limits
def describe(args: tuple[str, ...], output: str) -> None:
    """Everything about agent NAME: phase, conditions, gate output, why it stopped, log tail
    (FILE defaults to ./fleet.yaml).

    \b
    Examples:
      fleet describe audit-users
      fleet describe fleets/audit.yaml audit-users -o json
    """
    file, name = _file_and_name(args)
    _run("describe", file=file, name=name, output=output)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[FILE] NAME")
@click.option("-o", "--output", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@input_limits
def review(args: tuple[str, ...], output: str) -> None:
    """The review packet of agent NAME before delivery: final message, commits, diffstat against the
    delivery target, gate results, cost, conditions (docs/delivery.md).

    \b
    Examples:
      fleet review notes-api
      fleet review fleets/app.yaml notes-api -o markdown > review.md
    """
    file, name = _file_and_name(args)
    _run("review", file=file, name=name, output=output)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[FILE] NAME")
@click.option("--as", "by", metavar="WHO", help="Who approves (default: $USER).")
@input_limits
def approve(args: tuple[str, ...], by: str | None) -> None:
    """Approve agent NAME's branch as it is now for the merge queue (delivery.approval: required).
    Recorded with who and when; a new run of the agent needs a new approval.

    \b
    Examples:
      fleet approve notes-api
      fleet approve fleets/app.yaml notes-api --as alice
    """
    file, name = _file_and_name(args)
    _run("approve", file=file, name=name, by=by)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[FILE] NAME")
@click.option("-m", "--message", required=True, help="What to change; the resumed session gets it.")
@click.option("--as", "by", metavar="WHO", help="Who rejects (default: $USER).")
@input_limits
def reject(args: tuple[str, ...], message: str, by: str | None) -> None:
    """Reject agent NAME's work: recorded with who and when, and its session is resumed with the message.

    \b
    Examples:
      fleet reject notes-api -m "keep the old endpoint working"
    """
    file, name = _file_and_name(args)
    _run("reject", file=file, name=name, message=message, by=by)


@cli.command()
@click.argument("args", nargs=-1, metavar="[FILE] NAME")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing while the session runs, and across its resumes and restarts, until fleet has "
                   "no further run of it coming (or Ctrl-C).")
@click.option("--raw", is_flag=True, help="The log as written: the CLIs' JSON events, unrendered.")
@click.option("--all", "all_agents", is_flag=True,
              help="Every agent's log, each line prefixed with its name (with -f: interleaved as written).")
@input_limits
def logs(args: tuple[str, ...], follow: bool, raw: bool, all_agents: bool) -> None:
    """What agent NAME's session did: its messages, each tool call with a short result, gate
    runs, resumes and restarts, the final result (FILE defaults to ./fleet.yaml).

    \b
    Examples:
      fleet logs audit-users -f
      fleet logs fleets/audit.yaml audit-users --raw | jq -c 'select(.type == "result")'
      fleet logs --all -f                 # every agent, like docker compose logs -f
    """
    if all_agents:
        if len(args) > 1:
            raise click.UsageError("--all takes no NAME: expected [FILE]")
        _run("logs", file=_fleet_file(args[0] if args else None), name=None, follow=follow, raw=raw, all_agents=True)
    if not args:
        raise click.UsageError("missing NAME: which agent? (or --all)")
    file, name = _file_and_name(args)
    _run("logs", file=file, name=name, follow=follow, raw=raw)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("names", nargs=-1)
@YES
@ARCHIVE
@LOCK_TIMEOUT
@GRACE
@input_limits
def delete(file: str, names: tuple[str, ...], yes: bool, archive: bool, lock_timeout: float | None,
           grace: float) -> None:
    """Stop sessions and prune worktrees of NAMES (default: every agent the fleet owns).

    The safety rules hold: a worktree with uncommitted, untracked, stashed or
    unmerged work is never removed (exit 3, the files and commits are listed).

    \b
    Examples:
      fleet delete fleet.yaml audit-users --yes
      fleet delete fleet.yaml --yes     # the whole fleet
    """
    _run("delete", file=file, names=list(names), yes=yes, lock_timeout=lock_timeout, grace=grace,
         archive=archive)


@cli.command()
@click.argument("args", nargs=-1, metavar="[prune] [FILE]")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--older-than", metavar="DURATION", help="With `prune`: only archives at least this old (e.g. 30d).")
@click.option("--dry-run", is_flag=True, help="With `prune`: say what would be dropped, drop nothing.")
@input_limits
def archives(args: tuple[str, ...], output: str, older_than: str | None, dry_run: bool) -> None:
    """List the archives fleet made before pruning (FILE defaults to ./fleet.yaml), or drop
    those that hold nothing any more.

    `prune --older-than D` drops only archives at least D old whose every commit is
    reachable from `base` (and no file differs from their HEAD), and retention archives
    (nothing was at stake) older than gc.archiveRetention. An archive with work is kept.

    \b
    Examples:
      fleet archives fleet.yaml
      fleet restore fleet.yaml audit-users          # the newest archive of audit-users
      fleet archives prune fleet.yaml --older-than 30d --dry-run
    """
    pruning = bool(args) and args[0] == "prune"
    rest = args[1:] if pruning else args
    if len(rest) > 1:
        raise click.UsageError("expected [prune] [FILE]")
    if pruning and not older_than:
        raise click.UsageError("archives prune needs --older-than DURATION (e.g. --older-than 30d)")
    if not pruning and (older_than or dry_run):
        raise click.UsageError("--older-than and --dry-run go with `fleet archives prune`")
    if older_than:
        from ..spec.durations import parse_duration

        try:
            parse_duration(older_than)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    _run("archives", file=_fleet_file(rest[0] if rest else None), output=output,
         older_than=older_than if pruning else None, dry_run=dry_run)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[FILE] NAME [ARCHIVE]")
@input_limits
def restore(args: tuple[str, ...]) -> None:
    """Bring back agent NAME from an archive: its branch with its ownership marks (so the
    agent, declared again, takes it over) and its worktree with the files and index as
    they were (FILE defaults to ./fleet.yaml; ARCHIVE, a time stamp from `fleet archives`,
    defaults to the newest of NAME). A ray fleet's archives are fetched from spec.remote and
    the branch is created there too; ARCHIVE may then also be a fenced attempt's number
    (a local branch BRANCH-attempt-N for review; docs/scale-out.md).

    \b
    Examples:
      fleet restore audit-users
      fleet restore fleets/audit.yaml audit-users 20261126T025619717026Z
      fleet restore fleets/ray.yaml audit-users 2       # a ray fleet: attempt 2's orphan work
    """
    if args and args[0].endswith((".yaml", ".yml")) and os.path.isfile(args[0]):
        file, rest = args[0], args[1:]
    else:
        file, rest = _fleet_file(None), args
    if not 1 <= len(rest) <= 2:
        raise click.UsageError("expected [FILE] NAME [ARCHIVE]")
    _run("restore", file=file, name=rest[0], archive=rest[1] if len(rest) == 2 else None)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--watch", is_flag=True, help="Run until SIGTERM/Ctrl-C, reconciling on the file's schedule.")
@click.option("--once", is_flag=True, help="One pass, then exit (for cron or a systemd timer).")
@click.option("--interval", type=float, default=None, metavar="SECONDS",
              help="Override spec.reconcile (interval or cron).")
@GRACE
@click.option("--ui", is_flag=True, help="With --watch: also serve the live dashboard (see `fleet ui --help`).")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="With --ui: the dashboard's port (0: any free port).")
@input_limits
def reconcile(file: str, watch: bool, once: bool, interval: float | None, grace: float, ui: bool, port: int) -> None:
    """The control loop: observe, diff and converge on a schedule.

    Re-reads FILE every tick, so an edit (a merged pull request) applies at the next
    one. Ticks never overlap; one that finds the fleet locked by an apply is skipped.
    Stopping the loop never stops sessions: they keep running and are re-adopted.

    \b
    Examples:
      fleet reconcile fleet.yaml --watch
      fleet reconcile fleet.yaml --watch --interval 30
      fleet reconcile fleet.yaml --watch --ui          # and the dashboard on 127.0.0.1:8787
      */5 * * * * cd /srv/repo && fleet reconcile fleet.yaml --once   # crontab
    """
    if watch == once:
        raise click.UsageError("choose one of --watch (run until stopped) or --once (one pass, for cron/systemd)")
    if ui and not watch:
        raise click.UsageError("--ui serves the dashboard beside the running loop: use it with --watch")
    _run("reconcile", file=file, watch=watch, once=once, interval=interval, grace=grace,
         ui_port=port if ui else None)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1/localhost/::1 needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port (0: any free port; the address is printed).")
@click.option("--actions", is_flag=True,
              help="Enable stop, restart and resume-with-a-message (and, with spec.delivery, approve and "
                   "reject); each needs the access token.")
@click.option("--token", envvar="FLEET_UI_TOKEN", default=None, metavar="TOKEN",
              help="Access token (default: a random one, printed at start). Also FLEET_UI_TOKEN.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=5.0, show_default=True, metavar="SECONDS",
              help="Without a running loop: how often the dashboard observes the fleet itself.")
@input_limits
def ui(file: str | None, host: str, port: int, actions: bool, token: str | None, interval: float) -> None:
    """A live web dashboard of the fleet: agents grouped by what they need, spend, caps, the plan,
    each agent's conditions, timeline, log and commits, and charts. Updates arrive live.

    Read-only unless --actions. Actions (stop, restart, resume with a message; approve and
    reject with spec.delivery, beside the review packet) need the token printed at start,
    like Jupyter: open the printed URL, or send it as `Authorization: Bearer TOKEN`. While
    `fleet reconcile FILE --watch` runs, the dashboard shows the loop's observations;
    otherwise it observes every --interval.

    \b
    Examples:
      fleet ui fleet.yaml                             # http://127.0.0.1:8787/
      fleet ui fleet.yaml --actions                   # stop/restart/resume, with the token
      fleet ui fleet.yaml --host 0.0.0.0 --token "$(openssl rand -hex 16)"
      fleet reconcile fleet.yaml --watch --ui         # the loop and the dashboard together
    """
    _run("ui", file=_fleet_file(file), host=host, port=port, actions=actions, token=token, interval=interval)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("group")
@input_limits
def promote(file: str, group: str) -> None:
    """Start a rollout group past its pilot, even if its projected spend exceeds the budget left.

    GROUP is the agent entry's name as written in the file (with its {item}).

    \b
    Example:
      fleet promote fleet.yaml 'fix-{item}'
    """
    _run("promote", file=file, group=group)


@cli.command("force-unlock")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("lock_id")
@input_limits
def force_unlock(file: str, lock_id: str) -> None:
    """Remove the fleet lock left by a process that is gone (ID from the lock message)."""
    _run("unlock", file=file, lock_id=lock_id)


@cli.command()
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def schema(out_file: str | None) -> None:
    """Print the JSON Schema of fleet.yaml (generated from the models).

    \b
    Example:
      fleet schema --out schemas/fleet.schema.json
    """
    _run("schema", out_file=out_file)


class _LockCommand(click.Command):
    """`fleet lock NAME [OPTIONS] [--] CMD...`: fleet lock's own options may come before or after NAME;
    CMD starts at `--` or at the first word after NAME that is not one of them, and is never parsed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {opt: not (p.is_flag or p.count) for p in self.params if isinstance(p, click.Option)
                       for opt in (*p.opts, *p.secondary_opts)}
        takes_value.update({opt: False for opt in ctx.help_option_names})
        ours: list[str] = []
        i, name = 0, None
        while i < len(args):
            arg = args[i]
            if arg == "--":
                if name is not None:
                    i += 1
                break
            opt = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
            if not arg.startswith("-") or arg == "-" or (name is not None and opt not in takes_value):
                if name is not None:
                    break  # CMD starts here
                name = arg
                i += 1
                continue
            ours.append(arg)
            i += 1
            attached = "=" in arg if arg.startswith("--") else len(arg) > 2
            if takes_value.get(opt) and not attached and i < len(args):
                ours.append(args[i])
                i += 1
        if name is None:
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, [*ours, name, "--", *args[i:]])


@cli.command("lock", cls=_LockCommand)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD...")
@click.option("-f", "--file", type=click.Path(dir_okay=False), default=None,
              help="Take the slot count (and, without FLEET_LOCK_DIR, the lock dir) from this fleet file.")
@click.option("--slots", type=click.IntRange(min=1), default=None, metavar="N",
              help="Slot count for a lock that is not declared (default 1); a declared count wins.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Give up (exit 1) if no slot is free within this time (default: wait).")
def lock(name: str, command: tuple[str, ...], file: str | None, slots: int | None, timeout: float | None) -> None:
    """Run CMD holding one slot of lock NAME; exit with CMD's exit code.

    Serialises expensive steps (builds, test suites) across agents: with
    `locks: {build: {slots: 1}}` in fleet.yaml, at most one `fleet lock build`
    command runs at a time; the others wait, saying once who holds the lock.
    SIGTERM, SIGINT and SIGHUP are forwarded to CMD; the slot is released when
    CMD exits, however it exits (killed by a signal: exit 128+signum).

    Lock dir: $FLEET_LOCK_DIR (set in every session), else FILE's repo, else the
    current repo; in each case `fleet/locks` in its git common dir (`.git/fleet/locks`,
    the same from every worktree). Slots: FILE's
    spec.locks, else the table `fleet apply` writes to the lock dir, else --slots, else 1.

    \b
    Examples:
      fleet lock build -- make -j4
      fleet lock build -f fleet.yaml --timeout 600 -- make -j4
      in a session (an agent's prompt):  fleet lock build -- pytest
    """
    # Not `_run("lock", ...)`: its first parameter is also called `command`.
    from rich.console import Console

    from ..commands import lock as lock_command
    from .errors import guarded

    sys.exit(guarded(lambda: lock_command.run(name=name, file=file, slots=slots, timeout=timeout,
                                              command=list(command), console=Console(highlight=False),
                                              err=Console(stderr=True, highlight=False))))


def main() -> None:
    cli(prog_name="fleet")


if __name__ == "__main__":
    main()
