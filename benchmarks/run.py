"""fleet against the bare git/process floor, at several fleet sizes (docs/benchmarks.md).

    python -m benchmarks.run --sizes 10 100 1000

For each size N it builds a repo of ~2,000 files and measures, each beside the git
and process work it cannot avoid (the floor, scripted directly in /bin/sh, measured
in the same run):

  apply       `fleet apply --yes` from nothing: N worktrees, N sessions
              floor: `git worktree add -b` + the same session processes, per agent
  diff        `fleet diff` (cold process) on the converged fleet
              floor: `git worktree list --porcelain` (the plan inspects no worktree)
  diff-prune  `fleet diff` of a file declaring 1 agent: N-1 stop+prune candidates
              floor: `git worktree list` + `git status --porcelain` per candidate
  tick        one no-op tick of the running loop (ControlLoop.tick, in-process, warm)
              floor: the full sweep, `git worktree list` + `git status` in every worktree
  status      `fleet status` (cold process)
              floor: `git worktree list` + `git status` + `git rev-list --count` per agent
  status-loop `fleet status` (cold process) with `fleet reconcile --watch --ui` running beside it,
              so it reads the loop's observation (checked: observedBy is "loop")
              floor: `python -c` reading every state record (json.load of each)
  ui-fleet    the dashboard's fleet page data (GET /api/fleet with curl) from that loop's dashboard
              floor: the same `python -c` reading the records

plus `fleet validate`/`fleet status` start-up on a 10-agent fleet, and the loop's RSS.
Times are medians; CPU counts children (git, session runners); RSS is the peak of
the largest process. Every process started carries FLEET_BENCH_RUN in its environment
and is killed at the end, as is the work directory, also on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from . import fixtures as fx
from .measure import Sample, Series, run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

OPS: dict[str, tuple[str, str]] = {
    "apply": ("fleet apply (from nothing)", "worktree add -b + spawn, per agent"),
    "diff": ("fleet diff (converged)", "worktree list"),
    "diff-prune": ("fleet diff (N-1 to prune)", "worktree list + status per candidate"),
    "tick": ("no-op loop tick (in-process)", "full sweep: worktree list + status per agent"),
    "status": ("fleet status", "worktree list + status + rev-list per agent"),
    "status-loop": ("fleet status (loop running)", "python -c + read the records"),
    "ui-fleet": ("dashboard fleet page (loop running)", "python -c + read the records"),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fleet_argv(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "fleet"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "reconciler.cli.main"]
    return [*head, *args]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = uuid.uuid4().hex[:12]
        parent = Path(args.workdir) if args.workdir else None
        if parent:
            parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir=parent)).resolve()
        self.env = fx.base_env(self.work, self.run_id)
        self.template = self.work / "template"
        self.trash = self.work / "trash"
        self.trash.mkdir()
        self.results: dict[str, Any] = {"machine": machine(), "config": {}, "sizes": {}, "startup": {}}
        self._copies = 0

    # -- plumbing -------------------------------------------------------------------------
    def scoped(self, repo: Path) -> dict[str, str]:
        return {**self.env, fx.ENV_SCOPE: str(repo)}

    def fresh_repo(self, tag: str) -> Path:
        self._copies += 1
        return fx.copy_repo(self.template, self.work / f"{tag}-{self._copies}")

    def discard(self, repo: Path) -> None:
        """Kill the repo's sessions now; delete its files at the end (deleting millions of files
        while the next measurement runs would slow it down)."""
        fx.kill_ours(self.run_id, str(repo))
        if self.args.delete_at_once:
            fx.remove_tree(repo)
        elif repo.exists():
            repo.rename(self.trash / repo.name)

    def cleanup(self) -> None:
        left = fx.ours(self.run_id)
        if left:
            names = []
            for proc in left:
                with contextlib.suppress(psutil.Error):  # gone meanwhile
                    names.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
            log(f"killing {len(left)} leftover process(es): {'; '.join(names)}")
            fx.kill_ours(self.run_id)
        if not self.args.keep:
            fx.remove_tree(self.work)
            log(f"removed {self.work}")

    def repeat_for(self, n: int, *, heavy: bool = False) -> int:
        if heavy and self.args.apply_repeat is not None:
            return self.args.apply_repeat
        if heavy:
            return self.args.repeat if n <= 100 else 1
        return self.args.repeat

    # -- the run --------------------------------------------------------------------------
    def main(self) -> dict[str, Any]:
        a = self.args
        self.results["config"] = {"sizes": a.sizes, "files": a.files, "repeat": a.repeat, "trivial": a.trivial,
                                  "apply_repeat": a.apply_repeat, "run_id": self.run_id}
        log(f"work dir {self.work}; template repo with {a.files} files")
        fx.make_template(self.template, a.files, self.env)
        for n in a.sizes:
            load = os.getloadavg()[0]
            if load > 0.5 * (os.cpu_count() or 1):
                log(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs; wall times will be noisy")
            self.results["sizes"][str(n)] = self.size(n)
            self.results["sizes"][str(n)]["loadavg"] = [load, os.getloadavg()[0]]
            self.save()
        if not self.results["startup"] and "startup" not in a.skip:
            self.startup(None)
        return self.results

    def size(self, n: int) -> dict[str, Any]:
        names = fx.agent_names(n)
        out: dict[str, Any] = {}
        ops = [o for o in OPS if o not in self.args.skip]
        runs = self.repeat_for(n, heavy=True)
        log(f"N={n}: apply from nothing, floor and fleet alternating, {runs} run(s) each")
        floor, fleet = Series(), Series()
        repo = None
        for _ in range(runs):
            floor_repo = self.fresh_repo(f"floor{n}")
            floor.add(run(fx.floor_apply_script(self.work, floor_repo, names, trivial=self.args.trivial),
                          cwd=floor_repo,
                          env=self.scoped(floor_repo), log=self.work / "floor.log"))
            self.discard(floor_repo)
            if repo is not None:
                self.discard(repo)
            repo = self.fresh_repo(f"fleet{n}")
            fx.fleet_yaml(repo, names, trivial=self.args.trivial)
            fleet.add(run(fleet_argv("apply", "fleet.yaml", "--yes"), cwd=repo, env=self.scoped(repo),
                          log=self.work / "fleet.log"))
        assert repo is not None
        out["apply"] = pair(fleet, floor, n)
        self.check_running(repo, n)
        try:
            if "diff" in ops:
                log(f"N={n}: fleet diff (converged)")
                out["diff"] = self.compare(n, fleet_argv("diff", "fleet.yaml"), repo, (0,),
                                           fx.floor_status_script(self.work, repo, [], ahead=False, tag="list"))
            if "diff-prune" in ops:
                log(f"N={n}: fleet diff with {n - 1} prune candidates")
                fx.fleet_yaml(repo, names[:1], file="fleet-prune.yaml", trivial=self.args.trivial)
                out["diff-prune"] = self.compare(
                    n, fleet_argv("diff", "fleet-prune.yaml"), repo, (0, 1) if n == 1 else (1,),
                    fx.floor_status_script(self.work, repo, names[1:], ahead=False, tag="prune"))
            if "tick" in ops:
                log(f"N={n}: no-op loop tick")
                out["tick"] = self.tick(n, repo, names)
            if "status" in ops:
                log(f"N={n}: fleet status")
                out["status"] = self.compare(n, fleet_argv("status", "fleet.yaml"), repo, (0,),
                                             fx.floor_status_script(self.work, repo, names, ahead=True,
                                                                    tag="status"))
            if "status-loop" in ops or "ui-fleet" in ops:
                log(f"N={n}: fleet status and the dashboard with a loop running")
                out.update(self.with_loop(n, repo, ops))
            if n <= 10 and not self.results["startup"] and "startup" not in self.args.skip:
                self.startup(repo)
        finally:
            self.discard(repo)
        self.print_size(n, out)
        return out

    def check_running(self, repo: Path, n: int) -> None:
        if self.args.trivial:  # every session exits at once: wait until each one recorded its exit
            exits = repo / ".git" / "fleet"
            if not fx.wait_for(lambda: sum(1 for _ in exits.rglob("*.exit.json")) >= n, timeout=max(60.0, n / 10)):
                raise RuntimeError(f"expected {n} exit records after apply, found "
                                   f"{sum(1 for _ in exits.rglob('*.exit.json'))}")
            return
        sessions = [p for p in fx.ours(self.run_id, str(repo)) if p.name() == "sleep"]
        if len(sessions) != n:
            raise RuntimeError(f"expected {n} live sessions after apply, found {len(sessions)}")

    def compare(self, n: int, argv: list[str], repo: Path, expect: tuple[int, ...],
                floor_argv: list[str]) -> dict[str, Any]:
        fleet, floor = Series(), Series()
        env = self.scoped(repo)
        run(argv, cwd=repo, env=env, expect=expect, log=self.work / "fleet.log")  # warm the page cache
        run(floor_argv, cwd=repo, env=env, log=self.work / "floor.log")
        for _ in range(self.repeat_for(n)):
            floor.add(run(floor_argv, cwd=repo, env=env, log=self.work / "floor.log"))
            fleet.add(run(argv, cwd=repo, env=env, expect=expect, log=self.work / "fleet.log"))
        return pair(fleet, floor, n)

    def tick(self, n: int, repo: Path, names: list[str]) -> dict[str, Any]:
        env = self.scoped(repo)
        sweep = fx.floor_status_script(self.work, repo, names, ahead=False, tag="sweep")
        run(sweep, cwd=repo, env=env)
        floor = Series()
        for _ in range(self.repeat_for(n)):
            floor.add(run(sweep, cwd=repo, env=env))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.tick_worker", str(repo / "fleet.yaml"),
                               "--repeat", str(max(self.args.repeat, 3)), "--ticks", str(self.args.ticks)], cwd=ROOT,
                              env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [env.get("PYTHONPATH"),
                                                                                      str(ROOT)]))},
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"tick worker failed:\n{proc.stderr[-3000:]}")
        data = json.loads(proc.stdout)
        if not all(t["noop"] for t in data["ticks"]):
            raise RuntimeError(f"a tick of the converged fleet was not a no-op: {data}")
        fleet = Series([Sample(t["wall"], t["cpu"], data["maxrss_mb"], t["code"]) for t in data["ticks"]])
        result = pair(fleet, floor, n)
        result["loop_rss_mb"] = data["maxrss_mb"]
        result["loop_ticks"] = data["total_ticks"]
        result["loop_rss_timed_mb"], result["loop_rss_end_mb"] = data["rss_timed_mb"], data["rss_mb"]
        return result

    def with_loop(self, n: int, repo: Path, ops: list[str]) -> dict[str, Any]:
        """`fleet status` and the dashboard's fleet page while `fleet reconcile --watch --ui` runs.

        The loop ticks once at start (its interval is an hour), writes its observation, and
        serves the dashboard; both measurements then read that observation."""
        env = self.scoped(repo)
        records = repo / ".git" / "fleet" / "state" / fx.FLEET_NAME
        floor_argv = [sys.executable, "-c", "import glob, json, sys\n"
                      "for p in glob.glob(sys.argv[1] + '/*.json'):\n    json.load(open(p))", str(records)]
        loop = subprocess.Popen(fleet_argv("reconcile", "fleet.yaml", "--watch", "--interval", "3600", "--ui",
                                           "--port", "0"), cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out: dict[str, Any] = {}
        try:
            assert loop.stdout is not None
            first = loop.stdout.readline()
            if not first.startswith("fleet ui: "):
                raise RuntimeError(f"the loop did not start its dashboard: {first}{loop.stdout.read()[-3000:]}")
            url = first.split(": ", 1)[1].strip()
            marker = repo / ".git" / "fleet" / "status" / f"{fx.FLEET_NAME}.loop.json"

            def published() -> bool:
                try:
                    return bool(json.loads(marker.read_text()).get("lastTick"))
                except (OSError, ValueError):
                    return False

            if not fx.wait_for(published, timeout=max(120.0, n * 1.0)):
                raise RuntimeError("the loop wrote no observation")
            check = subprocess.run(fleet_argv("status", "fleet.yaml", "-o", "json"), cwd=repo, env=env,
                                   capture_output=True, text=True, check=True)
            if json.loads(check.stdout).get("observedBy") != "loop":
                raise RuntimeError("fleet status did not read the loop's observation")
            if "status-loop" in ops:
                out["status-loop"] = self.compare(n, fleet_argv("status", "fleet.yaml"), repo, (0,), floor_argv)
            if "ui-fleet" in ops:
                out["ui-fleet"] = self.compare(n, ["curl", "-sf", "-o", "/dev/null", url + "api/fleet"], repo, (0,),
                                               floor_argv)
        finally:
            loop.send_signal(signal.SIGTERM)
            try:
                loop.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                loop.kill()
                loop.communicate()
        return out

    def startup(self, repo: Path | None) -> None:
        """Start-up of the CLI on a small (10-agent, converged) fleet."""
        own = repo is None
        if own:
            log("start-up: building a 10-agent fleet")
            repo = self.fresh_repo("startup")
            fx.fleet_yaml(repo, fx.agent_names(10))
            run(fleet_argv("apply", "fleet.yaml", "--yes"), cwd=repo, env=self.scoped(repo))
        log("start-up: python -c pass, fleet --version, fleet validate, fleet diff, fleet status")
        env = self.scoped(repo)
        cmds = {"python -c pass": [sys.executable, "-c", "pass"],
                "fleet --version": fleet_argv("--version"),
                "fleet validate": fleet_argv("validate", "fleet.yaml"),
                "fleet diff": fleet_argv("diff", "fleet.yaml"),
                "fleet status": fleet_argv("status", "fleet.yaml")}
        try:
            for label, argv in cmds.items():
                run(argv, cwd=repo, env=env, expect=(0, 1))  # diff: 1 = changes pending
                series = Series()
                for _ in range(max(self.args.repeat, 7)):
                    series.add(run(argv, cwd=repo, env=env, expect=(0, 1)))
                self.results["startup"][label] = {**series.to_json(), **import_times(argv, repo, env)}
        finally:
            if own:
                self.discard(repo)

    # -- output ---------------------------------------------------------------------------
    def print_size(self, n: int, out: dict[str, Any]) -> None:
        print(f"\nN = {n} agents")
        print(table_text({n: out}))
        sys.stdout.flush()

    def save(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(self.results, indent=2) + "\n")


def pair(fleet: Series, floor: Series, n: int) -> dict[str, Any]:
    return {"n": n, "fleet": fleet.to_json(), "floor": floor.to_json(),
            "ratio": fleet.wall / floor.wall if floor.wall else None,
            "cpu_ratio": fleet.cpu / floor.cpu if floor.cpu else None}


def table_text(sizes: dict[int, dict[str, Any]]) -> str:
    head = (f"{'N':>5}  {'operation':<30} {'wall s':>8} {'CPU s':>8} {'RSS MB':>7} | "
            f"{'floor s':>8} {'CPU s':>8} | {'ratio':>6} {'CPU':>6}  floor")
    lines = [head, "-" * len(head)]
    for n, ops in sizes.items():
        for op, (label, floor_label) in OPS.items():
            if op not in ops:
                continue
            r = ops[op]
            f, g = r["fleet"], r["floor"]
            lines.append(f"{n:>5}  {label:<30} {f['wall']:>8.3f} {f['cpu']:>8.3f} {f['rss_mb']:>7.0f} | "
                         f"{g['wall']:>8.3f} {g['cpu']:>8.3f} | {_x(r['ratio'])} {_x(r.get('cpu_ratio'))}  "
                         f"{floor_label}")
    return "\n".join(lines)


def _x(ratio: float | None) -> str:
    return f"{ratio:>5.2f}x" if ratio is not None else "     -"


IMPORT_RUNS = 5  # `python -X importtime` runs per command; the smallest total is kept


def import_times(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """What the command's imports cost: `python -X importtime` (best of IMPORT_RUNS by total),
    the total of every module's own time and the top-level packages that cost the most."""
    if argv[0] != sys.executable:  # the `fleet` script: the same program as python -m
        argv = [sys.executable, "-m", "reconciler.cli.main", *argv[1:]]
    best: dict[str, float] | None = None
    for _ in range(IMPORT_RUNS):
        proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        tops: dict[str, float] = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
                continue
            own, _cum, name = line.removeprefix("import time:").split("|", 2)
            top = name.strip().split(".")[0]
            tops[top] = tops.get(top, 0.0) + int(own) / 1e6
        if best is None or sum(tops.values()) < sum(best.values()):
            best = tops
    best = best or {}
    top = sorted(best.items(), key=lambda kv: -kv[1])[:6]
    return {"imports_s": sum(best.values()), "imports_top": [[k, v] for k, v in top]}


def startup_text(startup: dict[str, Any]) -> str:
    return "\n".join(f"  {label:<18} {s['wall'] * 1000:>6.0f} ms wall, {s['cpu'] * 1000:>6.0f} ms CPU, "
                     f"{s['rss_mb']:>5.0f} MB, imports {s.get('imports_s', 0) * 1000:>4.0f} ms ("
                     + ", ".join(f"{k} {v * 1000:.0f}" for k, v in s.get("imports_top", [])[:4]) + ")"
                     for label, s in startup.items())


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "git": git.removeprefix("git version "),
            "os": f"{platform.system()} {platform.release()}", "date": time.strftime("%Y-%m-%d")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], metavar="N")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (median); default 3")
    p.add_argument("--apply-repeat", type=int, default=None,
                   help="runs of the apply comparison (each needs fresh repos); default --repeat up to "
                        "N=100, 1 above")
    p.add_argument("--files", type=int, default=2000, help="files in the synthetic repo; default 2000")
    p.add_argument("--skip", nargs="*", default=[], choices=[*(o for o in OPS if o != "apply"), "startup"],
                   help="leave out these measurements")
    p.add_argument("--workdir", help="parent of the temporary work dir (default: $TMPDIR)")
    p.add_argument("--out", default=str(RESULTS),
                   help="directory for latest.json, latest.md (the table for docs/benchmarks.md) and "
                        "scaling.png; default benchmarks/results")
    p.add_argument("--no-plot", action="store_true",
                   help="skip the PNG plot (it needs matplotlib: pip install -e '.[bench]')")
    p.add_argument("--trivial", action="store_true",
                   help="agents that exit at once (Succeeded) instead of sleeping sessions: the converged "
                        "fleet holds no live process, so N=3000 fits in memory (use a small --files)")
    p.add_argument("--ticks", type=int, default=100,
                   help="loop ticks in all for the memory figure (the timed ones included); default 100")
    p.add_argument("--keep", action="store_true", help="keep the work dir (processes are still killed)")
    p.add_argument("--delete-at-once", action="store_true",
                   help="delete each repo as soon as it is measured, not at the end (for a tmpfs --workdir, "
                        "where the files are memory)")
    return p.parse_args(argv)


def check_limits(sizes: list[int]) -> None:
    """Each live session is two processes (the runner and `sleep`), about 10 MB."""
    import resource

    biggest = max(sizes)
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and soft < 2 * biggest + 500:
        raise SystemExit(f"ulimit -u is {soft}; N={biggest} needs about {2 * biggest + 500} processes")
    need = biggest * 12 * 2**20
    if psutil.virtual_memory().available < need:
        raise SystemExit(f"N={biggest} needs about {need // 2**20} MB free for its sessions")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.trivial:
        check_limits(args.sizes)
    os.chdir(ROOT)
    bench = Bench(args)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        results = bench.main()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    bench.save()
    sizes = {int(n): ops for n, ops in results["sizes"].items()}
    print("\nAll sizes (median wall/CPU; ratio = fleet wall / floor wall)")
    print(table_text(sizes))
    if results["startup"]:
        print("\nStart-up, 10-agent fleet (median of", max(args.repeat, 7), "runs)")
        print(startup_text(results["startup"]))
    ticks = [f"N={n}: peak {t['loop_rss_mb']:.0f} MB, {t.get('loop_rss_timed_mb', 0):.0f} MB after the timed "
             f"ticks, {t.get('loop_rss_end_mb', 0):.0f} MB after {t.get('loop_ticks', 0)}"
             for n, ops in sizes.items() if (t := ops.get("tick"))]
    if ticks:
        print("\nLoop RSS: " + "; ".join(ticks))
    per_agent = per_agent_text(sizes)
    if per_agent:
        print("\nPer-agent cost, flat = linear\n" + per_agent)
    out = Path(args.out)
    (out / "latest.md").write_text(markdown(results))
    print(f"\nresults: {out / 'latest.json'}, table: {out / 'latest.md'}")
    if not args.no_plot:
        try:
            from .plot import plot
            plot(results, out / "scaling.png")
            print(f"plot: {out / 'scaling.png'}")
        except ImportError:
            print("no plot: matplotlib is not installed (pip install -e '.[bench]')")
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as the Markdown tables docs/benchmarks.md shows."""
    m = results["machine"]
    machine = (f"Machine: {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['ram_gib']} GiB RAM, "
               f"{m['os']}, Python {m['python']}, git {m['git']}; {m['date']}; "
               f"repo of {results['config']['files']} files.")
    head = ("| N | operation | wall s | CPU s | peak RSS MB | floor wall s | floor CPU s | ratio (wall) | "
            "ratio (CPU) | floor |")
    lines = [machine, "", head, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for n, ops in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        for op, (label, floor_label) in OPS.items():
            if op not in ops:
                continue
            r = ops[op]
            f, g = r["fleet"], r["floor"]
            lines.append(f"| {n} | {label} | {f['wall']:.3f} | {f['cpu']:.3f} | {f['rss_mb']:.0f} | "
                         f"{g['wall']:.3f} | {g['cpu']:.3f} | {_x(r['ratio']).strip()} | "
                         f"{_x(r.get('cpu_ratio')).strip()} | {floor_label} |")
    lines += ["", "| start-up (10 agents) | wall ms | CPU ms | peak RSS MB | imports ms (`-X importtime`) "
                  "| costliest |", "|---|---:|---:|---:|---:|---|"]
    for label, st in results["startup"].items():
        top = ", ".join(f"{k} {v * 1000:.0f}" for k, v in st.get("imports_top", [])[:4])
        lines.append(f"| `{label}` | {st['wall'] * 1000:.0f} | {st['cpu'] * 1000:.0f} | {st['rss_mb']:.0f} | "
                     f"{st.get('imports_s', 0) * 1000:.0f} | {top} |")
    ints = {int(n): ops for n, ops in results["sizes"].items()}
    if len(ints) >= 2:
        lines += ["", "| marginal per agent added | " + " | ".join(f"N {a} -> {b}: wall / CPU ms (floor)"
                                                            for a, b, _, _ in marginal(ints, "apply")) + " |",
                  "|---|" + "---:|" * len(marginal(ints, "apply"))]
        for op, (label, _) in OPS.items():
            if cells := marginal_cells(ints, op):
                lines.append(f"| {label} | " + " | ".join(c.split(": ", 1)[1] for c in cells) + " |")
    loads = {n: ops.get("loadavg") for n, ops in results["sizes"].items() if ops.get("loadavg")}
    if loads:
        lines += ["", "Load average (1 min) at the start and end of each size: " + ", ".join(
            f"N={n}: {a:.1f} -> {b:.1f}" for n, (a, b) in loads.items()) + "."]
    return "\n".join(lines) + "\n"


def marginal(sizes: dict[int, dict[str, Any]], op: str, side: str = "fleet") -> list[tuple[int, int, float, float]]:
    """(N1, N2, wall ms, CPU ms) per agent added between consecutive sizes: what one more agent
    costs there. A column that rises with N is a term that grows faster than the fleet."""
    ns = sorted(n for n in sizes if op in sizes[n])
    out = []
    for a, b in itertools.pairwise(ns):
        fa, fb = sizes[a][op][side], sizes[b][op][side]
        out.append((a, b, (fb["wall"] - fa["wall"]) / (b - a) * 1000, (fb["cpu"] - fa["cpu"]) / (b - a) * 1000))
    return out


def per_agent_text(sizes: dict[int, dict[str, Any]]) -> str:
    ns = sorted(n for n in sizes if n >= 10)
    if len(ns) < 2:
        return ""
    lines = ["  average per agent, ms wall:"]
    for op, (label, _) in OPS.items():
        cells = [f"N={n}: {sizes[n][op]['fleet']['wall'] / n * 1000:.2f}" for n in ns if op in sizes[n]]
        if cells:
            lines.append(f"  {label:<30} " + ", ".join(cells))
    lines.append("  marginal per agent added, ms wall / CPU (its floor's):")
    for op, (label, _) in OPS.items():
        if cells := marginal_cells(sizes, op):
            lines.append(f"  {label:<30} " + ", ".join(cells))
    return "\n".join(lines)


def marginal_cells(sizes: dict[int, dict[str, Any]], op: str) -> list[str]:
    """"N1->N2: wall / CPU (floor wall / floor CPU)" per pair of consecutive sizes."""
    return [f"{a}->{b}: {w:.2f} / {c:.2f} ({fw:.2f} / {fc:.2f})"
            for (a, b, w, c), (_, _, fw, fc) in zip(marginal(sizes, op), marginal(sizes, op, "floor"), strict=True)]


if __name__ == "__main__":
    sys.exit(main())
