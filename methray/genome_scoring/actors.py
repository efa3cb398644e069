"""The Ray Data pieces of a genome-wide job: a task that reads each shard's CpGs, and an actor
that scores them with every model of the tissue set."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ..cpgs import read_cpgs
from ..predictor import Predictor


@functools.lru_cache(maxsize=1)
def _contig_sites(table: str, chrom: str) -> pd.DataFrame:
    # Consecutive shards of one contig usually land in the same worker: read the contig once.
    return read_cpgs(table, chrom, ["pos", "in_cpg_island", "excluded"])


def load_shard_sites(batch: dict[str, np.ndarray], table: str) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: shard rows -> the shards' scorable CpGs.

    Parameters
    ----------
    batch
        Shard rows: ``chrom`` (str), ``start``, ``end`` (0-based half-open), ``shard`` (plan index).
    table
        The CpG table (:mod:`methray.cpgs`).

    Returns
    -------
    dict
        ``chrom`` (str), ``pos`` (int64, 0-based C), ``in_cpg_island`` (bool), ``shard``
        (int64), ``row`` (int64, rank within the shard); excluded sites left out.
    """
    parts = []
    for chrom, start, end, shard in zip(batch["chrom"], batch["start"], batch["end"], batch["shard"]):
        df = _contig_sites(table, str(chrom))
        pos = df["pos"].to_numpy(np.int64)
        lo, hi = np.searchsorted(pos, [int(start), int(end)])
        sub = df.iloc[lo:hi]
        sub = sub[~sub["excluded"].to_numpy(bool)]
        parts.append(
            pd.DataFrame(
                {
                    "chrom": str(chrom),
                    "pos": sub["pos"].to_numpy(np.int64),
                    "in_cpg_island": sub["in_cpg_island"].to_numpy(bool),
                    "shard": np.int64(shard),
                    "row": np.arange(len(sub), dtype=np.int64),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    return {k: df[k].to_numpy() for k in df.columns}


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

    ``__call__`` takes ``chrom, pos, in_cpg_island, shard, row`` ``(B,)`` and returns
    ``shard, pos, in_cpg_island`` and ``pred.<tissue>`` ``(B,) float32`` per tissue.
    """

    def __init__(self, checkpoints: dict[str, str], reference: str, batch_size: int, threads: int = 1, rc_average: bool = True):
        loaded: dict[str, Predictor] = {}
        self.predictors = {}
        for tissue, path in checkpoints.items():
            if path not in loaded:
                loaded[path] = Predictor(path, reference, threads, rc_average)
            self.predictors[tissue] = loaded[path]
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["pos"])
        key = np.asarray(batch["shard"], np.int64) * (1 << 40) + np.asarray(batch["row"], np.int64) // self.batch_size
        _, group = np.unique(key, return_inverse=True)
        out = {k: np.asarray(batch[k]) for k in ("shard", "pos", "in_cpg_island")}
        cache: dict[int, np.ndarray] = {}
        for tissue, predictor in self.predictors.items():
            if id(predictor) not in cache:
                pred = np.empty(n, np.float32)
                for g in range(group.max() + 1 if n else 0):
                    sel = np.flatnonzero(group == g)
                    pred[sel] = predictor({"chrom": batch["chrom"][sel], "pos": batch["pos"][sel]})["beta_pred"]
                cache[id(predictor)] = pred
            out[f"pred.{tissue}"] = cache[id(predictor)]
        return out


