"""Genome-wide tracks of a regulatory model: every window of the label grid scored, one
bedGraph per class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import tracks
from ..genome import open_reference
from ..regions import parse_region
from .config import RegulatoryConfig
from .labels import n_counts, window_starts


def scan_windows(cfg: RegulatoryConfig, stride: int) -> tuple[pd.DataFrame, int]:
    """Every window of the label grid (``labels.length`` every ``stride`` bp) with at most
    ``labels.max_n_fraction`` N, on ``genome_scan.region`` or every chosen contig.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end`` (0-based half-open), genome order.
    n_dropped : int
        Grid windows dropped for N.
    """
    ref = open_reference(cfg.reference)
    length = cfg.labels.length
    if cfg.genome_scan.region:
        chrom, lo, hi = parse_region(cfg.genome_scan.region)
        ref.check_chrom(chrom, source="genome_scan.region")
        spans = [(chrom, lo, min(hi, ref.sizes[chrom]))]
    else:
        spans = [(c, 0, ref.sizes[c]) for c in (cfg.labels.chroms or ref.chroms)]
    frames, dropped = [], 0
    for chrom, lo, hi in spans:
        # windows of the label grid (multiples of stride from the contig start) inside [lo, hi)
        starts = window_starts(ref.sizes[chrom], length, stride)
        starts = starts[(starts >= lo) & (starts + length <= hi)]
        keep = n_counts(ref.contig_codes(chrom), starts, length) <= cfg.labels.max_n_fraction * length
        dropped += int((~keep).sum())
        frames.append(pd.DataFrame({"chrom": chrom, "start": starts[keep], "end": starts[keep] + length}))
    return pd.concat(frames, ignore_index=True), dropped


def write_tracks(cfg: RegulatoryConfig, model: str, stride: int, windows: pd.DataFrame, prob: np.ndarray, classes: list[str]) -> list[str]:
    """One bedGraph per class; each window's probability on its central ``stride`` bp."""
    mid = (windows["start"].to_numpy() + windows["end"].to_numpy()) // 2
    half = min(stride, cfg.labels.length)
    bins = windows[["chrom"]].assign(start=np.maximum(mid - half // 2, 0))
    bins["end"] = bins["start"] + half
    order = open_reference(cfg.reference).chroms
    paths = []
    for k, cls in enumerate(classes):
        path = cfg.path("tracks", f"{model}.{_safe(cls)}.bedGraph")
        tracks.write_bedgraph(
            bins.assign(prob=prob[:, k]), path, name=f"{cls} {model}",
            description=f"methray {model} P({cls}) per {cfg.labels.length} bp window (centre {half} bp), {cfg.genome}",
            chrom_order=order, value_col="prob", pos_col="start", end_col="end",
        )
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


