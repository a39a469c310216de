"""One module per CLI command: plain functions taking parsed values, returning an exit code."""
