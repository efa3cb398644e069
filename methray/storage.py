"""Paths that may be local or ``s3://``, and atomic writes.

Every output methray writes goes through :func:`atomic_write` (or :func:`atomic_path` for
writers that want a path): the data is written under a temporary name beside the target and
renamed when complete, so a reader never sees a truncated file. On S3 an object only appears
once its upload completes, so the temporary-name step is not needed there.

S3 settings come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or from
:func:`configure_s3` (the run config's ``s3`` section). Credentials are never logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import fsspec

# botocore client settings for every S3 client: a wrong endpoint or an unreachable store fails
# within seconds (3 attempts, 5 s connect timeout) instead of hanging on retries.
S3_CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}}
# Non-secret S3 settings that Ray workers must share with the driver (see runtime.init_ray).
S3_ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")

_S3_OPTIONS: dict = {"config_kwargs": S3_CLIENT_CONFIG}


def configure_s3(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Set the S3 endpoint / region used for every ``s3://`` path in this process.

    The values are also exported as ``AWS_ENDPOINT_URL`` / ``AWS_DEFAULT_REGION`` so that
    pyarrow and Ray workers started afterwards (or given these variables by
    :func:`methray.runtime.init_ray`) use the same store. Credentials are not touched: they
    come from the standard AWS chain (environment, ``~/.aws``, instance or pod role).

    Parameters
    ----------
    endpoint_url
        An S3-compatible endpoint (``http://127.0.0.1:9000``); ``None`` keeps the AWS default
        or ``AWS_ENDPOINT_URL``.
    region
        The region name; ``None`` keeps ``AWS_DEFAULT_REGION``.
    """
    _S3_OPTIONS.clear()
    _S3_OPTIONS["config_kwargs"] = S3_CLIENT_CONFIG
    client_kwargs = {}
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        client_kwargs["region_name"] = region
        os.environ["AWS_DEFAULT_REGION"] = region
    if client_kwargs:
        _S3_OPTIONS["client_kwargs"] = client_kwargs


@contextlib.contextmanager
def s3_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an unreachable S3 endpoint or a refused request into a one-line MethrayError."""
    try:
        yield
    except Exception as exc:  # botocore / aiohttp errors have no common base worth importing
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, (BotoCoreError, ClientError, PermissionError, OSError)) or isinstance(exc, FileNotFoundError):
            raise
        from .errors import MethrayError

        endpoint = _S3_OPTIONS.get("client_kwargs", {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        raise MethrayError(f"{path}: S3 request failed at {endpoint}: {type(exc).__name__}: {exc}") from exc


def is_remote(path: str | os.PathLike) -> bool:
    """True for ``scheme://`` paths other than ``file://``."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fsspec filesystem, path within it)`` for a local or remote path."""
    s = str(path)
    if s.startswith("s3://"):
        return fsspec.core.url_to_fs(s, **_S3_OPTIONS)
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
    with s3_errors(path):
        found = fs.exists(bucket)
    if not found:
        from .errors import MethrayError

        raise MethrayError(f"{path}: S3 bucket {bucket!r} does not exist (or is not visible with these credentials)")


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
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    # Keep the extension: some writers (pybigtools, matplotlib) pick the format from it.
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}{Path(target).suffix}"
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a file for writing that appears under ``path`` only when closed without error."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
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
