"""Section 2: the Ray Data window pipeline (read Parquet -> encode -> batches) with 1 and 2 CPUs.

Each measurement runs in a fresh embedded Ray started with ``num_cpus`` CPUs, so Ray Data
schedules its read and encode tasks on exactly that many slots. The pipeline is
:func:`methray.windows.window_dataset`, drained in the driver with ``iter_batches``.
"""

from __future__ import annotations

import contextlib
import time

from methray.encoding import WindowSpec
from methray.windows import window_dataset

from .machine import MemorySampler
from .raytools import ray_session


def drain(table: str, fasta: str, spec: WindowSpec, batch_size: int) -> tuple[int, float]:
    """Windows read and seconds taken to iterate the whole window dataset once."""
    start = time.perf_counter()
    n = 0
    batches = window_dataset(table, fasta, spec, batch_size=batch_size).iter_batches(batch_size=batch_size, batch_format="numpy")
    for batch in batches:
        n += len(batch["x"])
    seconds = time.perf_counter() - start
    del batches, batch  # release the iterator before the Ray session ends
    return n, seconds


def run(table: str, fasta: str, spec: WindowSpec, *, cpus: tuple[int, ...] = (1, 2), batch_size: int = 4096, fresh: bool = True) -> dict:
    """windows/s of the pipeline per CPU count, the 2-vs-1 ratio and peak memory per run.

    ``fresh=False`` runs once in the Ray session already started (``cpus`` = its CPUs;
    used by ``--quick`` to save Ray start-ups).
    """
    out = {"window": {"length": spec.length, "exclude_cpg": spec.exclude_cpg}, "batch_size": batch_size, "runs": {}}
    for n_cpus in cpus:
        with MemorySampler() as mem, (ray_session(n_cpus) if fresh else contextlib.nullcontext()):
            n, seconds = drain(table, fasta, spec, batch_size)
        out["runs"][str(n_cpus)] = {"windows": n, "seconds": round(seconds, 2), "windows_per_s": round(n / seconds), "memory": mem.peak}
    if "1" in out["runs"] and "2" in out["runs"]:
        out["scaling_2_vs_1"] = round(out["runs"]["2"]["windows_per_s"] / out["runs"]["1"]["windows_per_s"], 2)
    return out
