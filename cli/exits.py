"""How a command ends: the exit codes README.md documents, and the error for bad arguments."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_ALL_SUCCEEDED = 3
EXIT_NOT_SETTLED = 4
"""cancel: the cancel is requested, but the job had not ended when the starter stopped waiting."""
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad arguments or settings; printed as one line."""
