"""Plot time vs fleet size, fleet beside its floor (matplotlib: `pip install -e '.[bench]'`).

    python -m benchmarks.plot benchmarks/results/latest.json benchmarks/results/scaling.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PANELS = [("apply", "fleet apply (from nothing)"), ("diff-prune", "fleet diff (N-1 prune candidates)"),
          ("status", "fleet status"), ("diff", "fleet diff (converged)"),
          ("tick", "no-op loop tick (in-process)")]


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(n) for n in results["sizes"])
    panels = [(op, title) for op, title in PANELS if any(op in results["sizes"][str(n)] for n in sizes)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (op, title) in zip(axes[0], panels):
        ns = [n for n in sizes if op in results["sizes"][str(n)]]
        rows = [results["sizes"][str(n)][op] for n in ns]
        fleet = [r["fleet"]["wall"] for r in rows]
        floor = [r["floor"]["wall"] for r in rows]
        floor_label = "full git status sweep" if op == "tick" else "floor (bare git/processes)"
        ax.plot(ns, fleet, "o-", label="fleet", color="tab:blue")
        ax.plot(ns, floor, "s--", label=floor_label, color="tab:gray")
        for n, f, g in zip(ns, fleet, floor):
            if g:
                ax.annotate(f"{f / g:.2f}x", (n, f), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("agents")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("median wall time (s)")
    m = results.get("machine", {})
    fig.suptitle(f"fleet vs floor: {m.get('cpus')} cores, {m.get('ram_gib')} GiB, Python {m.get('python')}, "
                 f"git {m.get('git')}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    plot(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
