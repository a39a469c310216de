"""Changing the world: worktrees, sessions, and executing a plan."""
