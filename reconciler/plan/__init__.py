"""Deciding what to do: a pure function of desired and observed state."""
