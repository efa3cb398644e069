"""Model comparison: every methylation-capable sequence model on the same split.

The analogue of Tian et al. 2019 (MRCNN, BMC Genomics 20:192), Fig. 3, where MRCNN is
compared with a CNN baseline and the DeepCpG DNA module: each model in :data:`MODELS` is
trained on the methylation task (one output, MSE, clipped to [0, 1]; :mod:`methray.tasks`)
on the first tissue of the config, with

- one CpG table (``<out>/cpg_table``, prepared once and reused when present) and so one
  contiguous-region split for every model (``split.gap_bp`` must be at least the largest
  window, so that no training window overlaps a test window);
- the same training / validation / test sites for every model (when a :class:`~methray.budget.Budget` caps
  them: a fixed random subset of each split, seed 0; a smaller per-model cap on training
  sites gives a subset of a larger one's sites);
- :func:`methray.train.fit` (Ray Train), :func:`methray.score.predict_dataset` (Ray Data),
  :func:`methray.metrics.metric_rows` and both baselines of :mod:`methray.baseline`
  (``cpg_density`` on the window of the first model, ``composition_gbm`` tuned on the
  validation sites), fitted on the first model's training sites;
- for every row, a 95% interval of AUROC, AUPRC (unmethylated class) and RMSE from a
  bootstrap over hold-out blocks (:mod:`methray.bootstrap`): columns ``<metric>_lo`` /
  ``<metric>_hi``, and every interval in ``comparison_intervals.tsv`` / ``.parquet``.

Outputs in ``out_dir``: ``models/<name>/checkpoint`` and ``models/<name>/train_history.tsv``
per model; ``predictions/<tissue>.<name>.parquet`` and bedGraphs; ``comparison.tsv`` and
``comparison.md`` (one row per model, first line states the budget and the interval) and the tidy
``comparison_metrics.tsv`` / ``.parquet`` (every metric, subsets all / cgi / non_cgi).
A model whose checkpoint records the same budget name, numbers of training / validation
sites, epoch cap, learning rate and batch size is not retrained (an interrupted comparison
resumes; delete ``models/<name>`` to retrain).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from . import baseline, bootstrap, checkpoint, models, storage
from .budget import Budget, cap_rows
from .config import ModelConfig, RunConfig
from .errors import MethrayError
from .tables import read_result, write_table

log = logging.getLogger(__name__)

MODELS = ("mrcnn", "cnn_baseline", "deepcpg_dna", "deepsea", "basset", "danq", "danq_random_dropout", "conv4_frss", "context_cnn")


# Chosen from training throughput measured on the shared 2-core machine (plain torch, 2
# threads, batch 64, machine loaded by other jobs): mrcnn ~115, cnn_baseline ~180,
# deepcpg_dna ~100, basset ~15 samples/s; DeepSEA / DanQ / conv4-FRSS (17-53 M parameters,
# 1000 bp) slower still. The three models of Tian et al. 2019, Fig. 3 get the same training
# sites; the big multi-task architectures get a token budget, so the whole comparison takes
# ~30 min. Validation and test sites are shared by all models.
BUDGETS = {
    "none": Budget(name="none"),
    "cpu": Budget(
        name="cpu",
        epochs=3,
        max_train_per_model={
            "mrcnn": 30000, "cnn_baseline": 30000, "deepcpg_dna": 30000, "basset": 2000,
            "deepsea": 1000, "danq": 1000, "danq_random_dropout": 1000, "conv4_frss": 500, "context_cnn": 30000,
        },
        max_val=1000,
        max_eval=4000,
    ),
}
# context_cnn on IMR90 (30k training sites, validation MSE per epoch): 0.110, 0.088, 0.086,
# 0.083, 0.087, 0.084, 0.075, 0.084 over epochs 1-8; 3 epochs stop it before its best, so
# `cpu-long` gives every model up to 8 epochs (the best validation epoch is kept).
BUDGETS["cpu-long"] = BUDGETS["cpu"].model_copy(update={"name": "cpu-long", "epochs": 8})


def _capped(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` rows of ``df`` (:func:`methray.budget.cap_rows`, seed 0), in ``df``'s order."""
    return df.iloc[cap_rows(np.arange(len(df)), n)].reset_index(drop=True) if n is not None and len(df) > n else df


def model_config(name: str, cfg: RunConfig) -> ModelConfig:
    """The methylation-task model section for ``name`` (registry window, one output)."""
    params = cfg.model.params if cfg.model.name == name else {}
    return ModelConfig(name=name, task="methylation", n_outputs=1, params=params)


def _checkpoint_current(path: str, expected: dict) -> bool:
    """Whether ``path`` holds a checkpoint whose metadata has every ``expected`` item."""
    if not storage.exists(storage.join(path, "meta.json")):
        return False
    meta = checkpoint.read_meta(path)
    return all(getattr(meta, k, None) == v for k, v in expected.items())


def compare(cfg: RunConfig, *, names: list[str] | tuple[str, ...] = MODELS, budget: Budget = BUDGETS["none"]) -> pd.DataFrame:
    """Train, score and evaluate each model on one split; write the comparison table.

    Parameters
    ----------
    cfg
        Run config; ``model`` is ignored except for ``params`` of the same-named model.
    names
        Registered sequence models to compare.
    budget
        Caps on sites and epochs (:data:`BUDGETS`).

    Returns
    -------
    pd.DataFrame
        The comparison table (one row per model plus ``cpg_density``), as in ``comparison.tsv``.

    Raises
    ------
    MethrayError
        A model that is not a sequence model, or ``split.gap_bp`` smaller than a window.
    """
    import ray

    from .genome import open_reference
    from .metrics import metric_rows
    from .pipeline import run_prepare
    from .run import start_ray, start_run
    from .predictions import read_predictions, write_predictions
    from .score import predict_dataset
    from .sites import read_sites
    from .tracks import sort_sites
    from .train import checkpoint_meta, fit, learning_rate, model_window
    from .windows import WindowRows

    names = list(names)
    specs = {n: model_window(cfg.model_copy(update={"model": model_config(n, cfg)})) for n in names}
    widest = max(s.length for s in specs.values())
    if cfg.split.gap_bp < widest:
        raise MethrayError(f"split.gap_bp ({cfg.split.gap_bp}) is smaller than the widest window ({widest} bp): train and test windows could overlap")
    budget_line = budget.describe(names)
    t0 = time.perf_counter()
    start_run(cfg, with_ray=False)
    if storage.exists(cfg.sites_table):
        log.info(f"compare: reusing the CpG table {cfg.sites_table} (delete it to prepare again)")
    else:
        run_prepare(cfg)
    start_ray(cfg)
    log.info(f"compare: {budget_line}")

    tissue = cfg.tissues[0].name
    order = open_reference(cfg.reference).chroms
    sites = {s: sort_sites(read_sites(cfg.sites_table, tissue=tissue, split=s), order) for s in ("train", "val", "test")}
    val, test = _capped(sites["val"], budget.max_val), _capped(sites["test"], budget.max_eval)
    epochs = min(budget.epochs, cfg.train.epochs) if budget.epochs else cfg.train.epochs
    train_cfg = cfg.train.model_copy(update={"epochs": epochs, "max_train_sites": None})

    frames, runs = [], []
    for name in names:
        spec, mcfg = specs[name], cfg.model_copy(update={"model": model_config(name, cfg)})
        ckpt_dir = cfg.path("models", name, "checkpoint")
        train = _capped(sites["train"], budget.train_cap(name))
        run_facts = {"compare_budget": budget.name, "n_train": len(train), "n_val": len(val), "max_epochs": epochs, "lr": learning_rate(train_cfg, name), "batch_size": train_cfg.batch_size}
        if _checkpoint_current(ckpt_dir, run_facts):
            meta = checkpoint.read_meta(ckpt_dir)
            log.info(f"compare {name}: reusing {ckpt_dir} (same budget)")
        else:
            res = fit(
                WindowRows.from_frame(train),
                WindowRows.from_frame(val),
                reference=cfg.reference,
                meta=checkpoint_meta(mcfg, spec, tissue=tissue, **run_facts),
                train_cfg=train_cfg,
                name=f"{cfg.run_name}-compare-{name}",
                storage_path=cfg.path("ray_train"),
                checkpoint_dir=ckpt_dir,
            )
            meta = checkpoint.read_meta(ckpt_dir).model_copy(update={"train_seconds": res.seconds, "epochs_run": len(res.history)})
            checkpoint.write_meta(ckpt_dir, meta)
        t = time.perf_counter()
        pred = sort_sites(predict_dataset(ray.data.from_pandas(test), cfg, ckpt_dir).to_pandas(), order)
        write_predictions(cfg, pred, tissue, name)
        frames.append(metric_rows(pred, name, tissue))
        runs.append(_run_row(name, spec, meta, len(train), time.perf_counter() - t))
        log.info(f"compare {name}: {len(train):,} train sites, {meta.epochs_run or '?'} epochs, best val MSE {meta.val_loss if meta.val_loss is not None else float('nan'):.4f}; AUROC {frames[-1]['auroc'].iloc[0]:.3f}, RMSE {frames[-1]['rmse'].iloc[0]:.3f}")

    base_spec = specs[names[0]]
    base_train = _capped(sites["train"], budget.train_cap(names[0]))
    for name, beta_pred, n_params in (
        (baseline.NAME, lambda: baseline.fit_predict(base_train, test, cfg.reference, base_spec), 3),
        (baseline.GBM_NAME, lambda: baseline.fit_predict_gbm(base_train, val, test, cfg.reference, cfg.cpg_islands, seed=cfg.split.seed), np.nan),
    ):
        t = time.perf_counter()
        pred = test.assign(beta_pred=beta_pred())
        write_predictions(cfg, pred, tissue, name)
        frames.append(metric_rows(pred, name, tissue))
        runs.append({"model": name, "window": _window_label(base_spec) if name == baseline.NAME else "composition", "parameters": n_params, "train_sites": len(base_train), "epochs": "-", "train_s": time.perf_counter() - t, "score_s": np.nan})
        log.info(f"compare {name}: AUROC {frames[-1]['auroc'].iloc[0]:.3f}, RMSE {frames[-1]['rmse'].iloc[0]:.3f}")

    regions = bootstrap.read_split_regions(cfg.path("split_regions.tsv"))
    intervals = pd.concat([bootstrap.interval_rows(read_predictions(cfg, tissue, f["model"].iloc[0]), regions, f["model"].iloc[0], tissue) for f in frames], ignore_index=True)
    write_table(intervals, cfg.path("comparison_intervals"), [bootstrap.describe()])

    tidy = pd.concat(frames, ignore_index=True)
    write_table(tidy, cfg.path("comparison_metrics"))
    table = comparison_table(tidy, pd.DataFrame(runs), intervals)
    write_comparison(table, cfg.path("comparison"), f"methray compare, {tissue}, {cfg.genome}; {budget_line}; {bootstrap.describe()}")
    log.info(f"compare: {cfg.path('comparison.tsv')} and comparison.md ({time.perf_counter() - t0:.0f} s)")
    return table


def _window_label(spec) -> str:
    return f"{spec.length}{' excl. CpG' if spec.exclude_cpg else ''}"


def _run_row(name: str, spec, meta: checkpoint.CheckpointMeta, n_train: int, score_s: float) -> dict:
    with torch.device("meta"):
        n_params = models.n_parameters(models.build(name, window_length=spec.length, n_outputs=1, **meta.params))
    return {
        "model": name, "window": _window_label(spec), "parameters": n_params, "train_sites": n_train,
        "epochs": meta.epochs_run if meta.epochs_run is not None else np.nan,
        "train_s": meta.train_seconds if meta.train_seconds is not None else np.nan, "score_s": score_s,
    }


# (subset, metric) -> column of the comparison table
TABLE_METRICS = [
    ("all", "n"), ("all", "auroc"), ("all", "auprc_unmeth"), ("all", "accuracy"), ("all", "rmse"), ("all", "mae"), ("all", "pearson_r"),
    ("all", "rmse_hyper"), ("all", "mae_hyper"), ("all", "rmse_mid"), ("all", "mae_mid"), ("all", "rmse_hypo"), ("all", "mae_hypo"),
    ("cgi", "auroc"), ("cgi", "rmse"), ("cgi", "mae"), ("non_cgi", "auroc"), ("non_cgi", "rmse"), ("non_cgi", "mae"),
]


INTERVAL_METRICS = ("auroc", "auprc_unmeth", "rmse")
"""Metrics with a block-bootstrap interval in the comparison table."""


def comparison_table(tidy: pd.DataFrame, runs: pd.DataFrame, intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model: run facts, the metrics of :data:`TABLE_METRICS`, then the intervals.

    Columns of subset ``all`` keep the metric name (``auroc``, ``rmse_hyper``, ...); the
    CpG-island subsets are prefixed (``cgi_auroc``, ``non_cgi_rmse``, ...). With
    ``intervals`` (:func:`methray.bootstrap.interval_rows`), ``<metric>_lo`` and
    ``<metric>_hi`` for each metric of :data:`INTERVAL_METRICS` follow.
    """
    wide = runs.set_index("model")
    for subset, metric in TABLE_METRICS:
        col = metric if subset == "all" else f"{subset}_{metric}"
        wide[col] = tidy[tidy["subset"] == subset].set_index("model")[metric]
    if intervals is not None:
        for metric in INTERVAL_METRICS:
            rows = intervals[intervals["metric"] == metric].set_index("model")
            wide[f"{metric}_lo"], wide[f"{metric}_hi"] = rows["lo"], rows["hi"]
    return wide.reset_index()


def write_comparison(table: pd.DataFrame, stem: str, header: str) -> None:
    """Write ``<stem>.tsv`` / ``.parquet`` (:func:`methray.tables.write_table`, ``header`` as
    the comment line) and ``<stem>.md``, atomically."""
    write_table(table, stem, [header])
    with storage.atomic_write(f"{stem}.md") as fh:
        fh.write(f"{header}\n\n{markdown(table)}\n")


def markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (floats to 3 decimals, integers with thousands separators)."""

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.3f}"
        if isinstance(v, (int, np.integer)):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def read_comparison(path: str) -> tuple[str, pd.DataFrame]:
    """Read ``comparison.tsv``: the header line (without ``# ``) and the table."""
    header, table = read_result(path)
    return header[0], table
