"""Reading the world: git worktrees, ownership markers, session records, processes."""
