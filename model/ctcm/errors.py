"""Errors shown to users as one line (the CLI catches them)."""


class UsageError(Exception):
    """Bad command-line usage; exit status 2."""
