"""`fleet schema [--out FILE]`: the JSON Schema of fleet.yaml, generated from the models."""
from __future__ import annotations

import sys

from rich.console import Console

from ..errors import EXIT_OK, FleetError
from ..spec.schema import schema_text


def run(*, out_file: str | None, console: Console, err: Console) -> int:
    text = schema_text()
    if out_file is None:
        sys.stdout.write(text)  # byte for byte what --out writes: no wrapping, no markup
        return EXIT_OK
    try:
        with open(out_file, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise FleetError(f"cannot write the schema to {out_file}: {exc.strerror or exc}",
                         hint="pass --out a path in a directory that exists and you can write to") from None
    return EXIT_OK
