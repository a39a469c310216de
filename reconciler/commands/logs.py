"""`fleet logs [FILE] NAME [-f] [--raw]`, `fleet logs --all [FILE] [-f]`: sessions' output, readable.

The bytes come from the engine (wherever it keeps the log); render/session_log.py turns
the CLIs' JSON events into lines a person reads (`--raw`: the log as written). `-f`
follows across resumes and restarts: it returns once the session has ended and fleet
has no further run of it coming (control/follow.py). `--all` prefixes every line with
its agent's name, in a colour of its own, like `docker compose logs`.
"""
from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

from rich.console import Console
from rich.text import Text

from ..control.follow import another_run_coming
from ..engines import engine_for
from ..engines.base import Engine
from ..errors import EXIT_OK, FleetError
from ..render.session_log import SessionLogRenderer
from ..spec.loader import LoadedFleet, load_fleet

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta",
           "bright_green", "bright_yellow", "bright_blue")


def run(*, file: str, name: str | None, follow: bool, console: Console, err: Console, raw: bool = False,
        all_agents: bool = False) -> int:
    loaded = load_fleet(file)
    engine = engine_for(loaded)
    try:
        if all_agents:
            return _all(loaded, engine, follow=follow, raw=raw, console=console)
        assert name is not None
        chunks = engine.log_chunks(name, follow=follow, more=_more(loaded, engine, name) if follow else None)
        if raw:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            return EXIT_OK
        renderer = SessionLogRenderer()
        for line in lines_of(chunks):
            for shown in renderer.feed(line):
                console.print(shown, soft_wrap=True)
    except KeyboardInterrupt:  # Ctrl-C ends a follow: that is how it is meant to end
        return EXIT_OK
    return EXIT_OK


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines as they complete (a line still being written waits for its newline)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *done, pending = pending.split(b"\n")
        for line in done:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


_PLANNING = threading.Lock()  # one observation at a time: the engine's git handles are not shared across threads


def _more(loaded: LoadedFleet, engine: Engine, name: str) -> Callable[[], bool]:
    def ask() -> bool:
        with _PLANNING:
            return another_run_coming(loaded, name, engine)
    return ask


def _all(loaded: LoadedFleet, engine: Engine, *, follow: bool, raw: bool, console: Console) -> int:
    names = [a.name for a in loaded.agents]
    names += sorted(p.stem for p in engine.store.log_dir.glob("*.log") if p.stem not in names)  # undeclared
    names = [n for n in names if engine.store.log_path(n).is_file()]
    if not names:
        raise FleetError(f"no agent of fleet {loaded.name} has a log yet", hint=f"fleet apply {loaded.path.name}")
    width = max(len(n) for n in names)
    prefixes = {n: Text(f"{n:<{width}} | ", style=COLOURS[i % len(COLOURS)]) for i, n in enumerate(names)}
    renderers = {n: SessionLogRenderer() for n in names}

    def show(name: str, line: str) -> None:
        for shown in [Text(line)] if raw else renderers[name].feed(line):
            console.print(Text.assemble(prefixes[name], shown), soft_wrap=True)

    if not follow:
        for name in names:
            for line in lines_of(engine.log_chunks(name, follow=False)):
                show(name, line)
        return EXIT_OK
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(name: str) -> None:
        try:
            for line in lines_of(engine.log_chunks(name, follow=True, more=_more(loaded, engine, name))):
                lines.put((name, line))
        except FleetError as exc:
            lines.put((name, f"fleet: {exc.message}"))
        finally:
            lines.put((name, None))

    for name in names:
        threading.Thread(target=pump, args=(name,), name=f"logs-{name}", daemon=True).start()
    running = len(names)
    while running:
        try:
            name, got = lines.get(timeout=0.5)  # a timeout: Ctrl-C is seen while nothing is written
        except queue.Empty:
            continue
        if got is None:
            running -= 1
        else:
            show(name, got)
    return EXIT_OK
