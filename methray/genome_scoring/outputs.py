"""The files of a genome-wide job: one Parquet file per (tissue, shard), and the tracks
assembled from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage, tracks
from ..cpgs import partition_dir
from ..shards import Shard
from .plan import ShardCounts

DIGITS = 4
SHARD_SCHEMA = pa.schema([("pos", pa.int64()), ("beta_pred", pa.float32()), ("in_cpg_island", pa.bool_())])


def shard_path(prefix: str, tissue: str, shard: Shard) -> str:
    """``<prefix>/predictions/tissue=<t>/chrom=<c>/<shard id>.parquet``."""
    return storage.join(prefix, "predictions", f"tissue={tissue}", partition_dir(shard.chrom), f"{shard.id}.parquet")


def track_path(prefix: str, tissue: str, model: str, suffix: str) -> str:
    """``<prefix>/<tissue>.<model>.<suffix>`` (bedGraph / bw)."""
    return storage.join(prefix, f"{tissue}.{model}.{suffix}")


def write_shard(prefix: str, shard: Shard, df: pd.DataFrame, tissues: list[str]) -> None:
    """Write one finished shard's predictions: a Parquet file per tissue, atomically."""
    df = df.sort_values("pos", kind="stable")
    for t in tissues:
        table = pa.table(
            {"pos": df["pos"].to_numpy(np.int64), "beta_pred": df[f"pred.{t}"].to_numpy(np.float32), "in_cpg_island": df["in_cpg_island"].to_numpy(bool)},
            schema=SHARD_SCHEMA,
        )
        with storage.atomic_path(shard_path(prefix, t, shard)) as tmp:
            pq.write_table(table, tmp)


def read_shard(prefix: str, tissue: str, shard: Shard) -> pd.DataFrame:
    """One shard's predictions of a tissue: ``chrom, pos, beta_pred, in_cpg_island``."""
    fs, p = storage.filesystem(shard_path(prefix, tissue, shard))
    with fs.open(p, "rb") as fh:
        df = pq.read_table(fh).to_pandas()
    df.insert(0, "chrom", shard.chrom)
    return df


def read_tissue_predictions(prefix: str, tissue: str, shards: list[Shard], counts: list[ShardCounts]) -> pd.DataFrame:
    """A tissue's genome-wide predictions (shards with CpGs, plan order)."""
    frames = [read_shard(prefix, tissue, s) for s, c in zip(shards, counts) if c.scored]
    if not frames:
        return pd.DataFrame({"chrom": [], "pos": [], "beta_pred": [], "in_cpg_island": []})
    return pd.concat(frames, ignore_index=True)


def assemble_tracks(prefix: str, tissue: str, model: str, description: str, shards, counts, chrom_sizes) -> dict[str, str]:
    """Stream a tissue's shards into one sorted bedGraph and one bigWig (same 4-decimal values).

    Returns
    -------
    dict
        ``{"bedGraph": path, "bigWig": path}``.
    """
    with_data = [(s, c) for s, c in zip(shards, counts) if c.scored]
    bg = track_path(prefix, tissue, model, "bedGraph")
    with storage.atomic_write(bg) as fh:
        fh.write(tracks.track_line(f"{tissue} {model}", description))
        for s, _ in with_data:
            fh.write(tracks.bedgraph_lines(read_shard(prefix, tissue, s), "beta_pred", digits=DIGITS))

    def records():
        for s, _ in with_data:
            yield from tracks.site_records(read_shard(prefix, tissue, s), chrom=s.chrom, digits=DIGITS)

    bw = track_path(prefix, tissue, model, "bw")
    present = {s.chrom for s, _ in with_data}
    tracks.write_bigwig(bw, {c: n for c, n in chrom_sizes.items() if c in present}, records())
    return {"bedGraph": bg, "bigWig": bw}


