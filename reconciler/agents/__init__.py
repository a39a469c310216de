"""Small agents shipped with fleet, for the demo fleet and tests (not runtimes)."""
