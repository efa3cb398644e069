"""Starting a job: storage, run directory, saved config and Ray, the same for every job.

Every job (``pipeline`` and its stages, ``compare``, ``regulatory``, ``score-genome``, ...)
starts with :func:`start_run`; a job that needs Ray only for some of its steps calls
:func:`start_ray` when it gets there. Progress goes to the ``methray`` logger (the CLI prints
its INFO messages to stdout).
"""

from __future__ import annotations

import logging
import time

from . import storage
from .config import JobConfig, save_config
from .runtime import init_ray

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"


def start_run(cfg: JobConfig, *, with_ray: bool = True, run_dir: str | None = None) -> str:
    """Configure S3, create the run directory, save the resolved config, connect to Ray.

    Parameters
    ----------
    cfg
        A loaded job config (:func:`methray.config.load_job_config`): paths absolute.
    with_ray
        Connect to Ray now (:func:`start_ray`). Stages that are plain pandas / scikit-learn
        (prepare, evaluate) need no Ray.
    run_dir
        The run directory; default ``cfg.out_dir``.

    Returns
    -------
    str
        The run directory. It holds ``config.yaml``, which :func:`methray.config.load_job_config`
        loads again from any working directory.

    Raises
    ------
    MethrayError
        An ``s3://`` run directory whose bucket is missing or unreachable.
    """
    storage.configure_s3(cfg.s3.endpoint_url, cfg.s3.region, cfg.storage)
    run_dir = run_dir or cfg.out_dir
    storage.makedirs(run_dir)
    save_config(cfg, storage.join(run_dir, CONFIG_NAME))
    where = f" ({start_ray(cfg)})" if with_ray else ""
    log.info("methray: run %r -> %s%s", cfg.run_name, run_dir, where)
    return run_dir


def start_ray(cfg: JobConfig, tries: int = 3) -> str:
    """:func:`methray.runtime.init_ray`, retried when a new local Ray misses its start-up deadline.

    On a saturated machine a new local Ray can miss the raylet's (fixed, 30 s) start-up
    deadline; it is shut down and started again after 10 s, up to ``tries`` times.

    Returns
    -------
    str
        ``"Ray <mode>: <n> CPU, <m> GPU"`` (mode ``embedded``, ``cluster`` or ``existing``).
    """
    import ray

    for attempt in range(1, tries + 1):
        try:
            mode = init_ray(cfg)
            break
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == tries:
                raise
            ray.shutdown()
            log.warning("ray: start-up timed out (machine busy); retry %d/%d", attempt, tries - 1)
            time.sleep(10)
    res = ray.cluster_resources()
    return f"Ray {mode}: {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU"
