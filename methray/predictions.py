"""A run's prediction tables: one writer and one reader per (tissue, model).

``predictions/<tissue>.<model>.parquet`` holds the scored sites (``chrom, pos, beta,
beta_pred, in_cpg_island, split`` ...) and ``<tissue>.<model>.bedGraph`` the predicted beta as a
track (0-based half-open ``[pos, pos + 1)``, sorted by reference order, ``track`` line naming
model and tissue). Written by ``score`` (the model), ``evaluate`` (the CpG-density baseline)
and ``compare``; read by ``evaluate``.
"""

from __future__ import annotations

import pandas as pd

from . import storage, tracks
from .config import RunConfig
from .errors import MethrayError


def predictions_path(cfg: RunConfig, tissue: str, model: str) -> str:
    return cfg.path("predictions", f"{tissue}.{model}.parquet")


def bedgraph_path(cfg: RunConfig, tissue: str, model: str) -> str:
    return cfg.path(f"{tissue}.{model}.bedGraph")


def write_predictions(cfg: RunConfig, df: pd.DataFrame, tissue: str, model: str) -> None:
    """Write one (tissue, model) prediction table (Parquet) and bedGraph, atomically."""
    from .genome import open_reference

    with storage.atomic_path(predictions_path(cfg, tissue, model)) as tmp:
        df.to_parquet(tmp, index=False)
    tracks.write_bedgraph(
        df,
        bedgraph_path(cfg, tissue, model),
        name=f"{tissue} {model}",
        description=f"methray {model} predicted beta, {tissue}, {cfg.genome}",
        chrom_order=open_reference(cfg.reference).chroms,
    )


def read_predictions(cfg: RunConfig, tissue: str, model: str) -> pd.DataFrame:
    """Read a prediction table written by :func:`write_predictions`."""
    path = predictions_path(cfg, tissue, model)
    if not storage.exists(path):
        raise MethrayError(f"{path}: no predictions; run `methray score` first")
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as fh:
        return pd.read_parquet(fh)
