"""Prediction tables: one schema for every model and every job, one writer, one reader.

Every prediction file methray writes (``methray score`` / ``evaluate`` / ``compare``:
``predictions/<tissue>.<model>.parquet`` with ``<tissue>.<model>.bedGraph`` beside it;
``methray score-genome``: ``predictions/<tissue>.<model>/<shard>.parquet``) has exactly
:data:`SCHEMA`, so a glob over ``predictions/`` reads as one table (DuckDB
``read_parquet('predictions/*.parquet')``, polars, ``pandas.read_parquet``) and the ``model``
and ``tissue`` columns tell the rows apart.

======================  =========  ============================================================
column                  type       meaning
======================  =========  ============================================================
``chrom``               string     contig
``pos``                 int64      0-based position of the CpG's C (+ strand)
``model``               string     model name (``mrcnn``, ``cpg_density``, ...)
``tissue``              string     tissue the sites belong to (measured in / scored for)
``beta_pred``           float32    predicted beta value, 0..1
``beta``                float64    measured beta value; NaN where not measured
``in_cpg_island``       bool       inside a CpG island of the config's ``cpg_islands``
``split``               string     ``train`` / ``val`` / ``test`` of the run's hold-out;
                                   null in genome-wide scoring (the model's hold-out regions
                                   are in the metric tables)
======================  =========  ============================================================

The bedGraph holds the predicted beta as a track (0-based half-open ``[pos, pos + 1)``,
``track`` line naming model and tissue, rows in ``score.track_order``: :mod:`methray.tracks`).
Written by ``score`` (the model), ``evaluate`` (the baselines) and ``compare``;
read by ``evaluate``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage, tracks
from .config import RunConfig
from .errors import MethrayError

SCHEMA = pa.schema(
    [
        ("chrom", pa.string()),
        ("pos", pa.int64()),
        ("model", pa.string()),
        ("tissue", pa.string()),
        ("beta_pred", pa.float32()),
        ("beta", pa.float64()),
        ("in_cpg_island", pa.bool_()),
        ("split", pa.string()),
    ]
)
COLUMNS = SCHEMA.names


def to_table(df: pd.DataFrame, *, model: str, tissue: str) -> pa.Table:
    """Predictions as a table of :data:`SCHEMA`.

    Parameters
    ----------
    df
        ``chrom``, ``pos``, ``beta_pred`` and optionally ``beta``, ``in_cpg_island``,
        ``split`` (missing ones become NaN / False / null); other columns are dropped.
    model, tissue
        Written into every row.
    """
    n = len(df)
    beta = df["beta"].to_numpy(np.float64) if "beta" in df else np.full(n, np.nan)
    island = df["in_cpg_island"].to_numpy(bool) if "in_cpg_island" in df else np.zeros(n, bool)
    return pa.table(
        {
            "chrom": pa.array(df["chrom"].astype(str).to_numpy(), pa.string()),
            "pos": pa.array(df["pos"].to_numpy(np.int64), pa.int64()),
            "model": pa.array([model] * n, pa.string()),
            "tissue": pa.array([tissue] * n, pa.string()),
            "beta_pred": pa.array(df["beta_pred"].to_numpy(np.float32), pa.float32()),
            "beta": pa.array(beta, pa.float64()),
            "in_cpg_island": pa.array(island, pa.bool_()),
            "split": pa.array(df["split"].astype(str).to_numpy(), pa.string()) if "split" in df else pa.nulls(n, pa.string()),
        },
        schema=SCHEMA,
    )


def write_file(df: pd.DataFrame, path: str, *, model: str, tissue: str) -> pa.Table:
    """Write predictions (:func:`to_table`) as one Parquet file, atomically; returns the table written."""
    table = to_table(df, model=model, tissue=tissue)
    with storage.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return table


def read_file(path: str) -> pd.DataFrame:
    """Read one prediction file (:data:`SCHEMA`) into pandas."""
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as fh:
        return pq.read_table(fh, schema=SCHEMA).to_pandas()


def predictions_path(cfg: RunConfig, tissue: str, model: str, seed: int | None = None) -> str:
    """``predictions/<tissue>.<model>.parquet``; for a further training seed ``seed`` (not
    ``train.seed``) under its :meth:`~methray.config.RunConfig.seed_dir`."""
    if seed is None or seed == cfg.train.seed:
        return cfg.path("predictions", f"{tissue}.{model}.parquet")
    return storage.join(cfg.seed_dir(seed), "predictions", f"{tissue}.{model}.parquet")


def bedgraph_path(cfg: RunConfig, tissue: str, model: str) -> str:
    return cfg.path(f"{tissue}.{model}.bedGraph")


def write_predictions(cfg: RunConfig, df: pd.DataFrame, tissue: str, model: str, seed: int | None = None) -> None:
    """Write one (tissue, model) prediction table (Parquet, :data:`SCHEMA`) and bedGraph, atomically.

    A further training seed ``seed`` (not ``train.seed``) writes its table only, at
    :func:`predictions_path`; the bedGraph is the run's checkpoint's.
    """
    from .genome import open_reference

    table = write_file(df, predictions_path(cfg, tissue, model, seed), model=model, tissue=tissue)
    if seed is not None and seed != cfg.train.seed:
        return
    tracks.write_bedgraph(
        table.select(["chrom", "pos", "beta_pred"]).to_pandas(),
        bedgraph_path(cfg, tissue, model),
        name=f"{tissue} {model}",
        description=f"methray {model} predicted beta, {tissue}, {cfg.genome}",
        chrom_order=open_reference(cfg.reference).chroms,
        order=cfg.score.track_order,
    )


def read_predictions(cfg: RunConfig, tissue: str, model: str, seed: int | None = None) -> pd.DataFrame:
    """Read a prediction table written by :func:`write_predictions` (or a further seed's,
    :func:`predictions_path`)."""
    path = predictions_path(cfg, tissue, model, seed)
    if not storage.exists(path):
        raise MethrayError(f"{path}: no predictions; run `methray score` first")
    return read_file(path)
