"""The `fleet` command line: a thin shell over reconciler.commands."""
