"""The `aider` runtime: aider with one `--message`, never resumed (a failure restarts it).

Owns the aider command line and the reading of its cost report line. Checked
against aider 0.86.2 (see docs/runtimes.md). Aider keeps its auto-commits on, which
is what fleet wants: work lands as commits on the agent's branch.

Aider prints nothing structured; after each reply it prints
`Tokens: 2.3k sent, 105 received. Cost: $0.0085 message, $0.0412 session.` (the cost
part only for models with known prices). The last `session` figure is the run's cost.
Token counts there are rounded ("2.3k"), so they are not reported.
"""
from __future__ import annotations

import re

from ._logscan import strip_ansi
from .base import SessionRequest, SessionResult

_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message, \$(\d+(?:\.\d+)?) session\.")


class AiderRuntime:
    name: str = "aider"
    can_resume: bool = False
    executable: str = "aider"

    def start_argv(self, req: SessionRequest) -> list[str]:
        # `--message=TEXT`: with `--message TEXT`, a prompt starting with "-" is taken for a flag.
        model = ["--model", req.model] if req.model else []
        return [self.executable, f"--message={req.prompt}", *model, "--yes-always", *req.args]

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        return None

    def env(self, req: SessionRequest) -> dict[str, str]:
        return {}

    def parse_result(self, output: str) -> SessionResult:
        matches = _COST.findall(strip_ansi(output))
        if not matches:
            return SessionResult()
        _message_cost, session_cost = matches[-1]
        return SessionResult(cost_usd=float(session_cost), extra={"usage_scope": "process"})
