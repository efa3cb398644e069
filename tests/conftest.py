"""Shared fixtures: the real demo data, small real slices of it, one local Ray per session."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hg19_chr22"
FASTA = DATA / "chr22.fa"
IMR90 = DATA / "imr90_wgbs.bismark.cov.gz"
SALIVA = DATA / "saliva_bisulfite_mean.bedGraph.gz"
ISLANDS = DATA / "cpg_islands.bed"

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")


def pytest_collection_modifyitems(config, items):
    if not DATA.exists():
        skip = pytest.mark.skip(reason=f"real data not found at {DATA}")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, quiet)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def head_lines(path: Path, n: int, skip: int = 0) -> list[str]:
    """Lines ``skip .. skip + n`` of a (gzipped) text file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out = []
    with opener(path, "rt") as fh:
        for i, line in enumerate(fh):
            if i >= skip + n:
                break
            if i >= skip:
                out.append(line)
    return out


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.writelines(lines)
    return path


@pytest.fixture(scope="session")
def imr90_slice(tmp_path_factory) -> Path:
    """The first 6,000 real IMR90 Bismark rows (chr22:24.08-24.6 Mb), as a .cov.gz file."""
    return write_gz(tmp_path_factory.mktemp("slice") / "imr90_slice.cov.gz", head_lines(IMR90, 6000))


def slice_config(out_dir: Path, cov: Path, **sections) -> dict:
    """A run config dict over a real data slice (small, for end-to-end tests)."""
    cfg = {
        "run_name": "test",
        "data_dir": str(DATA),
        "out_dir": str(out_dir),
        "reference": "chr22.fa",
        "cpg_islands": "cpg_islands.bed",
        "tissues": [{"name": "imr90", "path": str(cov)}],
        "split": {"n_blocks": 5, "val_fraction": 0.2, "test_fraction": 0.2},
        "train": {"epochs": 1, "batch_size": 64, "num_workers": 1, "shuffle_buffer": 0},
        "score": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 512},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg
