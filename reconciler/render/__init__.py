"""Presenting plans and status: table (terminal), json (machines), markdown (PRs)."""
