"""Connecting to Ray: join a cluster when one is configured, else start an embedded one.

Order of precedence:

1. ``ray.address`` in the config;
2. the ``RAY_ADDRESS`` environment variable (set by ``ray job submit`` for the job's driver);
3. a local cluster started with ``ray start`` (its address file ``ray_current_cluster`` in
   Ray's default temp dir: ``$RAY_TMPDIR/ray``, else ``$TMPDIR/ray``, else ``/tmp/ray``). A head
   started with ``ray start --temp-dir DIR`` writes the file into ``DIR`` and is not found
   there, as with ``ray.init()``: give its address (``RAY_ADDRESS`` or ``ray.address``);
4. otherwise an embedded local Ray with ``ray.num_cpus`` CPUs (default: all cores).

A cluster started with ``RAY_AUTH_MODE=token`` accepts only clients in token mode with its
token; a refused connection to a cluster that is up ends with one line that says so, instead
of falling back to an embedded Ray.

Also here: process settings for the processes that run models (:func:`keep_freed_buffers`).
"""

from __future__ import annotations

import json
import logging
import os
import socket

import ray

from .config import JobConfig
from .errors import MethrayError
from .storage import S3_ENV_VARS

log = logging.getLogger(__name__)


def init_ray(cfg: JobConfig | None = None) -> str:
    """Initialise Ray for this process (no-op if already initialised).

    Parameters
    ----------
    cfg
        Any job config (its ``ray`` section); None: environment and defaults only.

    Returns
    -------
    str
        ``"cluster"`` when joining an existing cluster, ``"embedded"`` when started locally,
        ``"existing"`` when Ray was already initialised in this process.
    """
    if ray.is_initialized():
        return "existing"
    configure_ray_data()
    quiet = dict(log_to_driver=False, logging_level="ERROR")
    env = worker_env()
    runtime_env = {"env_vars": env} if env else None
    address = (cfg.ray.address if cfg else None) or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        except ConnectionError as exc:
            raise MethrayError(f"cannot join the Ray cluster at {address} ({exc}){_auth_hint()}") from None
        return "cluster"
    started = started_cluster_address()
    if started:
        try:
            ray.init(address=started, runtime_env=runtime_env, **quiet)
            log.info("joined the running local Ray cluster at %s", started)
            return "cluster"
        except (ConnectionError, RuntimeError) as exc:
            if _listening(started):  # the head is up and refused us: not a stale address file
                raise MethrayError(f"the local Ray cluster at {started} (the last `ray start` of this machine) refused the connection ({exc}){_auth_hint()}") from None
            log.warning("no Ray cluster at %s (stale address file); starting an embedded Ray", started)
    ray.init(
        num_cpus=(cfg.ray.num_cpus if cfg else None),
        include_dashboard=False,
        runtime_env=runtime_env,
        **quiet,
    )
    return "embedded"


def started_cluster_address() -> str | None:
    """The address of the last ``ray start`` cluster of this machine, or None.

    This is the address file in the Ray temp dir that a bare ``ray.init()`` reads. Ray has no
    public call for it: ``ray.init()`` would join it but refuses ``num_cpus`` /
    ``include_dashboard`` when it does, and ``address="auto"`` also joins any other Ray
    instance it sees on the machine (e.g. another user's embedded one). So this one function
    uses Ray's private ``find_bootstrap_address``.
    """
    from ray._private.services import find_bootstrap_address

    return find_bootstrap_address(None)


def configure_ray_data() -> None:
    """Match Ray Data's own retries to methray's storage-fault policy (:mod:`methray.storage`).

    Every S3 request of a Ray Data task already runs under the policy inside the filesystem,
    so Ray Data's retries of I/O errors (``retried_io_errors``, which match pyarrow's native
    S3 messages) and of failed map tasks (``retried_map_errors`` / ``max_map_retries``,
    ``actor_task_retry_on_errors``) are off: a storage error reaching Ray Data means the retry
    budget is spent, and retrying it again would multiply the budget. Tasks and actors whose
    worker process died (a system failure, not an exception) are still retried by Ray.
    ``raise_original_map_exception`` hands the driver methray's own error instead of a
    ``UserCodeException`` around it.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.retried_io_errors = []
    ctx.retried_map_errors = False
    ctx.max_map_retries = 0
    ctx.actor_task_retry_on_errors = False
    ctx.raise_original_map_exception = True
    # Ray Data's per-task memory sampler reads /proc/<pid>/smaps once a second in every busy
    # worker (~12 ms a read for a process holding torch): ~1% of each core, for a metric only.
    ctx.memory_usage_poll_interval_s = None


def _listening(address: str) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _auth_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return "; a cluster started with RAY_AUTH_MODE=token needs `export RAY_AUTH_MODE=token` here too, with its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
    return "; check that the token here (~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) is the cluster's"


def worker_env() -> dict[str, str]:
    """The driver's S3 endpoint / region variables, for the runtime env of this job's workers.

    Workers of a cluster started elsewhere (``ray start``, KubeRay) do not inherit the
    driver's environment, and ``s3.endpoint_url`` / ``s3.region`` of the config reach the
    driver only (:func:`methray.storage.configure_s3` exports them). Variables that a submitted
    job already sets in its runtime env are left out: Ray refuses to merge a key given twice.
    Credentials are never forwarded: a runtime env is stored by Ray and shown in the dashboard;
    workers take credentials from the cluster (Secret, instance or pod role, ``ray start``'s
    environment).
    """
    env = {k: os.environ[k] for k in S3_ENV_VARS if os.environ.get(k)}
    job_config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job_config:
        job_env = (json.loads(job_config).get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in job_env}
    return env


MMAP_THRESHOLD = 32 * 2**20
"""Allocations below this many bytes come from the heap (glibc's largest ``M_MMAP_THRESHOLD``)."""
TRIM_THRESHOLD = 64 * 2**20
"""Free memory at the top of a heap kept for reuse up to this many bytes (``M_TRIM_THRESHOLD``)."""


def keep_freed_buffers() -> bool:
    """Let this process reuse freed tensor buffers instead of faulting in fresh pages for every step.

    glibc's ``malloc`` serves a block above its mmap threshold (128 KiB at start, raised as
    large blocks are freed) with new pages from the kernel, returns it with ``munmap`` when
    freed, and returns free memory above the trim threshold at the top of a heap. A training
    step allocates and frees tens of MiB of activations and convolution buffers, so every
    step faulted and zeroed them again: MRCNN at batch 128 on one thread, 3,000-7,000 minor
    page faults and 8-17 ms of system time in a 40-60 ms step, varying with the process's
    allocation history and with the thread the loop runs in (Ray Train runs it in a thread of
    its own). Fixed thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`; ``mallopt``)
    keep those blocks in the heap for the next step: no page faults per step, at ~30 MiB more
    resident memory. Blocks above 32 MiB are still mapped per allocation.

    Process-wide and idempotent; call it once in a process that runs a model (a training
    worker, a CPU predictor, a plain loop measured against one). Forward passes must also
    stay below 32 MiB of activations to profit (``predictor.CPU_FORWARD_WINDOWS``).

    Returns
    -------
    bool
        True if set; False where the C library is not glibc (nothing changed).
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(libc.mallopt(m_trim_threshold, TRIM_THRESHOLD))
