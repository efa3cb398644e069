"""The error type for bad input and bad configuration.

The CLI catches :class:`MethrayError` and prints its message on one line with a non-zero
exit status; anything else is a bug and keeps its traceback.
"""


class MethrayError(Exception):
    """Bad input or configuration, with a message that names the file, line and expectation."""


def where(path, line: int | None = None) -> str:
    """Format ``path`` (and an optional 1-based ``line``) for an error message."""
    return f"{path}:{line}" if line is not None else str(path)
