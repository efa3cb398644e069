"""The stages of one run, chained: prepare -> train -> score -> evaluate.

The CLI and the ``jobs/`` entrypoints call these functions, so ``methray pipeline`` and
``ray job submit ... -- python jobs/pipeline.py`` run the same code.
"""

from __future__ import annotations

import json
import logging
import time

import pandas as pd

from . import storage
from .config import RunConfig, save_config
from .runtime import init_ray

log = logging.getLogger("methray")


def _say(msg: str) -> None:
    print(msg, flush=True)


def start(cfg: RunConfig, *, with_ray: bool = True) -> None:
    """Create the run directory, record the resolved config and (optionally) connect to Ray.

    ``prepare`` and ``evaluate`` are plain pandas / scikit-learn and need no Ray.
    """
    storage.configure_s3(cfg.s3.endpoint_url, cfg.s3.region)
    storage.makedirs(cfg.out_dir)
    save_config(cfg, cfg.path("config.yaml"))
    where = ""
    if with_ray:
        import ray

        mode = init_ray(cfg)
        res = ray.cluster_resources()
        where = f" (Ray {mode}: {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU)"
    _say(f"methray: run {cfg.run_name!r} -> {cfg.out_dir}{where}")


def run_prepare(cfg: RunConfig) -> None:
    from .prepare import prepare

    t = time.perf_counter()
    reports = prepare(cfg)
    for r in reports:
        _say(
            f"prepare {r.tissue}: read {r.rows_read:,} rows; dropped {r.non_cpg_dropped:,} not CpG in reference; "
            f"{r.cpgs:,} CpGs ({r.cpgs_both_strands:,} with both strands merged); dropped {r.low_coverage_dropped:,} "
            f"with coverage < {cfg.prepare.min_coverage}; coverage unknown {r.coverage_unknown:,}; kept {r.kept:,} "
            f"({r.in_cpg_island:,} in CpG islands); split {', '.join(f'{k} {v:,}' for k, v in r.split.items())}"
        )
    _say(f"prepare: CpG table {cfg.cpg_table} ({time.perf_counter() - t:.1f} s)")


def run_train(cfg: RunConfig) -> None:
    from .train import train

    res = train(cfg)
    with storage.atomic_write(cfg.path("train_history.tsv")) as fh:
        pd.DataFrame(res.history).to_csv(fh, sep="\t", index=False)
    _say(f"train: {res.n_train:,} train / {res.n_val:,} val sites; best val MSE {res.best_val_loss:.4f}; checkpoint {res.checkpoint_dir} ({res.seconds:.0f} s)")


def run_score(cfg: RunConfig) -> None:
    from .score import bedgraph_path, score

    t = time.perf_counter()
    preds = score(cfg)
    for tissue, df in preds.items():
        model = json.loads(_read(cfg.path("checkpoint", "meta.json")))["model"]
        _say(f"score {tissue}: {len(df):,} held-out CpGs -> {bedgraph_path(cfg, tissue, model)}")
    _say(f"score: {time.perf_counter() - t:.1f} s")


def run_evaluate(cfg: RunConfig) -> pd.DataFrame:
    from .evaluate import evaluate, run_baseline

    run_baseline(cfg)
    table = evaluate(cfg)
    _say(f"evaluate: {cfg.path('metrics.tsv')}")
    return table


def summary(table: pd.DataFrame) -> str:
    """Headline held-out metrics (subset ``all``), one line per model and tissue."""
    rows = table[table["subset"] == "all"]
    lines = ["held-out metrics (subset all):", f"  {'model':<14}{'tissue':<10}{'n':>8}{'AUROC':>8}{'RMSE':>8}{'MAE':>8}{'r':>8}{'acc':>8}"]
    for r in rows.itertuples():
        lines.append(f"  {r.model:<14}{r.tissue:<10}{r.n:>8,}{r.auroc:>8.3f}{r.rmse:>8.3f}{r.mae:>8.3f}{r.pearson_r:>8.3f}{r.accuracy:>8.3f}")
    return "\n".join(lines)


def run_pipeline(cfg: RunConfig) -> pd.DataFrame:
    """All stages; prints a summary and returns the metric table."""
    t = time.perf_counter()
    start(cfg, with_ray=False)
    run_prepare(cfg)
    init_ray(cfg)
    run_train(cfg)
    run_score(cfg)
    table = run_evaluate(cfg)
    _say(summary(table))
    _say(f"outputs in {cfg.out_dir} ({time.perf_counter() - t:.0f} s)")
    return table


def _read(path: str) -> str:
    fs, p = storage.filesystem(path)
    with fs.open(p, "r") as fh:
        return fh.read()
