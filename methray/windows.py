"""Stage 2, windows: a Ray Data pipeline from the CpG table to encoded window batches.

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

import numpy as np
import pandas as pd
import ray

from .encoding import WindowSpec, one_hot
from .genome import open_reference

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
    ref = open_reference(reference)
    spec = WindowSpec(length, exclude_cpg)
    pos = np.asarray(batch["pos"], dtype=np.int64)
    # Hash-based grouping (no string sort); a batch usually holds one chromosome.
    group, chroms = pd.factorize(np.asarray(batch["chrom"]))
    if len(chroms) == 1:
        codes = ref.windows(str(chroms[0]), pos, spec)
    else:
        codes = np.empty((len(pos), length), dtype=np.uint8)
        for i, chrom in enumerate(chroms):
            sel = group == i
            codes[sel] = ref.windows(str(chrom), pos[sel], spec)
    out = {k: np.asarray(batch[k]) for k in PASS_THROUGH if k in batch}
    out["x"] = one_hot(codes)
    beta = batch.get("beta")
    out["y"] = np.asarray(beta, dtype=np.float32) if beta is not None else np.full(len(pos), np.nan, np.float32)
    return out


def cpg_dataset(table: str, *, tissue: str | None = None, split: str | list[str] | None = None) -> ray.data.Dataset:
    """Read (a filtered part of) the CpG table with Ray Data.

    Parameters
    ----------
    table
        The ``cpg_table`` directory (local or ``s3://``).
    tissue, split
        Row filters, pushed down into the Parquet reader.
    """
    from . import storage
    from ray.data.expressions import col

    kwargs = {}
    if storage.is_remote(table):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, table = storage.filesystem(table)
        kwargs["filesystem"] = PyFileSystem(FSSpecHandler(fs))
    ds = ray.data.read_parquet(table, partitioning=ray.data.datasource.partitioning.Partitioning("hive"), **kwargs)
    pred = None
    if tissue is not None:
        pred = col("tissue") == tissue
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        cond = col("split").is_in(splits)
        pred = cond if pred is None else pred & cond
    return ds.filter(expr=pred) if pred is not None else ds


def window_dataset(
    table: str,
    reference: str,
    spec: WindowSpec,
    *,
    tissue: str | None = None,
    split: str | list[str] | None = None,
    batch_size: int = 4096,
) -> ray.data.Dataset:
    """The CpG table as a Ray Dataset of encoded windows (see the module docstring)."""
    ds = cpg_dataset(table, tissue=tissue, split=split)
    return ds.map_batches(
        encode_batch,
        fn_kwargs={"reference": reference, "length": spec.length, "exclude_cpg": spec.exclude_cpg},
        batch_size=batch_size,
        batch_format="numpy",
    )
