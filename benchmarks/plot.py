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
    cols = 3
    rows = (len(panels) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    cells = [ax for row in axes for ax in row]
    for ax, (op, title) in zip(cells, panels, strict=False):
        ns = [n for n in sizes if op in results["sizes"][str(n)]]
        data = [results["sizes"][str(n)][op] for n in ns]
        fleet = [r["fleet"]["wall"] for r in data]
        floor = [r["floor"]["wall"] for r in data]
        floor_label = "full git status sweep" if op == "tick" else "floor (bare git/processes)"
        ax.plot(ns, fleet, "o-", label="fleet", color="tab:blue")
        ax.plot(ns, floor, "s--", label=floor_label, color="tab:gray")
        for n, f, g in zip(ns, fleet, floor, strict=True):
            if g:
                ax.annotate(f"{f / g:.2f}x", (n, f), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("agents")
        ax.set_ylabel("median wall time (s)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    # per-agent cost: flat lines mean linear scaling
    ax = cells[len(panels)]
    for op, title in panels:
        ns = [n for n in sizes if op in results["sizes"][str(n)] and n >= 10]
        if ns:
            ax.plot(ns, [results["sizes"][str(n)][op]["fleet"]["wall"] / n * 1000 for n in ns], "o-",
                    label=title.split(" (")[0] + (" (prune)" if op == "diff-prune" else
                                                  " (converged)" if op == "diff" else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("agents")
    ax.set_ylabel("fleet wall time per agent (ms)")
    ax.set_title("per-agent cost (flat = linear)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    for extra in cells[len(panels) + 1:]:
        extra.axis("off")
    m = results.get("machine", {})
    fig.suptitle(f"fleet vs its floor: {m.get('cpus')} CPUs, {m.get('ram_gib')} GiB, Python {m.get('python')}, "
                 f"git {m.get('git')}, repo of {results.get('config', {}).get('files')} files", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
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
