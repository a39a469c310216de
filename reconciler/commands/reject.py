"""`fleet reject [FILE] NAME -m MSG`: reject an agent's work and resume it with MSG (commands/review.py)."""
from __future__ import annotations

from .review import reject as run

__all__ = ["run"]
