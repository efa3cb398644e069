"""Connecting to Ray: join a cluster when one is configured, else start an embedded one.

Order of precedence:

1. ``ray.address`` in the config;
2. the ``RAY_ADDRESS`` environment variable (set by ``ray job submit`` for the job's driver);
3. a local cluster started with ``ray start`` (``ray.init(address="auto")`` finds it);
4. otherwise an embedded local Ray with ``ray.num_cpus`` CPUs (default: all cores).
"""

from __future__ import annotations

import logging
import os

import ray

from .config import RunConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RunConfig | None = None) -> str:
    """Initialise Ray for this process (no-op if already initialised).

    Returns
    -------
    str
        ``"cluster"`` when joining an existing cluster, ``"embedded"`` when started locally.
    """
    if ray.is_initialized():
        return "existing"
    quiet = dict(log_to_driver=False, logging_level="ERROR")
    # Let workers see the S3 settings and the methray package location the driver has.
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("AWS_") and k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")}
    address = (cfg.ray.address if cfg else None) or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
        return "cluster"
    try:
        ray.init(address="auto", **quiet)
        log.info("joined the running local Ray cluster")
        return "cluster"
    except (ConnectionError, RuntimeError):
        pass
    ray.init(
        num_cpus=(cfg.ray.num_cpus if cfg else None),
        include_dashboard=False,
        runtime_env={"env_vars": env_vars} if env_vars else None,
        **quiet,
    )
    return "embedded"
