"""Training a regulatory model (multi-label BCE) with :func:`methray.train.fit`."""

from __future__ import annotations

import numpy as np

from .. import checkpoint as ckpt
from .. import models, storage
from ..train import fit
from .config import RegulatoryConfig, budget_line
from ..budget import cap_rows
from ..windows import WindowRows
from .data import load_split_labels


def train_model(cfg: RegulatoryConfig, model: str, stride: int, *, progress: bool = True) -> dict:
    """Train ``model`` on the training windows at ``stride`` (multilabel BCE); returns a summary.

    The training set is the ``train`` split capped at the budget's cap for ``model``
    (``budget.max_train_per_model``, else ``budget.max_train``; the inside-training block is
    always part of it); validation the ``valid`` split capped at ``budget.max_val``; at most
    ``budget.epochs`` epochs.
    """
    windows, y, classes = load_split_labels(cfg, stride)
    length = cfg.labels.length
    tr = cap_rows(np.flatnonzero(windows["split"].to_numpy() == "train"), cfg.budget.train_cap(model), cfg.train.seed,
                  keep=np.flatnonzero(windows["inside"].to_numpy()))
    va = cap_rows(np.flatnonzero(windows["split"].to_numpy() == "valid"), cfg.budget.max_val, cfg.train.seed)
    params = cfg.model_params.get(model, {})
    models.build(model, window_length=length, n_outputs=len(classes), **params)  # fail early on a bad combination
    meta = ckpt.CheckpointMeta(
        model=model, task="multilabel", window_length=length, exclude_cpg=False, n_outputs=len(classes),
        params=params, classes=classes, stride=stride, genome=cfg.genome, run_name=cfg.run_name,
        n_train_windows=int(len(tr)), budget=budget_line(cfg),
    )
    # Windows are encoded in the training workers: an interval [start, start + L) is the
    # centred WindowSpec(L) around start + L // 2.
    res = fit(
        WindowRows.from_frame(windows.iloc[tr].assign(centre=lambda d: d["start"] + length // 2), y=y[tr], pos_column="centre"),
        WindowRows.from_frame(windows.iloc[va].assign(centre=lambda d: d["start"] + length // 2), y=y[va], pos_column="centre"),
        reference=cfg.reference, meta=meta, train_cfg=train_settings(cfg), name=f"{cfg.run_name}-{model}-s{stride}",
        storage_path=cfg.path("ray_train"), checkpoint_dir=storage.join(cfg.model_dir(model, stride), "checkpoint"),
        progress=progress,
    )
    return {"model": model, "stride": stride, "n_train": res.n_train, "n_val": res.n_val,
            "best_val_loss": res.best_val_loss, "seconds": res.seconds}


def train_settings(cfg: RegulatoryConfig):
    """The ``train`` section with the budget's epoch cap applied."""
    if cfg.budget.epochs and cfg.budget.epochs < cfg.train.epochs:
        return cfg.train.model_copy(update={"epochs": cfg.budget.epochs})
    return cfg.train
