"""Label tables as Ray Datasets, capped subsets, and batch inference over windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import ray

from .. import checkpoint as ckpt
from ..errors import MethrayError
from ..predictor import IntervalPredictor
from ..windows import encode_intervals
from .config import RegulatoryConfig
from .labels import read_labels
from .split import read_split


def load_split_labels(cfg: RegulatoryConfig, stride: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The label table at ``stride`` with its ``split`` / ``inside`` columns, classes filtered.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end``, ``split``, ``inside``.
    y : np.ndarray
        ``(n, K) uint8`` labels of the kept classes.
    classes : list[str]

    Raises
    ------
    MethrayError
        No label table / split at this stride (run the ``labels`` step), or a class in
        ``labels.classes`` that the table lacks.
    """
    out = cfg.labels_dir(stride)
    windows, y, classes = read_labels(out)
    split = read_split(out)
    windows = windows.assign(split=split["split"].to_numpy(), inside=split["inside"].to_numpy())
    if cfg.labels.classes is not None:
        missing = [c for c in cfg.labels.classes if c not in classes]
        if missing:
            raise MethrayError(f"labels.classes: {missing} not in the label table (has {classes})")
        idx = [classes.index(c) for c in cfg.labels.classes]
        y, classes = y[:, idx], list(cfg.labels.classes)
    return windows, y, classes


def interval_dataset(windows: pd.DataFrame, y: np.ndarray | None, reference: str, *, n_blocks: int = 8, encode: bool = True) -> ray.data.Dataset:
    """Windows (and labels) as a Ray Dataset, optionally one-hot encoded.

    Parameters
    ----------
    windows
        ``chrom``, ``start``, ``end`` (0-based half-open, all of one length).
    y
        ``(n, K)`` 0/1 labels or None.
    encode
        Add ``x`` ``(L, 4) uint8`` (and ``y`` ``(K,) float32``) with
        :func:`methray.windows.encode_intervals`; without it the dataset carries coordinates
        (and ``labels``) only, for :class:`IntervalPredictor` to encode.
    """
    from ray.data.extensions import ArrowTensorArray

    cols = {
        "chrom": pa.array(windows["chrom"].astype(str).to_numpy(), pa.string()),
        "start": pa.array(windows["start"].to_numpy(np.int64)),
        "end": pa.array(windows["end"].to_numpy(np.int64)),
    }
    if y is not None:
        cols["labels"] = ArrowTensorArray.from_numpy(np.ascontiguousarray(y, dtype=np.uint8))
    table = pa.table(cols)
    n = len(table)
    k = max(1, min(n_blocks, n))
    bounds = np.linspace(0, n, k + 1).astype(int)
    ds = ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])
    if encode:
        ds = ds.map_batches(encode_intervals, fn_kwargs={"reference": reference}, batch_size=512, batch_format="numpy")
    return ds


def predict_windows(cfg: RegulatoryConfig, checkpoint_dir: str, windows: pd.DataFrame, y: np.ndarray | None, *, rc_average: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Score windows with Ray Data batch inference.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end``, in the input order.
    prob : np.ndarray
        ``(n, K) float32``.
    y : np.ndarray or None
        ``(n, K) float32`` labels in the same order.
    """
    ckpt.read_meta(checkpoint_dir)  # fail in the driver, not in retried actor constructors
    ds = interval_dataset(windows.reset_index(drop=True), y, cfg.reference, n_blocks=4 * cfg.score.actors, encode=False)
    ds = ds.map_batches(
        IntervalPredictor,
        fn_constructor_kwargs={"checkpoint_dir": checkpoint_dir, "reference": cfg.reference, "rc_average": rc_average,
                               "threads": max(1, int(cfg.score.cpus_per_actor))},
        compute=ray.data.ActorPoolStrategy(size=cfg.score.actors),
        batch_size=cfg.score.batch_size, num_cpus=cfg.score.cpus_per_actor, num_gpus=cfg.score.gpus_per_actor,
        batch_format="numpy",
    )
    rows = [b for b in ds.iter_batches(batch_size=None, batch_format="numpy")]
    if not rows:
        raise MethrayError("no windows to score")
    cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    out = pd.DataFrame({"chrom": cat["chrom"].astype(str), "start": cat["start"], "end": cat["end"]})
    order = np.lexsort((out["start"].to_numpy(), out["chrom"].to_numpy()))  # blocks may come back out of order
    out = out.iloc[order].reset_index(drop=True)
    prob = cat["prob"][order]
    labels = cat["y"][order] if "y" in cat else None
    return out, prob, labels


