"""AUROC / AUPRC of a regulatory model on the held-out and inside-training blocks, and the
overfitting table (DeepGMAP Table 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import checkpoint as ckpt
from .. import storage
from ..errors import MethrayError
from ..metrics_multilabel import MEAN_ROW, multilabel_metrics
from .config import RegulatoryConfig
from ..budget import cap_rows
from .data import load_split_labels, predict_windows

REGIONS = ("inside", "held_out")
METRIC_COLUMNS = ["model", "stride", "region", "class", "n", "n_pos", "auroc", "auprc", "n_classes"]
OVERFIT_COLUMNS = ["stride", "model", "region", "mean_auroc", "mean_auprc", "n_windows", "n_train"]


def evaluate_model(cfg: RegulatoryConfig, model: str, stride: int) -> pd.DataFrame:
    """Per-class and mean AUROC / AUPRC of a trained model on the held-out and inside blocks.

    Returns
    -------
    pd.DataFrame
        Columns :data:`METRIC_COLUMNS` (region ``held_out`` = the test block, ``inside`` = the
        inside-training block), one row per class plus a ``mean`` row per region.
    """
    windows, y, classes = load_split_labels(cfg, stride)
    ck = storage.join(cfg.model_dir(model, stride), "checkpoint")
    if ckpt.read_meta(ck).classes != classes:
        raise MethrayError(f"{ck}: trained on other classes than {classes}; retrain")
    masks = {"inside": windows["inside"].to_numpy(), "held_out": windows["split"].to_numpy() == "test"}
    rows = {r: cap_rows(np.flatnonzero(masks[r]), cfg.budget.max_eval, cfg.train.seed) for r in REGIONS}
    both = np.concatenate([rows[r] for r in REGIONS])  # one inference pass (actor start-up is costly)
    scored, prob, yy = predict_windows(cfg, ck, windows.iloc[both], y[both], rc_average=cfg.evaluate.rc_average)
    key = pd.MultiIndex.from_frame(scored[["chrom", "start"]])
    frames = []
    for region in REGIONS:
        sel = key.get_indexer(pd.MultiIndex.from_frame(windows.iloc[rows[region]][["chrom", "start"]]))
        m = multilabel_metrics(yy[sel].astype(np.uint8), prob[sel], classes)
        frames.append(m.assign(model=model, stride=stride, region=region))
    return pd.concat(frames, ignore_index=True)[METRIC_COLUMNS]


def overfit_table(metrics: pd.DataFrame, n_train: dict[tuple[str, int], int]) -> pd.DataFrame:
    """DeepGMAP Table 2 layout: one row per (stride, model, region) with the mean metrics.

    Parameters
    ----------
    metrics
        Rows of :func:`evaluate_model` (several models / strides).
    n_train
        ``(model, stride)`` -> training windows used.
    """
    mean = metrics[metrics["class"] == MEAN_ROW]
    out = pd.DataFrame({
        "stride": mean["stride"].to_numpy(), "model": mean["model"].to_numpy(), "region": mean["region"].to_numpy(),
        "mean_auroc": mean["auroc"].to_numpy(), "mean_auprc": mean["auprc"].to_numpy(), "n_windows": mean["n"].to_numpy(),
    })
    out["n_train"] = [n_train.get((m, int(s)), -1) for m, s in zip(out["model"], out["stride"])]
    out["region"] = pd.Categorical(out["region"], REGIONS)
    return out.sort_values(["stride", "model", "region"]).reset_index(drop=True).astype({"region": str})[OVERFIT_COLUMNS]


def metrics_summary(table: pd.DataFrame) -> str:
    """Per-class and mean AUROC / AUPRC, one line per (model, region, class)."""
    lines = [f"  {'model':<12}{'stride':>7} {'region':<9}{'class':<10}{'n':>7}{'n_pos':>7}{'AUROC':>8}{'AUPRC':>8}"]
    for r in table.itertuples():
        lines.append(f"  {r.model:<12}{r.stride:>7} {r.region:<9}{r._4:<10}{r.n:>7,}{r.n_pos:>7,}{r.auroc:>8.3f}{r.auprc:>8.3f}")
    return "regulatory metrics (AUPRC primary):\n" + "\n".join(lines)
