"""Paths that may be local or ``s3://``, atomic writes, and the storage-fault policy.

Every output methray writes goes through :func:`atomic_write` (or :func:`atomic_path` for
writers that want a path): the data is written under a temporary name beside the target and
renamed when complete, so a reader never sees a truncated file. On S3 an object only appears
once its upload completes, so the temporary-name step is not needed there.

S3 settings come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or from
:func:`configure_s3` (the run config's ``s3`` and ``storage`` sections). Credentials are never
logged.

**Faults.** Every ``s3://`` access of every job (the driver, Ray tasks and actors, Ray Data's
Parquet reads and Ray Train's checkpoint storage alike) goes through one
:class:`FaultPolicy`, applied inside the one S3 filesystem class that :func:`filesystem` and
:func:`arrow_location` hand out (:class:`PolicyS3FileSystem`): each request has a connect, a
read (no byte for that long) and an overall deadline; a transient failure (connection refused
or reset, a timeout, throttling, HTTP 5xx) is retried with exponential backoff and jitter,
one log line per retry, until the retry budget is spent; then :class:`StorageError` (a
:class:`~methray.errors.MethrayError`) names the object, what failed, the attempts and the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import errno
import json
import logging
import os
import random
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

import fsspec
from s3fs import S3FileSystem
from s3fs.core import S3File

from .errors import MethrayError

log = logging.getLogger(__name__)

# The policy travels to Ray workers in this variable (see runtime.worker_env), as JSON.
POLICY_ENV = "METHRAY_STORAGE_POLICY"
# Non-secret S3 settings that Ray workers must share with the driver (see runtime.init_ray).
S3_ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", POLICY_ENV)


@dataclasses.dataclass(frozen=True)
class FaultPolicy:
    """How storage faults are survived (the run config's ``storage`` section).

    Attributes
    ----------
    retry_budget_s
        Seconds one operation may spend failing and retrying (from its first attempt) before
        the run stops with :class:`StorageError`. 300 s rides out a store restart or a
        rolling upgrade; a store down for longer ends the run (rerun it to resume).
    connect_timeout_s
        Seconds to open a TCP connection to the store.
    read_timeout_s
        Seconds without a byte from the store (waiting for an answer, or mid-download).
    request_timeout_s
        Seconds for one whole request: sending its body (an upload of at most one 50 MiB
        part) and receiving the answer. Catches a store that stops reading mid-upload, which
        no socket timeout sees. Capped by what is left of the retry budget.
    backoff_s, backoff_max_s
        Delay before the first retry, doubled per retry up to ``backoff_max_s``; each delay
        is drawn uniformly from its upper half (jitter), so workers do not retry in step.
    """

    retry_budget_s: float = 300.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    request_timeout_s: float = 120.0
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), jittered."""
        cap = min(self.backoff_max_s, self.backoff_s * 2 ** (retry - 1))
        return random.uniform(cap / 2, cap)

    def client_config(self) -> dict:
        """botocore client settings: the socket timeouts; botocore's own retries off."""
        return {
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
            "retries": {"total_max_attempts": 1, "mode": "standard"},
        }


class StorageError(MethrayError):
    """A storage operation still failing when the retry budget was spent.

    The message is ``<s3 path>: <what failed> (<why>) after <n> attempts over <t> s``.
    """

    def __init__(self, message: str, path: str = "", attempts: int = 0, seconds: float = 0.0):
        super().__init__(message)
        self.path, self.attempts, self.seconds = path, attempts, seconds


_POLICY: FaultPolicy | None = None
_S3_OPTIONS: dict = {}


def fault_policy() -> FaultPolicy:
    """The policy of this process: configured by :func:`configure_s3`, else from ``$METHRAY_STORAGE_POLICY``."""
    global _POLICY
    if _POLICY is None:
        raw = os.environ.get(POLICY_ENV)
        _POLICY = FaultPolicy(**json.loads(raw)) if raw else FaultPolicy()
    return _POLICY


def configure_s3(endpoint_url: str | None = None, region: str | None = None, policy: FaultPolicy | dict | None = None) -> None:
    """Set the S3 endpoint, region and fault policy used for every ``s3://`` path in this process.

    The values are also exported (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
    ``METHRAY_STORAGE_POLICY``) so that Ray workers started afterwards (or given these
    variables by :func:`methray.runtime.init_ray`) use the same store and the same policy.
    Credentials are not touched: they come from the standard AWS chain (environment,
    ``~/.aws``, instance or pod role).

    Parameters
    ----------
    endpoint_url
        An S3-compatible endpoint (``http://127.0.0.1:9000``); ``None`` keeps the AWS default
        or ``AWS_ENDPOINT_URL``.
    region
        The region name; ``None`` keeps ``AWS_DEFAULT_REGION``.
    policy
        A :class:`FaultPolicy` or its fields (the config's ``storage`` section, a pydantic
        model or a dict); ``None`` keeps the current one.
    """
    global _POLICY
    if policy is not None:
        if not isinstance(policy, FaultPolicy):
            fields = policy if isinstance(policy, dict) else policy.model_dump()
            policy = FaultPolicy(**fields)
        _POLICY = policy
        os.environ[POLICY_ENV] = json.dumps(dataclasses.asdict(policy))
    _S3_OPTIONS.clear()
    client_kwargs = {}
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        client_kwargs["region_name"] = region
        os.environ["AWS_DEFAULT_REGION"] = region
    if client_kwargs:
        _S3_OPTIONS["client_kwargs"] = client_kwargs


def _endpoint() -> str:
    return _S3_OPTIONS.get("client_kwargs", {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


# ---------------------------------------------------------------- transient errors

_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestThrottled"}
_SERVER = {"InternalError", "ServiceUnavailable", "RequestTimeout", "BadGateway", "GatewayTimeout"}


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth retrying (``"S3 unreachable"``, ``"timed out"``, ...), or None.

    Transient: connection refused / reset / closed, connect and read timeouts, a request past
    its deadline, throttling, HTTP 5xx. Not transient: missing objects, access denied, bad
    requests, and anything that is not a storage error. The exception chain is searched,
    since s3fs and aiobotocore wrap the socket-level error.
    """
    import aiohttp
    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StorageError):
            return None
        if isinstance(exc, (bx.EndpointConnectionError, ConnectionRefusedError)):
            return "S3 unreachable"
        if isinstance(exc, (bx.ConnectTimeoutError,)):
            return "S3 connect timed out"
        if isinstance(exc, (bx.ReadTimeoutError, asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)):
            return "S3 timed out"
        if isinstance(exc, (bx.ConnectionClosedError, ConnectionError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            return "S3 connection lost"
        if isinstance(exc, (bx.HTTPClientError, ResponseParserError)):
            return "S3 connection error"
        if isinstance(exc, bx.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _THROTTLED or status == 429:
                return "S3 throttled"
            if code in _SERVER or status >= 500:
                return f"S3 server error {status or code}"
            return None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


_VERBS = {
    "put_object": "upload", "upload_part": "upload", "create_multipart_upload": "upload",
    "complete_multipart_upload": "upload", "abort_multipart_upload": "upload",
    "get_object": "download", "head_object": "lookup", "head_bucket": "bucket lookup",
    "get_bucket_location": "bucket lookup", "list_objects_v2": "listing", "list_objects": "listing",
    "delete_object": "delete", "delete_objects": "delete", "copy_object": "copy",
}

# While an operation's retry loop runs an attempt: when its budget ends (time.monotonic()). The
# requests inside the attempt are then single tries, with deadlines cut to that end.
_BUDGET_END: contextvars.ContextVar[float | None] = contextvars.ContextVar("methray_s3_budget_end", default=None)


def _request_timeout(budget_end: float) -> float:
    # At least a second, so that a nearly spent budget still gets a real last try.
    return max(1.0, min(fault_policy().request_timeout_s, budget_end - time.monotonic()))


async def _with_policy(attempt, what: str, path: str, *, deadline: bool):
    """Run ``attempt()`` (a coroutine function) under the fault policy; see :class:`FaultPolicy`."""
    policy = fault_policy()
    start = time.monotonic()
    end = start + policy.retry_budget_s
    n = 0
    while True:
        n += 1
        token = _BUDGET_END.set(end)
        try:
            if deadline:
                timeout = _request_timeout(end)
                return await asyncio.wait_for(attempt(), timeout)
            return await attempt()
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                raise
            if isinstance(exc, asyncio.TimeoutError) and deadline:
                reason = f"S3 gave no complete answer within {timeout:.0f} s"
            elapsed = time.monotonic() - start
            wait = policy.delay(n)
            if elapsed + wait >= policy.retry_budget_s:
                raise StorageError(
                    f"{path}: {what} failed ({reason} at {_endpoint()}: {type(exc).__name__}) after {n} attempts over {elapsed:.0f} s",
                    path, n, elapsed,
                ) from exc
            log.warning("%s, retry %d in %.1f s (%s %s)", reason, n, wait, what, path)
            await asyncio.sleep(wait)
        finally:
            _BUDGET_END.reset(token)


def _s3_path(kwargs: dict) -> str:
    bucket = kwargs.get("Bucket", "")
    key = kwargs.get("Key") or kwargs.get("Prefix") or ""
    return f"s3://{bucket}/{key}".rstrip("/") if key else f"s3://{bucket}"


class PolicyS3FileSystem(S3FileSystem):
    """s3fs with methray's :class:`FaultPolicy` on every request.

    s3fs retries a few error types itself (5 tries, no overall deadline); here its own retry
    loops are reduced to one try and every request (``_call_s3``) and every read of a
    response body (``cat_file``, ``get_file``, the range reads of an open file) runs under the
    policy instead. Requests inside a retried body read are single tries, so attempts are
    never multiplied.
    """

    retries = 1  # s3fs's loops: one try; the policy retries

    async def _call_s3(self, method, *akwarglist, **kwargs):
        async def attempt():
            await self.set_session()
            s3 = await self.get_s3(kwargs.get("Bucket"))
            fn = getattr(s3, method)
            return await fn(**self._get_s3_method_kwargs(fn, *akwarglist, **kwargs))

        what, path = _VERBS.get(method, method.replace("_", " ")), _s3_path(kwargs)
        try:
            budget_end = _BUDGET_END.get()
            if budget_end is not None:  # inside a retried body read: one try
                return await asyncio.wait_for(attempt(), _request_timeout(budget_end))
            return await _with_policy(attempt, what, path, deadline=True)
        except Exception as exc:
            if isinstance(exc, StorageError) or transient_reason(exc) is not None:
                raise
            from s3fs.errors import translate_boto_error

            translated = translate_boto_error(exc)  # FileNotFoundError, PermissionError, ... as s3fs does
            if translated is exc:
                raise
            raise translated from exc

    from fsspec.asyn import sync_wrapper as _sync_wrapper

    call_s3 = _sync_wrapper(_call_s3)  # s3fs binds its own _call_s3 here; open files use this one

    async def _cat_file(self, path, *args, **kwargs):
        return await _with_policy(lambda: super(PolicyS3FileSystem, self)._cat_file(path, *args, **kwargs), "download", f"s3://{self._strip_protocol(path)}", deadline=False)

    async def _get_file(self, rpath, lpath, *args, **kwargs):
        return await _with_policy(lambda: super(PolicyS3FileSystem, self)._get_file(rpath, lpath, *args, **kwargs), "download", f"s3://{self._strip_protocol(rpath)}", deadline=False)

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "r" in mode:  # s3fs builds its S3File; reads get the policy's range reads
            f.__class__ = _PolicyS3File
        return f


class _PolicyS3File(S3File):
    """An open S3 object whose range reads (request and body) run under the fault policy."""

    def _fetch_range(self, start, end):
        from fsspec.asyn import sync
        from s3fs.core import _inner_fetch

        if start == end:
            return b""

        def attempt():
            return _inner_fetch(self.fs, self.bucket, self.key, self.version_id, start, end, req_kw=self.read_kw, details=self.details)

        return sync(self.fs.loop, _with_policy, attempt, "download", f"s3://{self.path}", deadline=False)


@contextlib.contextmanager
def s3_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a refused S3 request (access denied, bad credentials, ...) into a one-line MethrayError.

    Transient faults are retried by the policy before they get here and arrive as
    :class:`StorageError`, which passes through unchanged.
    """
    try:
        yield
    except MethrayError:
        raise
    except Exception as exc:  # botocore / aiohttp errors have no common base worth importing
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, (BotoCoreError, ClientError, PermissionError, OSError)) or isinstance(exc, FileNotFoundError):
            raise
        raise MethrayError(f"{path}: S3 request failed at {_endpoint()}: {type(exc).__name__}: {exc}") from exc


def is_remote(path: str | os.PathLike) -> bool:
    """True for ``scheme://`` paths other than ``file://``."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fsspec filesystem, path within it)`` for a local or remote path."""
    s = str(path)
    if s.startswith("s3://"):
        fs = PolicyS3FileSystem(config_kwargs=fault_policy().client_config(), **_S3_OPTIONS)
        return fs, fs._strip_protocol(s)
    return fsspec.core.url_to_fs(s)


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts, keeping ``s3://`` prefixes intact."""
    s = str(base).rstrip("/")
    return "/".join([s, *[p.strip("/") for p in parts]]) if is_remote(s) else str(Path(s, *parts))


def exists(path: str | os.PathLike) -> bool:
    """Whether a local or remote path exists.

    Raises
    ------
    MethrayError
        The S3 endpoint cannot be reached or refuses the request.
    """
    fs, p = filesystem(path)
    if not is_remote(path):
        return fs.exists(p)
    with s3_errors(path):
        return fs.exists(p)


def makedirs(path: str | os.PathLike) -> None:
    """Create a local directory; for ``s3://`` check that the bucket exists and is reachable.

    Raises
    ------
    MethrayError
        The bucket does not exist, or the S3 endpoint cannot be reached.
    """
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        return
    fs, p = filesystem(path)
    bucket = p.split("/", 1)[0]
    try:
        with s3_errors(path):
            fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise MethrayError(f"{path}: S3 bucket {bucket!r} does not exist (or is not visible with these credentials)") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary local path; on success it is renamed to ``path`` (or uploaded).

    On an exception the temporary file is removed and nothing appears under ``path``.
    """
    target = str(path)
    if is_remote(target):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="methray-") as tmp:
            local = os.path.join(tmp, os.path.basename(target))
            yield local
            fs, p = filesystem(target)
            fs.put_file(local, p)
        return
    # Keep the extension: some writers (pybigtools, matplotlib) pick the format from it.
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}{Path(target).suffix}"
    try:
        with _disk_errors(target, os.path.dirname(target) or "."):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        with _disk_errors(target):
            yield tmp
        with _disk_errors(target, target):
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# A local disk that is full, read-only or failing is not a transient fault: it is not retried,
# it ends the run with one line. Permission errors count only on the output's own path (an
# input read inside a writer's block may fail for its own reasons).
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


@contextlib.contextmanager
def _disk_errors(target: str, own_path: str | None = None) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_ERRNOS or (own_path is not None and exc.errno in (errno.EACCES, errno.EPERM)):
            raise MethrayError(f"{target}: cannot write ({exc.strerror})") from exc
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a file for writing that appears under ``path`` only when closed without error."""
    with atomic_path(path) as tmp:
        with _disk_errors(str(path), tmp):
            fh = open(tmp, mode)
        with fh:
            yield fh


def staging_dir(final: str | os.PathLike) -> str:
    """A new, empty local directory beside ``final`` (same file system), for :func:`replace_dir`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    return str(work)


def replace_dir(work: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename the finished local directory ``work`` to ``final``, atomically for readers.

    An existing ``final`` is first renamed aside and deleted only after the new one is in
    place, so at every moment ``final`` is either the old or the new complete directory.
    ``work`` must be on the same file system (:func:`staging_dir` makes one). Local paths only:
    on ``s3://`` a directory is a prefix and there is nothing to rename.
    """
    final = Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def local_copy(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Return a local path for ``path``, downloading a remote file once into ``cache_dir``.

    The cache key is the remote path, so each worker process downloads a file at most once.
    """
    if not is_remote(path):
        return str(path)
    import hashlib
    import tempfile

    cache = Path(cache_dir or os.environ.get("METHRAY_CACHE", Path(tempfile.gettempdir(), "methray-cache")))
    key = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    local = cache / key / os.path.basename(str(path))
    download(path, local)
    return str(local)


def download(remote: str, local: str | os.PathLike) -> None:
    """Copy a remote file to ``local`` atomically, unless ``local`` already exists."""
    if os.path.exists(local):
        return
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    fs, p = filesystem(remote)
    with atomic_path(local) as tmp:
        fs.get_file(p, tmp)


def put_dir(local: str | os.PathLike, remote: str) -> None:
    """Upload every file under the local directory ``local`` to ``remote`` (``s3://``), same layout.

    One object per file, each under the fault policy; an upload still failing when the retry
    budget is spent raises :class:`StorageError`. Used instead of ``pyarrow.fs.copy_files``,
    whose ``CopyFiles`` ignores the error of closing an output stream: through a Python
    filesystem (:func:`arrow_location`) that is where an S3 upload happens, so a failed upload
    would pass as copied (pyarrow 26).

    Raises
    ------
    StorageError
        An upload still failing when the retry budget was spent.
    """
    fs, root = filesystem(remote)
    for dirpath, _, names in os.walk(local):
        for name in sorted(names):
            src = os.path.join(dirpath, name)
            fs.put_file(src, f"{root}/{Path(os.path.relpath(src, local)).as_posix()}")


def arrow_location(path: str):
    """``(pyarrow filesystem, path within it)`` for pyarrow and Ray; ``(None, path)`` locally.

    Remote paths use the fsspec filesystem configured here (endpoint, region, timeouts),
    wrapped for pyarrow, so Parquet datasets, Ray Data and Ray Train's checkpoint storage all
    reach the same store with the same settings. With an explicit filesystem, pyarrow and Ray
    want the path without its scheme (``bucket/key``).
    """
    if not is_remote(path):
        return None, str(path)
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, inner = filesystem(path)
    return PyFileSystem(FSSpecHandler(fs)), inner
