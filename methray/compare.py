"""Model comparison: every methylation-capable sequence model on the same split, several seeds.

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
- seeds ``0 .. seeds - 1`` per model (``train.seed``: initial weights, shuffles, dropout),
  so that a difference between models can be told from the spread between runs of one;
- :func:`methray.train.fit` (Ray Train), :func:`methray.score.predict_dataset` (Ray Data,
  both strands averaged when ``score.rc_average``), :func:`methray.metrics.metric_rows` and
  both baselines of :mod:`methray.baseline`, fitted on the first model's training sites:
  ``cpg_density`` (on the window of the first model; deterministic, fitted once) and
  ``composition_gbm`` (tuned on the validation sites; ``random_state`` = each seed);
- per model and evaluated tissue, the mean and sd over seeds of AUROC, AUPRC (unmethylated
  class), RMSE, MAE and Pearson r, and a 95% interval of each seed mean from a bootstrap
  over hold-out blocks (:func:`methray.bootstrap.seed_interval_rows`: blocks drawn once per
  replicate, every seed's metric on that resample, averaged);
- cross-tissue: with two or more tissues in the config, every model (trained on the first)
  is also scored at each further tissue's own test sites (its CpGs in the hold-out regions,
  which all tissues of a CpG table share; capped like the first tissue's) and evaluated
  against that tissue's measured beta. Those rows carry the evaluated tissue in ``tissue``;
  their predictions are ``.../predictions/<tissue>.<name>.parquet`` too;
- fine-tuning (``init_from``, a comparison run on the same CpG table, e.g. with another
  tissue first): each model and seed starts from the weights of that run's model and seed
  instead of random ones (``train.init_from``). Its hold-out regions must be this run's
  (``split_regions.tsv`` equal), so that no pre-training site lies in a test region.

Outputs in ``out_dir``: ``models/<name>/seed<k>/checkpoint``, ``.../train_history.tsv`` and
``.../predictions/<tissue>.<name>.parquet`` per model and seed; ``predictions/<tissue>.<name>.parquet``
and bedGraphs of seed 0; ``comparison.tsv`` / ``.parquet`` (one row per model and tissue, the
first line states budget, seeds and interval) and ``comparison.md`` (the headline metrics as
``mean ± sd [lo, hi]``, then every column); ``comparison_intervals.tsv``; the tidy per-seed
``comparison_metrics.tsv`` / ``.parquet`` (every metric, subsets all / cgi / non_cgi, column
``seed``). A seed whose checkpoint records the same budget name, numbers of training /
validation sites, epoch cap, learning rate and schedule, batch size, RC augmentation, seed and
starting weights is not retrained (an interrupted comparison resumes; delete ``models/<name>`` to retrain).
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
        max_val=5000,
        max_eval=4000,
    ),
}
# context_cnn on IMR90 (30k training sites, validation MSE per epoch): 0.110, 0.088, 0.086,
# 0.083, 0.087, 0.084, 0.075, 0.084 over epochs 1-8; 3 epochs stop it before its best, so
# `cpu-long` gives every model up to 8 epochs (the best validation epoch is kept). The
# validation sites are 5,000 (1,000 before): with 1,000 in one block the best epoch was noise
# (a context_cnn seed kept epoch 1 of 8), and scoring 5,000 sites costs seconds an epoch.
# deepcpg_dna trains at ~150 samples/s on 2 cores: 10,000 sites keep 8 epochs near 9 minutes.
BUDGETS["cpu-long"] = BUDGETS["cpu"].model_copy(
    update={"name": "cpu-long", "epochs": 8, "max_train_per_model": {**BUDGETS["cpu"].max_train_per_model, "deepcpg_dna": 10000}}
)


def _capped(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` rows of ``df`` (:func:`methray.budget.cap_rows`, seed 0), in ``df``'s order."""
    return df.iloc[cap_rows(np.arange(len(df)), n)].reset_index(drop=True) if n is not None and len(df) > n else df


def model_config(name: str, cfg: RunConfig) -> ModelConfig:
    """The methylation-task model section for ``name`` (registry window, one output)."""
    params = cfg.model.params if cfg.model.name == name else {}
    return ModelConfig(name=name, task="methylation", n_outputs=1, params=params)


def _checkpoint_current(path: str, expected: dict) -> bool:
    """Whether ``path`` holds a checkpoint whose metadata has every ``expected`` item and
    whose weights load into the model as the code builds it now (a model changed under the
    same name is trained again, not reused)."""
    if not storage.exists(storage.join(path, "meta.json")):
        return False
    meta = checkpoint.read_meta(path)
    if not all(getattr(meta, k, None) == v for k, v in expected.items()):
        return False
    try:
        checkpoint.load(path)
    except Exception:  # noqa: BLE001 - missing or mismatched weights: not reusable
        return False
    return True


def compare(cfg: RunConfig, *, names: list[str] | tuple[str, ...] = MODELS, budget: Budget = BUDGETS["none"], seeds: int = 3, init_from: str | None = None) -> pd.DataFrame:
    """Train, score and evaluate each model with several seeds on one split; write the comparison table.

    Parameters
    ----------
    cfg
        Run config; ``model`` is ignored except for ``params`` of the same-named model. Models
        are trained on the first tissue; every further tissue is a cross-tissue evaluation.
    names
        Registered sequence models to compare.
    budget
        Caps on sites and epochs (:data:`BUDGETS`).
    seeds
        Training seeds ``0 .. seeds - 1`` per model (``train.seed``; ``composition_gbm``'s
        ``random_state``); ``cpg_density`` is fitted once (it has no randomness).
    init_from
        Output folder of a comparison on the same hold-out regions: model ``name``, seed ``k``
        starts from ``<init_from>/models/<name>/seed<k>/checkpoint`` (fine-tuning).

    Returns
    -------
    pd.DataFrame
        The comparison table (one row per model and evaluated tissue, both baselines
        included), as in ``comparison.tsv``.

    Raises
    ------
    MethrayError
        A model that is not a sequence model, ``split.gap_bp`` smaller than a window,
        ``seeds`` < 1, or an ``init_from`` run with other hold-out regions or without a
        model's checkpoint.
    """
    import ray

    from .genome import open_reference
    from .metrics import metric_rows
    from .pipeline import run_prepare
    from .run import start_ray, start_run
    from .predictions import write_file, write_predictions
    from .score import predict_dataset
    from .sites import read_sites
    from .tracks import sort_sites
    from .train import checkpoint_meta, fit, learning_rate, model_window
    from .windows import WindowRows

    names = list(names)
    if seeds < 1:
        raise MethrayError(f"--seeds {seeds}: expected at least 1")
    specs = {n: model_window(cfg.model_copy(update={"model": model_config(n, cfg)})) for n in names}
    widest = max(s.length for s in specs.values())
    if cfg.split.gap_bp < widest:
        raise MethrayError(f"split.gap_bp ({cfg.split.gap_bp}) is smaller than the widest window ({widest} bp): train and test windows could overlap")
    budget_line = budget.describe(names)
    t0 = time.perf_counter()
    init, same_regions = _init_checkpoints(init_from, names, seeds, specs)
    start_run(cfg, with_ray=False)
    if storage.exists(cfg.sites_table):
        log.info(f"compare: reusing the CpG table {cfg.sites_table} (delete it to prepare again)")
        if same_regions is not None:
            same_regions(bootstrap.read_split_regions(cfg.path("split_regions.tsv")))
    else:
        run_prepare(cfg, check_regions=same_regions)  # checked before the table is written
    start_ray(cfg)
    log.info(f"compare: {budget_line}; seeds 0..{seeds - 1}" + (f"; fine-tuned from {init_from}" if init_from else ""))

    tissue = cfg.tissues[0].name
    order = open_reference(cfg.reference).chroms
    sites = {s: sort_sites(read_sites(cfg.sites_table, tissue=tissue, split=s), order) for s in ("train", "val", "test")}
    val, test = _capped(sites["val"], budget.max_val), _capped(sites["test"], budget.max_eval)
    # Cross-tissue: each further tissue's own test sites (the hold-out regions are shared by
    # every tissue of the CpG table: prepare plans them on the union of the tissues' sites).
    # Every model is scored once at all of them (`scored`) and evaluated per tissue.
    tests = {tissue: test}
    for other in cfg.tissues[1:]:
        tests[other.name] = _capped(sort_sites(read_sites(cfg.sites_table, tissue=other.name, split="test"), order), budget.max_eval)
    scored = sort_sites(pd.concat(list(tests.values()), ignore_index=True).drop_duplicates(["chrom", "pos"]).reset_index(drop=True), order)
    epochs = min(budget.epochs, cfg.train.epochs) if budget.epochs else cfg.train.epochs
    train_cfg = cfg.train.model_copy(update={"epochs": epochs, "max_train_sites": None})

    def keep(name: str, k: int, pred: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """One seed's predictions at ``scored`` -> per evaluated tissue, with that tissue's
        measured beta; written per tissue (the first tissue's of seed 0 also as the run's predictions/)."""
        per_tissue = {}
        for t_name, t_sites in tests.items():
            on = pred.drop(columns=[c for c in pred.columns if c in t_sites.columns and c not in ("chrom", "pos")])
            on = t_sites.merge(on, on=["chrom", "pos"], how="inner")
            write_file(on, storage.join(cfg.path("models", name, f"seed{k}"), "predictions", f"{t_name}.{name}.parquet"), model=name, tissue=t_name)
            per_tissue[t_name] = on
        if k == 0:
            write_predictions(cfg, per_tissue[tissue], tissue, name)
        return per_tissue

    preds, runs = {}, []  # model -> per seed {tissue: predictions at its test sites}; per-seed run facts
    for name in names:
        spec, mcfg = specs[name], cfg.model_copy(update={"model": model_config(name, cfg)})
        train = _capped(sites["train"], budget.train_cap(name))
        preds[name] = []
        for k in range(seeds):
            ckpt_dir = cfg.path("models", name, f"seed{k}", "checkpoint")
            run_facts = {
                "compare_budget": budget.name, "n_train": len(train), "n_val": len(val), "max_epochs": epochs, "lr": learning_rate(train_cfg, name),
                "batch_size": train_cfg.batch_size, "lr_schedule": train_cfg.lr_schedule, "rc_augment": train_cfg.rc_augment, "seed": k,
                "init_from": init.get((name, k)),
            }
            if _checkpoint_current(ckpt_dir, run_facts):
                meta = checkpoint.read_meta(ckpt_dir)
                log.info(f"compare {name} seed {k}: reusing {ckpt_dir} (same budget and settings)")
            else:
                res = fit(
                    WindowRows.from_frame(train),
                    WindowRows.from_frame(val),
                    reference=cfg.reference,
                    meta=checkpoint_meta(mcfg, spec, tissue=tissue, **run_facts),
                    train_cfg=train_cfg.model_copy(update={"seed": k, "init_from": init.get((name, k))}),
                    name=f"{cfg.run_name}-compare-{name}-seed{k}",
                    storage_path=cfg.path("ray_train"),
                    checkpoint_dir=ckpt_dir,
                )
                meta = checkpoint.read_meta(ckpt_dir).model_copy(update={"train_seconds": res.seconds, "epochs_run": len(res.history)})
                checkpoint.write_meta(ckpt_dir, meta)
            t = time.perf_counter()
            pred = keep(name, k, sort_sites(predict_dataset(ray.data.from_pandas(scored), cfg, ckpt_dir).to_pandas(), order))
            preds[name].append(pred)
            runs.append({**_run_row(name, spec, meta, len(train), time.perf_counter() - t), "seed": k})
            auroc = metric_rows(pred[tissue], name, tissue)["auroc"].iloc[0]
            log.info(f"compare {name} seed {k}: {len(train):,} train sites, {meta.epochs_run or '?'} epochs, best val MSE {meta.val_loss if meta.val_loss is not None else float('nan'):.4f}; AUROC {auroc:.3f}")

    base_spec = specs[names[0]]
    base_train = _capped(sites["train"], budget.train_cap(names[0]))
    for name, n_seeds, fit_predict, n_params in (
        (baseline.NAME, 1, lambda k: baseline.fit_predict(base_train, scored, cfg.reference, base_spec), 3),
        (baseline.GBM_NAME, seeds, lambda k: baseline.fit_predict_gbm(base_train, val, scored, cfg.reference, cfg.cpg_islands, seed=k), np.nan),
    ):
        preds[name] = []
        for k in range(n_seeds):
            t = time.perf_counter()
            preds[name].append(keep(name, k, scored.assign(beta_pred=fit_predict(k))))
            window = _window_label(base_spec) if name == baseline.NAME else "composition"
            runs.append({"model": name, "window": window, "parameters": n_params, "train_sites": len(base_train), "epochs": np.nan,
                         "train_s": time.perf_counter() - t, "score_s": np.nan, "seed": k})
        log.info(f"compare {name}: AUROC {metric_rows(preds[name][0][tissue], name, tissue)['auroc'].iloc[0]:.3f} (seed 0)")

    regions = bootstrap.read_split_regions(cfg.path("split_regions.tsv"))
    frames, intervals = [], []
    for name, per_seed in preds.items():
        for t_name in tests:
            on = [p[t_name] for p in per_seed]
            if len(on[0]) == 0:
                log.warning(f"compare: {t_name} has no test sites; no {t_name} rows")
                continue
            frames += [metric_rows(p, name, t_name).assign(seed=k) for k, p in enumerate(on)]
            intervals.append(bootstrap.seed_interval_rows(on, regions, name, t_name))
    tidy = pd.concat(frames, ignore_index=True)
    intervals = pd.concat(intervals, ignore_index=True)
    interval_line = f"{bootstrap.describe()}, of the mean over seeds"
    write_table(intervals, cfg.path("comparison_intervals"), [interval_line])
    write_table(tidy, cfg.path("comparison_metrics"))
    table = comparison_table(tidy, pd.DataFrame(runs), intervals)
    cross = f"; tissue = tissue evaluated (models trained on {tissue}; other tissues at their own test sites)" if len(tests) > 1 else ""
    if init_from:
        cross += f"; models fine-tuned from {init_from}"
    header = f"methray compare, {tissue}, {cfg.genome}; {budget_line}; seeds 0..{seeds - 1}: mean and sd over seeds (cpg_density: one fit); {interval_line}{cross}"
    write_comparison(table, cfg.path("comparison"), header)
    log.info(f"compare: {cfg.path('comparison.tsv')} and comparison.md ({time.perf_counter() - t0:.0f} s)")
    return table


def _init_checkpoints(init_from: str | None, names: list[str], seeds: int, specs: dict) -> tuple[dict, object]:
    """The checkpoints to fine-tune from, checked before anything is written or trained.

    Returns ``(model, seed) -> checkpoint`` and a check of this run's hold-out regions
    (``regions -> None``, raising :class:`MethrayError` when they are not the ``init_from``
    run's: its training regions could hold this run's test sites); ``({}, None)`` without
    ``init_from``. Raises :class:`MethrayError` for a folder that is not a comparison or a
    checkpoint that is missing or of another model."""
    from .train import check_init_from

    if init_from is None:
        return {}, None
    theirs = storage.join(init_from, "split_regions.tsv")
    if not storage.exists(theirs):
        raise MethrayError(f"{init_from}: --init-from expects a `methray compare` output folder (no split_regions.tsv)")
    expected = bootstrap.read_split_regions(theirs).to_csv(sep="\t", index=False)

    def same_regions(regions: pd.DataFrame) -> None:
        if regions.to_csv(sep="\t", index=False) != expected:
            raise MethrayError(f"{theirs}: --init-from run has other hold-out regions than this run's; fine-tune only from a run on the same CpG table (its training regions could hold this run's test sites)")

    found = {}
    for name in names:
        for k in range(seeds):
            path = storage.join(init_from, "models", name, f"seed{k}", "checkpoint")
            if not storage.exists(storage.join(path, "meta.json")):
                raise MethrayError(f"{path}: --init-from run has no {name} checkpoint for seed {k}")
            check_init_from(path, name, specs[name])
            found[(name, k)] = path
    return found, same_regions


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


# (subset, metric) -> column of the comparison table (mean over seeds)
TABLE_METRICS = [
    ("all", "accuracy"), ("all", "rmse_hyper"), ("all", "mae_hyper"), ("all", "rmse_mid"), ("all", "mae_mid"), ("all", "rmse_hypo"), ("all", "mae_hypo"),
    ("cgi", "auroc"), ("cgi", "rmse"), ("cgi", "mae"), ("non_cgi", "auroc"), ("non_cgi", "rmse"), ("non_cgi", "mae"),
]

INTERVAL_METRICS = bootstrap.SEED_METRICS
"""Headline metrics: mean, sd over seeds and the block-bootstrap interval of the mean
(AUROC, AUPRC of the unmethylated class, RMSE, MAE, Pearson r)."""

RUN_COLUMNS = ["model", "tissue", "window", "parameters", "train_sites", "seeds", "epochs", "train_s", "score_s", "n"]


def comparison_table(tidy: pd.DataFrame, runs: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """One row per model and evaluated tissue.

    Parameters
    ----------
    tidy
        Per-seed metric rows (:func:`methray.metrics.metric_rows` plus ``seed``).
    runs
        Per-seed run facts: ``model, window, parameters, train_sites, epochs, train_s,
        score_s, seed``.
    intervals
        :func:`methray.bootstrap.seed_interval_rows` of every model and tissue.

    Returns
    -------
    pd.DataFrame
        :data:`RUN_COLUMNS` (``epochs``, ``train_s``, ``score_s``: means over seeds; ``n``:
        evaluated CpGs), then for each metric of :data:`INTERVAL_METRICS` ``<m>`` (mean over
        seeds), ``<m>_sd`` (sample sd over seeds; 0 for a single fit), ``<m>_lo``,
        ``<m>_hi`` (95% block-bootstrap interval of the mean), then the means of
        :data:`TABLE_METRICS` (CpG-island subsets prefixed: ``cgi_auroc``, ``non_cgi_rmse``).
    """
    facts = runs.groupby("model", sort=False).agg(
        window=("window", "first"), parameters=("parameters", "first"), train_sites=("train_sites", "first"), seeds=("seed", "size"),
        epochs=("epochs", "mean"), train_s=("train_s", "mean"), score_s=("score_s", "mean"))
    rows = []
    for (model, tissue), g in tidy.groupby(["model", "tissue"], sort=False):
        alls = g[g["subset"] == "all"]
        row = {"model": model, "tissue": tissue, **facts.loc[model].to_dict(), "n": int(alls["n"].iloc[0])}
        iv = intervals[(intervals["model"] == model) & (intervals["tissue"] == tissue)].set_index("metric")
        for m in INTERVAL_METRICS:
            v = alls[m].to_numpy(np.float64)
            row[m], row[f"{m}_sd"] = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            row[f"{m}_lo"], row[f"{m}_hi"] = iv.loc[m, "lo"], iv.loc[m, "hi"]
        for subset, m in TABLE_METRICS:
            row[m if subset == "all" else f"{subset}_{m}"] = float(g.loc[g["subset"] == subset, m].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    table["seeds"] = table["seeds"].astype(int)
    return table


def summary_markdown(table: pd.DataFrame) -> str:
    """The headline columns as GitHub Markdown: ``mean ± sd [lo, hi]`` per metric of
    :data:`INTERVAL_METRICS`, one row per model and tissue."""
    labels = {"auroc": "AUROC", "auprc_unmeth": "AUPRC (unmeth.)", "rmse": "RMSE", "mae": "MAE", "pearson_r": "r"}
    cols = ["model", "tissue", "window", "train_sites", "seeds", "n"]
    lines = ["| " + " | ".join(cols + [labels[m] for m in INTERVAL_METRICS]) + " |", "|" + "---|" * (len(cols) + len(INTERVAL_METRICS))]
    for r in table.to_dict("records"):
        cells = [str(r["model"]), str(r["tissue"]), str(r["window"]), f"{r['train_sites']:,}", str(r["seeds"]), f"{r['n']:,}"]
        cells += [f"{r[m]:.3f} ± {r[m + '_sd']:.3f} [{r[m + '_lo']:.3f}, {r[m + '_hi']:.3f}]" for m in INTERVAL_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_comparison(table: pd.DataFrame, stem: str, header: str) -> None:
    """Write ``<stem>.tsv`` / ``.parquet`` (:func:`methray.tables.write_table`, ``header`` as
    the comment line) and ``<stem>.md``, atomically."""
    write_table(table, stem, [header])
    with storage.atomic_write(f"{stem}.md") as fh:
        fh.write(f"{header}\n\n{summary_markdown(table)}\n\nEvery column:\n\n{markdown(table)}\n")


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
