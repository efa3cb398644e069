"""Stage 2, windows: encoded sequence windows, from a Ray Data pipeline or from window rows.

Two ways to get windows, one encoder:

- **Ray Data** (scoring, the bench): a pipeline from the measured-sites table, see below.
- **Window rows** (training): :class:`WindowRows` holds only where each window is and its
  target (contig index, position, ``y``: 16 bytes a row for methylation); :func:`encode_rows`
  encodes any batch of them from the memory-mapped genome (:mod:`methray.genome`) inside the
  training worker, so no encoded window is ever stored.

``read_parquet`` (one block per file, so several files give parallelism) ->
``map_batches(encode_batch)``: each batch of CpGs is grouped by chromosome, the windows are
gathered from the cached contig in one numpy indexing step and one-hot encoded.

Each Ray worker process opens the reference once (:func:`methray.genome.open_reference`)
and reads each contig once; no per-window FASTA access.

Batches carry:

- ``x``: ``(B, L, 4) uint8`` one-hot windows (A, C, G, T; N = zeros). Kept as uint8 in the
  object store (4x smaller than float32); the consumer converts to ``float32``;
- ``y``: ``(B,) float32`` measured beta;
- ``chrom``, ``pos``, ``in_cpg_island``, ``tissue`` passed through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import ray

from .encoding import WindowSpec, one_hot
from .genome import open_reference
from .sites import sites_dataset

PASS_THROUGH = ("chrom", "pos", "in_cpg_island", "tissue")


def encode_batch(batch: dict[str, np.ndarray], reference: str, length: int, exclude_cpg: bool) -> dict[str, np.ndarray]:
    """Encode the windows of a batch of CpGs (a Ray Data ``map_batches`` function).

    Parameters
    ----------
    batch
        Columns ``chrom`` ``(B,)`` str and ``pos`` ``(B,)`` int64 (0-based C), optionally
        ``beta`` and the pass-through columns.
    reference
        FASTA path (local or ``s3://``).
    length, exclude_cpg
        The :class:`~methray.encoding.WindowSpec`.

    Returns
    -------
    dict
        ``x`` ``(B, length, 4) uint8``, ``y`` ``(B,) float32`` (NaN when no ``beta``),
        and the pass-through columns, in input order.
    """
    spec = WindowSpec(length, exclude_cpg)
    out = {k: np.asarray(batch[k]) for k in PASS_THROUGH if k in batch}
    out["x"] = one_hot(_gather(reference, batch["chrom"], batch["pos"], spec))
    beta = batch.get("beta")
    out["y"] = np.asarray(beta, dtype=np.float32) if beta is not None else np.full(len(out["x"]), np.nan, np.float32)
    return out


def _gather(reference: str, chroms, positions, spec: WindowSpec) -> np.ndarray:
    """Window codes ``(B, spec.length) uint8`` around ``positions``, one gather per contig."""
    ref = open_reference(reference)
    pos = np.asarray(positions, dtype=np.int64)
    # Hash-based grouping (no string sort); a batch usually holds one chromosome.
    group, names = pd.factorize(np.asarray(chroms))
    if len(names) == 1:
        return ref.windows(str(names[0]), pos, spec)
    codes = np.empty((len(pos), spec.length), dtype=np.uint8)
    for i, chrom in enumerate(names):
        sel = group == i
        codes[sel] = ref.windows(str(chrom), pos[sel], spec)
    return codes


@dataclass
class WindowRows:
    """Rows to train on: where each window is and what it should predict.

    Parameters
    ----------
    contig
        ``(N,) int32`` index into ``contigs``.
    pos
        ``(N,) int64`` window anchor, 0-based: the CpG's C (the window around it is given by a
        :class:`~methray.encoding.WindowSpec`), or ``start + L // 2`` for an interval
        ``[start, start + L)`` with ``WindowSpec(L)``.
    y
        ``(N,) float32`` targets (beta) or ``(N, K) float32`` labels.
    contigs
        Contig names.
    """

    contig: np.ndarray
    pos: np.ndarray
    y: np.ndarray
    contigs: list[str]

    def __post_init__(self):
        self.contig = np.ascontiguousarray(self.contig, dtype=np.int32)
        self.pos = np.ascontiguousarray(self.pos, dtype=np.int64)
        self.y = np.ascontiguousarray(self.y, dtype=np.float32)
        self.contigs = [str(c) for c in self.contigs]
        if not (len(self.contig) == len(self.pos) == len(self.y)):
            raise ValueError(f"WindowRows: columns of different lengths ({len(self.contig)}, {len(self.pos)}, {len(self.y)})")

    def __len__(self) -> int:
        return len(self.pos)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, y: np.ndarray | None = None, pos_column: str = "pos", y_column: str = "beta") -> "WindowRows":
        """Window rows from a table with ``chrom``, ``pos`` (or ``pos_column``) and ``beta`` (or ``y``)."""
        codes, names = pd.factorize(df["chrom"].astype(str), sort=False)
        return cls(codes, df[pos_column].to_numpy(np.int64), df[y_column].to_numpy(np.float32) if y is None else y, list(names))

    def take(self, index: np.ndarray) -> "WindowRows":
        """The rows at ``index`` (a copy)."""
        return WindowRows(self.contig[index], self.pos[index], self.y[index], self.contigs)

    @property
    def nbytes(self) -> int:
        return self.contig.nbytes + self.pos.nbytes + self.y.nbytes


def encode_rows(rows: WindowRows, index: np.ndarray, reference: str, spec: WindowSpec) -> np.ndarray:
    """One-hot windows of ``rows`` at ``index``, ``(B, spec.length, 4) uint8``, in ``index`` order.

    Each contig present in the batch is gathered in one numpy step from the reference's
    memory-mapped codes (:meth:`methray.genome.Reference.windows`).
    """
    ref = open_reference(reference)
    contig, pos = rows.contig[index], rows.pos[index]
    codes = np.empty((len(index), spec.length), dtype=np.uint8)
    for c in np.unique(contig):
        sel = contig == c
        codes[sel] = ref.windows(rows.contigs[c], pos[sel], spec)
    return one_hot(codes)


def encode_intervals(batch: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    """Encode fixed-length genomic intervals (regulatory windows; a ``map_batches`` function).

    Parameters
    ----------
    batch
        ``chrom`` ``(B,)`` str, ``start`` and ``end`` ``(B,) int64`` (0-based half-open; every
        interval of the batch has the same length ``L = end - start``); optionally ``labels``
        ``(B, K)`` 0/1. Other columns pass through.
    reference
        FASTA path (local or ``s3://``).

    Returns
    -------
    dict
        The input columns (``labels`` renamed ``y``, as ``float32``) plus ``x``
        ``(B, L, 4) uint8``: the one-hot bases of ``[start, end)``, N (and bases past a contig
        end) as zero rows.

    Raises
    ------
    ValueError
        If the intervals of the batch differ in length.
    """
    start = np.asarray(batch["start"], dtype=np.int64)
    lengths = np.unique(np.asarray(batch["end"], dtype=np.int64) - start)
    if len(lengths) > 1:
        raise ValueError(f"encode_intervals: intervals of different lengths in one batch: {lengths[:5].tolist()}")
    out = {k: np.asarray(v) for k, v in batch.items() if k != "labels"}
    if not len(start):
        out["x"] = np.zeros((0, 0, 4), np.uint8)
        return out
    length = int(lengths[0])
    # A centred WindowSpec around start + L // 2 covers exactly [start, start + L).
    out["x"] = one_hot(_gather(reference, batch["chrom"], start + length // 2, WindowSpec(length)))
    if "labels" in batch:
        out["y"] = np.asarray(batch["labels"], dtype=np.float32)
    return out


def window_dataset(
    table: str,
    reference: str,
    spec: WindowSpec,
    *,
    tissue: str | None = None,
    split: str | list[str] | None = None,
    batch_size: int = 4096,
) -> ray.data.Dataset:
    """The measured-sites table as a Ray Dataset of encoded windows (see the module docstring)."""
    return encode_dataset(sites_dataset(table, tissue=tissue, split=split), reference, spec, batch_size=batch_size)


def encode_dataset(ds: ray.data.Dataset, reference: str, spec: WindowSpec, *, batch_size: int = 4096) -> ray.data.Dataset:
    """Encode the windows of a dataset of CpGs (columns ``chrom``, ``pos``, optionally ``beta``).

    The rows may come from the CpG table or from ``ray.data.from_pandas`` of a subset of it
    (as :mod:`methray.compare` does); see :func:`encode_batch` for the output columns.
    """
    return ds.map_batches(
        encode_batch,
        fn_kwargs={"reference": reference, "length": spec.length, "exclude_cpg": spec.exclude_cpg},
        batch_size=batch_size,
        batch_format="numpy",
    )
