"""Timing one command: wall time, CPU time (the process and every child it waited for) and peak RSS."""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds, including waited-for children (git, the session runner)
    rss_mb: float  # peak RSS of the largest process in the tree (ru_maxrss), MiB
    code: int = 0


@dataclass
class Series:
    """Repeated samples of one command; the table shows medians."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return max(s.rss_mb for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        return {"wall": self.wall, "cpu": self.cpu, "rss_mb": self.rss_mb,
                "samples": [asdict(s) for s in self.samples]}


class CommandFailed(RuntimeError):
    pass


def run(argv: list[str], *, cwd: Path, env: dict[str, str], expect: tuple[int, ...] = (0,),
        log: Path | None = None, timeout: float | None = None) -> Sample:
    """Run argv to completion, stdout discarded, stderr kept in `log`; measured with wait4."""
    log = log or Path(os.devnull)
    with open(log, "ab") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:  # type: ignore[operator]
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code not in expect:
        tail = Path(log).read_text(errors="replace")[-3000:] if log != Path(os.devnull) else ""
        raise CommandFailed(f"{' '.join(argv[:6])}... exited {code} (expected {expect}) in {cwd}\n{tail}")
    return Sample(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024, code=code)
