"""The error type for bad input and bad configuration.

The CLI catches :class:`MethrayError` and prints its message on one line with a non-zero
exit status; anything else is a bug and keeps its traceback.
"""


class MethrayError(Exception):
    """Bad input or configuration, with a message that names the file, line and expectation."""

    def __str__(self) -> str:
        # One line: Ray Data appends retry advice ("\nFailed to apply UDF transform ...") to
        # the message of an exception raised in one of its tasks.
        return super().__str__().split("\n", 1)[0]


def where(path, line: int | None = None) -> str:
    """Format ``path`` (and an optional 1-based ``line``) for an error message."""
    return f"{path}:{line}" if line is not None else str(path)


def find_methray_error(exc: BaseException) -> MethrayError | None:
    """The :class:`MethrayError` behind ``exc``, or None when there is none (a bug).

    An error raised in a Ray task or actor reaches the driver wrapped: a
    ``ray.exceptions.RayTaskError`` (whose ``cause`` is the original error; it is also made an
    instance of the original's class, but its text is a remote traceback), a Ray Data
    ``UserCodeException`` (original as ``__cause__``), a Ray Train ``WorkerGroupError``
    (``worker_failures``, each searched: a ``UserExceptionWithTraceback`` holding the worker's
    error) or ``ControllerError``, or an error raised while handling one.
    The chain ``cause`` -> ``__cause__`` -> ``__context__`` is followed to methray's own error.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None)  # RayTaskError: unwrap before the isinstance test
        failures = getattr(exc, "worker_failures", None) or {}
        if inner is None and failures:  # Ray Train: any worker's (the others may fail in its wake)
            return next(filter(None, map(find_methray_error, failures.values())), None)
        if inner is None:  # Ray Train: the controller's failure
            inner = getattr(exc, "controller_failure", None)
        if inner is None:  # Ray Train: a worker's own error, as returned to the controller
            inner = getattr(exc, "_base_exc", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        if isinstance(exc, MethrayError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
