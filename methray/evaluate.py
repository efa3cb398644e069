"""Stage 5, evaluate: the baselines and the metric table for a run.

Writes ``metrics.tsv`` and ``metrics.parquet`` (tidy: one row per model x tissue x subset x
training seed, columns :data:`methray.metrics.COLUMNS` and ``seed``) into the run directory.
The two baselines of :mod:`methray.baseline` (``cpg_density``, ``composition_gbm``) are fitted
on the same split and reported as their own model rows (one fit each, ``seed`` empty).
``metric_intervals.tsv`` / ``.parquet`` holds, per model and tissue, a 95% interval from a
bootstrap over hold-out blocks (:mod:`methray.bootstrap`): for the model, of the mean over its
seeds when ``train.seeds`` > 1 (AUROC, AUPRC of the unmethylated class, RMSE, MAE, r), else
of its one run (AUROC, AUPRC, RMSE), as for each baseline.
"""

from __future__ import annotations

import pandas as pd

from . import baseline, bootstrap, storage
from .checkpoint import read_meta
from .config import RunConfig
from .errors import MethrayError
from .metrics import metric_rows
from .sites import read_sites
from .predictions import predictions_path, read_predictions, write_predictions
from .tables import write_table


def run_baseline(cfg: RunConfig, split: str = "test") -> None:
    """Fit both baselines per tissue (training split; ``composition_gbm`` tuned on
    validation) and write their predictions like a model's."""
    spec = read_meta(cfg.checkpoint_dir).window
    for t in cfg.tissues:
        train = read_sites(cfg.sites_table, tissue=t.name, split="train")
        val = read_sites(cfg.sites_table, tissue=t.name, split="val")
        test = read_sites(cfg.sites_table, tissue=t.name, split=split)
        write_predictions(cfg, test.assign(beta_pred=baseline.fit_predict(train, test, cfg.reference, spec)), t.name, baseline.NAME)
        gbm = baseline.fit_predict_gbm(train, val, test, cfg.reference, cfg.cpg_islands, seed=cfg.split.seed)
        write_predictions(cfg, test.assign(beta_pred=gbm), t.name, baseline.GBM_NAME)


def check_predictions(cfg: RunConfig) -> None:
    """Check that the run's model was scored with every training seed, for every tissue.

    Raises
    ------
    MethrayError
        A seed's predictions are missing (e.g. ``train.seeds`` raised after ``score`` ran).
    """
    model = read_meta(cfg.checkpoint_dir).model
    for seed in cfg.train_seeds:
        for t in cfg.tissues:
            path = predictions_path(cfg, t.name, model, seed)
            if not storage.exists(path):
                raise MethrayError(f"{path}: no predictions of seed {seed} (train.seeds {cfg.train.seeds}); run `methray train` and `methray score` with these seeds first")


def evaluate(cfg: RunConfig) -> pd.DataFrame:
    """Compute the metric table for the run's model (every training seed) and the baselines, for every tissue.

    Also writes the block-bootstrap intervals (``metric_intervals.tsv`` / ``.parquet``:
    ``model, tissue, metric, estimate, lo, hi, n_blocks, n`` and, for several seeds, ``seeds``).

    Returns
    -------
    pd.DataFrame
        The tidy metric table, columns :data:`methray.metrics.COLUMNS` and ``seed`` (also
        written as ``metrics.tsv`` and ``metrics.parquet``).

    Raises
    ------
    MethrayError
        A seed's or a baseline's predictions are missing (``score`` / ``evaluate`` not run).
    """
    model = read_meta(cfg.checkpoint_dir).model
    regions = bootstrap.read_split_regions(cfg.path("split_regions.tsv"))
    frames, intervals = [], []
    for t in cfg.tissues:
        preds = [read_predictions(cfg, t.name, model, seed) for seed in cfg.train_seeds]
        frames += [metric_rows(p, model, t.name).assign(seed=seed) for seed, p in zip(cfg.train_seeds, preds)]
        if len(preds) > 1:
            intervals.append(bootstrap.seed_interval_rows(preds, regions, model, t.name))
        else:
            intervals.append(bootstrap.interval_rows(preds[0], regions, model, t.name))
        for name in baseline.NAMES:
            pred = read_predictions(cfg, t.name, name)
            frames.append(metric_rows(pred, name, t.name).assign(seed=None))
            intervals.append(bootstrap.interval_rows(pred, regions, name, t.name))
    table = pd.concat(frames, ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    write_table(table, cfg.path("metrics"))
    header = [bootstrap.describe() + (f"; {model}: of the mean over seeds {', '.join(map(str, cfg.train_seeds))}" if len(preds) > 1 else "")]
    write_table(pd.concat(intervals, ignore_index=True), cfg.path("metric_intervals"), header)
    return table
