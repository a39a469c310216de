"""`fleet approve [FILE] NAME`: approve an agent's branch tip for the merge queue (commands/review.py)."""
from __future__ import annotations

from .review import approve as run

__all__ = ["run"]
