"""What machine a benchmark ran on, and how much memory each stage used.

psutil is the one Ray ships (``ray/thirdparty_files``) unless a standalone one is installed
(``pip install 'methray[bench]'``); importing :mod:`ray` first puts it on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import threading
import time
from pathlib import Path

import ray  # noqa: F401  (makes Ray's bundled psutil importable)
import psutil


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict:
    """The machine and library versions: CPU model, cores, RAM (GiB), GPU, versions, git commit."""
    import numpy
    import pyarrow
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "gpus": torch.cuda.device_count() if gpu else 0,
        "os": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__,
        },
        "git_commit": commit,
    }


def machine_slug(info: dict) -> str:
    """A file-name-safe machine label, e.g. ``2cpu-amd-epyc`` or ``16cpu-nvidia-h100-80gb-hbm3``."""
    vendor = re.sub(r"[^a-z0-9]+", "-", info["cpu_model"].lower()).strip("-")
    label = f"{info['cores']}cpu-{'-'.join(vendor.split('-')[:3])}"
    if info["gpu"]:
        label += "-" + re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    return label


def _footprint(proc: psutil.Process) -> float:
    """Proportional set size (PSS, bytes) where readable, else RSS: shared pages such as
    Ray's object store are split between the processes that map them instead of counted
    once per process."""
    try:
        info = proc.memory_full_info()
        return float(getattr(info, "pss", info.rss))
    except psutil.AccessDenied:
        return float(proc.memory_info().rss)


class MemorySampler:
    """Peak memory of this process and of its child process tree (Ray's processes) while active.

    A background thread samples every ``interval`` seconds. Use as a context manager; after
    exit, :attr:`peak` holds ``driver_rss_mb`` (this process, RSS), ``children_pss_mb`` (all
    descendants: embedded Ray's GCS, raylet and workers, summed PSS), ``total_pss_mb``
    (driver PSS + children, the largest sum seen in one sample) and the largest single
    descendant's ``largest_child_rss_mb`` / ``largest_child_uss_mb`` (USS: memory unique to
    that process, which a shared memory-mapped genome does not add to). Units: MiB.
    """

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak = {"driver_rss_mb": 0.0, "children_pss_mb": 0.0, "total_pss_mb": 0.0, "largest_child_rss_mb": 0.0, "largest_child_uss_mb": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        me = psutil.Process()
        children = 0.0
        mb = 2.0**20
        for child in me.children(recursive=True):
            try:
                info = child.memory_full_info()
                children += float(getattr(info, "pss", info.rss))
                self.peak["largest_child_rss_mb"] = max(self.peak["largest_child_rss_mb"], round(info.rss / mb, 1))
                self.peak["largest_child_uss_mb"] = max(self.peak["largest_child_uss_mb"], round(getattr(info, "uss", info.rss) / mb, 1))
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        driver_rss = me.memory_info().rss
        for key, value in (("driver_rss_mb", driver_rss / mb), ("children_pss_mb", children / mb), ("total_pss_mb", (_footprint(me) + children) / mb)):
            self.peak[key] = max(self.peak[key], round(value, 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall clock, perf_counter)."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
