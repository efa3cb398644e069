"""Section 6: scaling on paper, from measured per-worker throughputs.

Projects the wall time to score every CpG of hg38 for several tissues (one model per
tissue, as methray trains them: ``cpgs * tissues`` window predictions), assuming scoring is
embarrassingly parallel over genome shards (linear scaling in devices) and the encoders
keep up (the CPU cores needed per GPU are given from the measured encoding rate).
"""

from __future__ import annotations

HG38_CPGS = 28_000_000
"""CpG dinucleotides in hg38, both strands merged (about 28 million)."""

GPU_TARGET_CPGS_PER_S = 250_000
"""The MRCNN scoring rate methray targets per GPU (an assumption until measured)."""


def project(*, cpu_cpgs_per_s: float, cpu_cores: int, gpu_cpgs_per_s: float | None, encode_windows_per_s_per_core: float,
            tissues: int = 10, devices: tuple[int, ...] = (1, 8, 64), cpgs: int = HG38_CPGS) -> dict:
    """Projected hours to score ``cpgs * tissues`` windows on 1, 8, 64 GPUs (and CPU workers).

    Parameters
    ----------
    cpu_cpgs_per_s
        Measured end-to-end CPU scoring rate on ``cpu_cores`` cores (Ray path).
    gpu_cpgs_per_s
        Measured GPU inference rate per GPU, or None to use :data:`GPU_TARGET_CPGS_PER_S`.
    encode_windows_per_s_per_core
        Measured encoder rate on one core (windows/s).
    """
    work = cpgs * tissues
    gpu_rate = gpu_cpgs_per_s or GPU_TARGET_CPGS_PER_S
    per_core = cpu_cpgs_per_s / cpu_cores
    return {
        "cpgs": cpgs,
        "tissues": tissues,
        "predictions": work,
        "gpu_cpgs_per_s": round(gpu_rate),
        "gpu_rate_source": "measured" if gpu_cpgs_per_s else f"ASSUMED target {GPU_TARGET_CPGS_PER_S:,} CpGs/s/GPU (no GPU measured)",
        "cpu_cpgs_per_s_per_core": round(per_core),
        "encode_cores_per_gpu": round(gpu_rate / encode_windows_per_s_per_core, 2),
        "gpu_hours": {str(n): round(work / (n * gpu_rate) / 3600, 3) for n in devices},
        "cpu_core_hours": round(work / per_core / 3600, 1),
        "cpu_hours_on_cores": {str(n): round(work / (n * per_core) / 3600, 2) for n in (2, 64, 512)},
    }
