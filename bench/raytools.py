"""An embedded Ray for one benchmark section, started and stopped by the bench itself."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def ray_session(num_cpus: int, num_gpus: int | None = None):
    """Start a private embedded Ray with ``num_cpus`` CPUs (never joins a running cluster).

    Ray workers inherit ``PYTHONPATH`` from the driver; the repository root is put first so
    that they import this checkout's ``methray`` (not another installed copy).
    """
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    os.environ.pop("RAY_ADDRESS", None)  # always embedded: the figures are for this machine
    if ray.is_initialized():
        raise RuntimeError("the benchmark starts its own Ray; call it from a process without Ray")
    for attempt in range(3):  # Ray gives a raylet 30 s to register: too short on an overloaded machine
        try:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            break
        except Exception as exc:  # noqa: BLE001  (Ray raises a bare Exception on a start-up timeout)
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        yield
    finally:
        # Collect finished datasets and iterators first: their finalisers call into Ray, and
        # a call after shutdown makes Ray's core worker end the whole process.
        gc.collect()
        ray.shutdown()
