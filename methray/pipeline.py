"""The stages of one run, chained: prepare -> train -> score -> evaluate.

Each ``run_<stage>`` runs one stage of a started run (:func:`methray.run.start_run`) and
reports what it did through the ``methray`` logger. The CLI and the ``jobs/`` entrypoints
call these functions, so ``methray pipeline`` and ``ray job submit ... -- python
jobs/pipeline.py`` run the same code.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from .checkpoint import read_meta
from .config import RunConfig
from .run import start_ray, start_run

log = logging.getLogger(__name__)


def run_prepare(cfg: RunConfig, check_regions=None) -> None:
    """Prepare the measured-sites table; log each tissue's counts (``check_regions``: see
    :func:`methray.prepare.prepare`)."""
    from .prepare import prepare

    t = time.perf_counter()
    reports = prepare(cfg, check_regions=check_regions)
    for r in reports:
        log.info(
            f"prepare {r.tissue}: {r.reading_summary()}; "
            f"{r.cpgs:,} CpGs ({r.cpgs_both_strands:,} with both strands merged); dropped {r.low_coverage_dropped:,} "
            f"with coverage < {cfg.prepare.min_coverage}; coverage unknown {r.coverage_unknown:,}; kept {r.kept:,} "
            f"({r.in_cpg_island:,} in CpG islands); split {', '.join(f'{k} {v:,}' for k, v in r.split.items())}"
        )
    log.info(f"prepare: CpG table {cfg.sites_table} ({time.perf_counter() - t:.1f} s)")


def run_train(cfg: RunConfig) -> None:
    """Train the configured model (Ray must be started); write ``train_history.tsv``."""
    from .train import train

    res = train(cfg)
    log.info(f"train: {res.n_train:,} train / {res.n_val:,} val sites; best val MSE {res.best_val_loss:.4f}; checkpoint {res.checkpoint_dir} ({res.seconds:.0f} s)")


def run_score(cfg: RunConfig) -> None:
    """Score the held-out sites of every tissue (Ray must be started)."""
    from .predictions import bedgraph_path
    from .score import score

    t = time.perf_counter()
    preds = score(cfg)
    model = read_meta(cfg.checkpoint_dir).model
    for tissue, df in preds.items():
        log.info(f"score {tissue}: {len(df):,} held-out CpGs -> {bedgraph_path(cfg, tissue, model)}")
    log.info(f"score: {time.perf_counter() - t:.1f} s")


def run_evaluate(cfg: RunConfig) -> pd.DataFrame:
    """Fit both baselines and write the metric table (and its block-bootstrap intervals); returns it."""
    from .evaluate import evaluate, run_baseline

    run_baseline(cfg)
    table = evaluate(cfg)
    log.info(f"evaluate: {cfg.path('metrics.tsv')}")
    return table


def summary(table: pd.DataFrame) -> str:
    """Headline held-out metrics (subset ``all``), one line per model and tissue: the model
    and both baselines (``cpg_density``, ``composition_gbm``)."""
    rows = table[table["subset"] == "all"]
    lines = ["held-out metrics (subset all):", f"  {'model':<17}{'tissue':<10}{'n':>8}{'AUROC':>8}{'AUPRC-u':>8}{'RMSE':>8}{'MAE':>8}{'r':>8}{'acc':>8}"]
    for r in rows.itertuples():
        lines.append(f"  {r.model:<17}{r.tissue:<10}{r.n:>8,}{r.auroc:>8.3f}{r.auprc_unmeth:>8.3f}{r.rmse:>8.3f}{r.mae:>8.3f}{r.pearson_r:>8.3f}{r.accuracy:>8.3f}")
    return "\n".join(lines)


def run_pipeline(cfg: RunConfig) -> pd.DataFrame:
    """All stages; logs a summary and returns the metric table."""
    t = time.perf_counter()
    start_run(cfg, with_ray=False)
    run_prepare(cfg)
    start_ray(cfg)
    run_train(cfg)
    run_score(cfg)
    table = run_evaluate(cfg)
    log.info(summary(table))
    log.info(f"outputs in {cfg.out_dir} ({time.perf_counter() - t:.0f} s)")
    return table
