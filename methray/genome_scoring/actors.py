"""The Ray Data pieces of a genome-wide job: a task that reads each shard's CpGs, and an actor
that scores them with every model of the tissue set."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa

from ..cpgs import read_cpgs
from ..predictor import Predictor


@functools.lru_cache(maxsize=1)
def _contig_sites(table: str, chrom: str) -> pd.DataFrame:
    # Consecutive shards of one contig usually land in the same worker: read the contig once.
    return read_cpgs(table, chrom, ["pos", "in_cpg_island", "excluded"])


def load_shard_sites(batch: dict[str, np.ndarray], table: str) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: pieces of shards -> their scorable CpGs.

    Parameters
    ----------
    batch
        Piece rows: ``chrom`` (str), ``start``, ``end`` (the shard, 0-based half-open),
        ``shard`` (plan index), ``lo``, ``hi``: the piece is the shard's scorable CpGs of rank
        ``[lo, hi)`` (ranks counted from the shard's first scorable CpG).
    table
        The CpG table (:mod:`methray.cpgs`).

    Returns
    -------
    pyarrow.Table
        ``chrom`` (dictionary-encoded string), ``pos`` (int64, 0-based C), ``in_cpg_island``
        (bool), ``shard`` (int64), ``row`` (int64, rank within the shard); excluded sites left out.
    """
    cols: dict[str, list] = {k: [] for k in ("chrom", "pos", "in_cpg_island", "shard", "row")}
    for chrom, start, end, shard, lo, hi in zip(batch["chrom"], batch["start"], batch["end"], batch["shard"], batch["lo"], batch["hi"]):
        df = _contig_sites(table, str(chrom))
        pos = df["pos"].to_numpy(np.int64)
        a, b = np.searchsorted(pos, [int(start), int(end)])
        keep = a + np.flatnonzero(~df["excluded"].to_numpy(bool)[a:b])[int(lo) : int(hi)]
        n = len(keep)
        # the contig as a dictionary column: no per-row string for Ray Data to convert
        cols["chrom"].append(pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [str(chrom)]))
        cols["pos"].append(pos[keep])
        cols["in_cpg_island"].append(df["in_cpg_island"].to_numpy(bool)[keep])
        cols["shard"].append(np.full(n, shard, dtype=np.int64))
        cols["row"].append(np.arange(int(lo), int(lo) + n, dtype=np.int64))
    # A pyarrow table is a Ray Data block as it is; a dict of numpy arrays would be converted
    # column by column with per-element type inference (~0.3 us a value, measured in Ray 2.60).
    return pa.table({"chrom": pa.chunked_array(cols["chrom"], pa.dictionary(pa.int32(), pa.string())),
                     **{k: np.concatenate(v) for k, v in cols.items() if k != "chrom"}})


class SetPredictor:
    """Ray Data callable class: every model of the set on a batch of CpGs.

    Wraps one :class:`methray.score.Predictor` per distinct checkpoint (loaded once per
    actor). Rows are predicted in sub-batches of ``batch_size`` keyed by ``(shard, row //
    batch_size)``, so a CpG is always computed together with the same neighbours whatever
    else the batch holds: outputs are reproducible to the bit across interrupted runs.

    Parameters
    ----------
    checkpoints
        Tissue name -> checkpoint directory.
    reference
        FASTA path.
    batch_size
        Sub-batch size (CpGs per forward pass).
    threads
        torch CPU threads per actor.
    rc_average
        Average both strands (``score.rc_average``; :class:`methray.predictor.Predictor`).

    ``__call__`` takes ``chrom, pos, in_cpg_island, shard, row`` ``(B,)`` and returns a
    ``pyarrow.Table`` of ``shard, pos, in_cpg_island`` and ``pred.<tissue>`` ``(B,) float32``
    per tissue.
    """

    predictor_class: type[Predictor] = Predictor
    """The per-checkpoint predictor (the bench swaps in one whose model is a no-op)."""

    def __init__(self, checkpoints: dict[str, str], reference: str, batch_size: int, threads: int = 1, rc_average: bool = True):
        loaded: dict[str, Predictor] = {}
        self.predictors = {}
        for tissue, path in checkpoints.items():
            if path not in loaded:
                loaded[path] = self.predictor_class(path, reference, threads, rc_average)
            self.predictors[tissue] = loaded[path]
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["pos"])
        key = np.asarray(batch["shard"], np.int64) * (1 << 40) + np.asarray(batch["row"], np.int64) // self.batch_size
        _, group = np.unique(key, return_inverse=True)
        # rows of each sub-batch, in input order (one sort instead of a scan per sub-batch)
        order = np.argsort(group, kind="stable")
        bounds = np.cumsum(np.bincount(group)) if n else np.zeros(0, np.int64)
        out = {k: np.asarray(batch[k]) for k in ("shard", "pos", "in_cpg_island")}
        chrom, pos = np.asarray(batch["chrom"]), np.asarray(batch["pos"])
        cache: dict[int, np.ndarray] = {}
        for tissue, predictor in self.predictors.items():
            if id(predictor) not in cache:
                pred = np.empty(n, np.float32)
                for a, b in zip(np.r_[0, bounds[:-1]], bounds):
                    sel = order[a:b]
                    pred[sel] = predictor({"chrom": chrom[sel], "pos": pos[sel]})["beta_pred"]
                cache[id(predictor)] = pred
            out[f"pred.{tissue}"] = cache[id(predictor)]
        return pa.table(out)  # a block as it is (see load_shard_sites)


