"""fleet: a declarative reconciler for fleets of coding-agent sessions."""
from __future__ import annotations

__version__ = "0.1.0"
