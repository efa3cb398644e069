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
    """Train the configured model with each seed of ``train.seeds`` (Ray must be started);
    write each seed's ``train_history.tsv`` beside its checkpoint."""
    from .train import train

    for seed in cfg.train_seeds:
        res = train(cfg, seed)
        label = f" seed {seed}" if cfg.train.seeds > 1 else ""
        log.info(f"train{label}: {res.n_train:,} train / {res.n_val:,} val sites; best val MSE {res.best_val_loss:.4f}; "
                 f"checkpoint {res.checkpoint_dir} ({res.seconds:.0f} s)")


def run_score(cfg: RunConfig) -> None:
    """Score the held-out sites of every tissue with each seed's checkpoint (Ray must be started)."""
    from .predictions import bedgraph_path, predictions_path
    from .score import score

    t = time.perf_counter()
    model = read_meta(cfg.checkpoint_dir).model
    for seed in cfg.train_seeds[1:]:  # every seed's checkpoint before anything is written
        read_meta(cfg.checkpoint_of(seed))
    for seed in cfg.train_seeds:
        preds = score(cfg, seed=seed)
        for tissue, df in preds.items():
            where = bedgraph_path(cfg, tissue, model) if seed == cfg.train.seed else predictions_path(cfg, tissue, model, seed)
            log.info(f"score {tissue}" + (f" seed {seed}" if cfg.train.seeds > 1 else "") + f": {len(df):,} held-out CpGs -> {where}")
    log.info(f"score: {time.perf_counter() - t:.1f} s")


def run_evaluate(cfg: RunConfig) -> pd.DataFrame:
    """Fit both baselines and write the metric table (and its block-bootstrap intervals); returns it."""
    from .evaluate import check_predictions, evaluate, run_baseline

    check_predictions(cfg)  # every seed scored, before the baselines write theirs
    run_baseline(cfg)
    table = evaluate(cfg)
    log.info(f"evaluate: {cfg.path('metrics.tsv')}")
    return table


def read_intervals(cfg: RunConfig) -> pd.DataFrame:
    """The run's ``metric_intervals.tsv`` (written by :func:`run_evaluate`)."""
    from .tables import read_result

    return read_result(cfg.path("metric_intervals.tsv"))[1]


def summary(table: pd.DataFrame, intervals: pd.DataFrame | None = None) -> str:
    """Headline held-out metrics (subset ``all``), one line per model and tissue: the model
    and both baselines (``cpg_density``, ``composition_gbm``).

    A model trained with several seeds shows the mean over seeds (AUROC as ``mean ± sd``);
    with ``intervals`` (``metric_intervals``) the AUROC's 95% block-bootstrap interval follows.
    """
    rows = table[table["subset"] == "all"]
    seeds = rows.groupby(["model", "tissue"], sort=False)["seed"].count() if "seed" in rows else None
    per_model = rows.drop(columns=["subset", "seed"], errors="ignore").groupby(["model", "tissue"], sort=False)
    means, sds = per_model.mean(numeric_only=True), per_model.std(numeric_only=True)
    ci = intervals[intervals["metric"] == "auroc"].set_index(["model", "tissue"]) if intervals is not None else None
    head = "held-out metrics (subset all" + ("; AUROC: mean ± sd over training seeds [95% interval, hold-out-block bootstrap]" if ci is not None else "") + "):"
    lines = [head, f"  {'model':<17}{'tissue':<10}{'n':>8}{'seeds':>6}  {'AUROC':<29}{'AUPRC-u':>8}{'RMSE':>8}{'MAE':>8}{'r':>8}{'acc':>8}"]
    for (model, tissue), m in means.iterrows():
        n_seeds = int(seeds[(model, tissue)]) if seeds is not None else 1
        auroc = f"{m.auroc:.3f}" + (f" ± {sds.loc[(model, tissue), 'auroc']:.3f}" if n_seeds > 1 else "")
        if ci is not None and (model, tissue) in ci.index:
            auroc += f" [{ci.loc[(model, tissue), 'lo']:.3f}, {ci.loc[(model, tissue), 'hi']:.3f}]"
        lines.append(f"  {model:<17}{tissue:<10}{int(m.n):>8,}{n_seeds if n_seeds > 1 else '-':>6}  {auroc:<29}"
                     f"{m.auprc_unmeth:>8.3f}{m.rmse:>8.3f}{m.mae:>8.3f}{m.pearson_r:>8.3f}{m.accuracy:>8.3f}")
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
    log.info(summary(table, read_intervals(cfg)))
    log.info(f"outputs in {cfg.out_dir} ({time.perf_counter() - t:.0f} s)")
    return table
