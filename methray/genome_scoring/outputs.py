"""The files of a genome-wide job: one Parquet file per (tissue, shard), and the tracks
assembled from them.

``<prefix>/predictions/<tissue>.<model>/<shard id>.parquet`` holds a shard's predictions in
the prediction schema of every job (:mod:`methray.predictions`); ``<tissue>.<model>.bedGraph``
and ``<tissue>.<model>.bw`` are streamed from them shard by shard (:mod:`methray.tracks`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import predictions, storage, tracks
from ..shards import Shard
from .plan import ShardCounts

DIGITS = 4


def predictions_dir(prefix: str, tissue: str, model: str) -> str:
    """``<prefix>/predictions/<tissue>.<model>``: a tissue's shard files."""
    return storage.join(prefix, "predictions", f"{tissue}.{model}")


def shard_path(prefix: str, tissue: str, model: str, shard: Shard) -> str:
    """``<prefix>/predictions/<tissue>.<model>/<shard id>.parquet``."""
    return storage.join(predictions_dir(prefix, tissue, model), f"{shard.id}.parquet")


def track_path(prefix: str, tissue: str, model: str, suffix: str) -> str:
    """``<prefix>/<tissue>.<model>.<suffix>`` (bedGraph / bw)."""
    return storage.join(prefix, f"{tissue}.{model}.{suffix}")


def write_shard(prefix: str, shard: Shard, df: pd.DataFrame, models: dict[str, str]) -> None:
    """Write one finished shard's predictions: a Parquet file per tissue (``models``: tissue -> model), atomically.

    Parameters
    ----------
    df
        ``pos`` (int64, 0-based C), ``in_cpg_island`` and ``pred.<tissue>`` (float32) per tissue.
    """
    df = df.sort_values("pos", kind="stable")
    for t, model in models.items():
        sites = pd.DataFrame({"chrom": shard.chrom, "pos": df["pos"].to_numpy(np.int64), "beta_pred": df[f"pred.{t}"].to_numpy(np.float32),
                              "in_cpg_island": df["in_cpg_island"].to_numpy(bool)})
        predictions.write_file(sites, shard_path(prefix, t, model, shard), model=model, tissue=t)


def read_shard(prefix: str, tissue: str, model: str, shard: Shard) -> pd.DataFrame:
    """One shard's predictions of a tissue (:data:`methray.predictions.SCHEMA`)."""
    return predictions.read_file(shard_path(prefix, tissue, model, shard))


def read_tissue_predictions(prefix: str, tissue: str, model: str, shards: list[Shard], counts: list[ShardCounts]) -> pd.DataFrame:
    """A tissue's genome-wide predictions (shards with CpGs, plan order)."""
    frames = [read_shard(prefix, tissue, model, s) for s, c in zip(shards, counts) if c.scored]
    if not frames:
        return predictions.SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def assemble_tracks(prefix: str, tissue: str, model: str, description: str, shards, counts, chrom_sizes, order: str = "sorted") -> dict[str, str]:
    """Stream a tissue's shards into one sorted bedGraph and one bigWig (same 4-decimal values).

    One shard's rows are held at a time. When the bedGraph's order is the bigWig's (``sorted``,
    or ``reference`` where it sorts the same) both are written in one pass over the shards;
    otherwise the shards are read twice. The bigWig's writer streams too
    (:mod:`methray.bigwig`): the process holds a shard and each zoom level's last bin.

    Parameters
    ----------
    chrom_sizes
        Contig lengths of the reference, in FASTA order.
    order
        bedGraph row order: ``sorted`` (``LC_ALL=C sort -k1,1 -k2,2n``) or ``reference``
        (:mod:`methray.tracks`); the bigWig is always ``sorted``.

    Returns
    -------
    dict
        ``{"bedGraph": path, "bigWig": path}``.
    """
    import pyarrow as pa

    def in_order(how: str) -> list[Shard]:
        rank = {c: i for i, c in enumerate(tracks.ordered_chroms(chrom_sizes, how))}
        return sorted((s for s, c in zip(shards, counts) if c.scored), key=lambda s: (rank[s.chrom], s.start))

    def rows(s: Shard) -> tuple[np.ndarray, np.ndarray]:
        df = read_shard(prefix, tissue, model, s)
        return df["pos"].to_numpy(np.int64), df["beta_pred"].to_numpy(np.float64)

    def bedgraph_text(s: Shard, pos: np.ndarray, text: pa.StringArray) -> str:
        chrom = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(pos), np.int32)), pa.array([s.chrom]))
        return tracks.bedgraph_rows(chrom, pos, pos + 1, text)

    bg, bw = track_path(prefix, tissue, model, "bedGraph"), track_path(prefix, tissue, model, "bw")
    with_data = in_order("sorted")  # the bigWig's own order (tracks.bigwig_writer)
    bedgraph_order = in_order(order)
    one_pass = bedgraph_order == with_data
    with tracks.bigwig_writer(bw, {c: chrom_sizes[c] for c in {s.chrom for s in with_data}}) as add:
        with storage.atomic_write(bg) as fh:
            fh.write(tracks.track_line(f"{tissue} {model}", description))
            for s in bedgraph_order:
                pos, beta = rows(s)
                if one_pass:
                    text, values = tracks.decimals(beta, DIGITS)
                    add(s.chrom, pos, pos + 1, values)
                else:
                    text = tracks.decimal_text(beta, DIGITS)
                fh.write(bedgraph_text(s, pos, text))
        if not one_pass:
            for s in with_data:
                pos, beta = rows(s)
                add(s.chrom, pos, pos + 1, tracks.decimal_values(beta, DIGITS))
    return {"bedGraph": bg, "bigWig": bw}
