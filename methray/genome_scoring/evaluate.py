"""Metric tables of a genome-wide scoring run (tissues with measured methylation).

Written into the run prefix by :func:`evaluate_set`:

``metrics.tsv`` / ``.parquet``
    Each measured tissue against its own model (:func:`methray.metrics.metric_rows`: overall,
    hyper / mid / hypo, CpG island vs not), over ``all measured`` CpGs and over the model's
    ``held-out`` (test) regions only. The first includes the sites the model was trained on.
    The columns of every metric table (:data:`methray.metrics.COLUMNS`), then ``region``
    (which CpGs) and ``measured_not_scored`` (measured CpGs without a prediction: excluded
    windows).
``cross_tissue.tsv`` / ``.parquet``
    Every model on every measured tissue (the MRCNN paper's Fig. 4 design: trained on one
    cell type, tested on others; Tian et al. 2019, Bioinformatics 35:5230), each restricted
    to the test regions of the model's own run (``split_regions.tsv`` beside its checkpoint),
    so no tested CpG lies where the model was trained. :data:`methray.metrics.COLUMNS`
    (``tissue`` = the tissue tested on), then ``trained_on`` (the tissue the model was trained
    on), ``model_of`` (the tissue-set entry whose model it is) and ``restriction`` (which CpGs).
``donors.tsv`` / ``donors_summary.tsv``
    For a tissue with per-donor betas: AUROC and RMSE (with n) of every model per donor on
    the model's test regions, and their spread over donors (mean, sd, min, median, max).

Measured files go through the same checks as ``methray prepare`` (strand merge against the
reference; too many non-CpG sites is an error); count-based files keep CpGs with at least
``min_coverage`` reads. Measured CpGs not scored (excluded windows) are left out and counted.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd

from .. import storage
from ..errors import MethrayError
from ..genome import Reference
from ..io.bed import IntervalIndex
from ..io.methylation import read_methylation
from ..metrics import classification_metrics, metric_rows, regression_metrics
from ..sites import call_sites
from ..tables import write_table
from .config import SetTissue, TissueSetConfig

MAX_NON_CPG_FRACTION = 0.01


def measured_sites(t: SetTissue, ref: Reference, min_coverage: int) -> pd.DataFrame:
    """A tissue's measured CpGs: ``chrom, pos`` (+ strand C, 0-based), ``beta``.

    Raises
    ------
    MethrayError
        Unreadable file, or a file that does not fit the reference (see :func:`methray.sites.call_sites`).
    """
    raw = read_methylation(t.measured, t.format)
    sites, _ = call_sites(raw, ref, t.measured, MAX_NON_CPG_FRACTION)
    low = sites["n_total"].notna() & (sites["n_total"] < min_coverage)
    return sites.loc[~low, ["chrom", "pos", "beta"]].reset_index(drop=True)


def held_out(t: SetTissue) -> tuple[IntervalIndex | None, str]:
    """The test regions of a model's run, and a sentence saying what they are.

    Reads ``t.split_regions`` or ``<checkpoint>/../split_regions.tsv`` (columns chrom, start,
    end, split; 0-based half-open). Without it: ``(None, "all measured CpGs (...)")``.
    """
    path = t.split_regions or storage.join(os.path.dirname(t.checkpoint.rstrip("/")), "split_regions.tsv")
    if not storage.exists(path):
        return None, f"all measured CpGs (no split_regions.tsv for the {t.name} model)"
    fs, p = storage.filesystem(path)
    with fs.open(p, "r") as fh:
        regions = pd.read_csv(fh, sep="\t")
    if not {"chrom", "start", "end", "split"} <= set(regions.columns):
        raise MethrayError(f"{path}: expected columns chrom, start, end, split")
    test = regions[regions["split"] == "test"]
    spans = ", ".join(f"{r.chrom}:{r.start}-{r.end}" for r in test.itertuples())
    return IntervalIndex(test), f"test regions of the {t.name} model ({spans})"


def restrict(df: pd.DataFrame, regions: IntervalIndex | None) -> pd.DataFrame:
    """Rows of ``df`` (``chrom``, ``pos``) inside ``regions`` (all rows when None)."""
    if regions is None:
        return df
    return df[regions.flag(df["chrom"].to_numpy(), df["pos"].to_numpy())]


def read_donors(path: str, ref: Reference) -> dict[str, pd.DataFrame]:
    """Per-donor betas: donor -> ``chrom, pos, beta`` (measured sites only, strand-merged).

    The file is a TSV with a header ``chrom, start, end, <donor>...``: 0-based starts, beta
    in 0..1, an empty cell = not measured.

    Raises
    ------
    MethrayError
        Missing columns, a non-numeric cell or a beta outside 0..1 (file and line named).
    """
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as raw:
        fh = gzip.open(raw, "rt") if path.endswith(".gz") else raw
        df = pd.read_csv(fh, sep="\t", dtype={"chrom": str})
    if list(df.columns[:3]) != ["chrom", "start", "end"] or len(df.columns) < 4:
        raise MethrayError(f"{path}:1: expected a header chrom, start, end, <donor>...")
    out = {}
    for donor in df.columns[3:]:
        beta = pd.to_numeric(df[donor], errors="coerce")
        bad = (df[donor].notna() & beta.isna()) | (beta < 0) | (beta > 1)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise MethrayError(f"{path}:{i + 2}: donor {donor}: expected a beta in 0..1 or an empty cell, got {df[donor].iloc[i]!r}")
        keep = beta.notna().to_numpy()
        rows = pd.DataFrame(
            {"chrom": df["chrom"][keep], "pos": df["start"][keep].astype(np.int64), "n_meth": np.nan, "n_total": np.nan,
             "beta": beta[keep], "line": np.flatnonzero(keep) + 2}
        )
        sites, _ = call_sites(rows, ref, f"{path} ({donor})", MAX_NON_CPG_FRACTION)
        out[str(donor)] = sites[["chrom", "pos", "beta"]]
    return out


def _joined(pred: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    return measured.merge(pred[["chrom", "pos", "beta_pred", "in_cpg_island"]], on=["chrom", "pos"], how="inner")


def _table(df: pd.DataFrame, prefix: str, name: str) -> str:
    """Write a table with the one table writer (``<name>.tsv`` / ``.parquet``); returns the TSV path."""
    write_table(df, storage.join(prefix, name))
    return storage.join(prefix, f"{name}.tsv")


def evaluate_set(cfg: TissueSetConfig, prefix: str, metas: dict, predictions, ref: Reference) -> dict[str, str]:
    """Write the metric tables (module docstring) and the run's figure; returns name -> path.

    Without measured data only the figure of predictions alone is drawn
    (:func:`methray.plots.predictions_figure`).

    Parameters
    ----------
    predictions
        ``tissue -> DataFrame`` (``chrom, pos, beta_pred, in_cpg_island``) callable.
    """
    from ..plots import predictions_figure, run_figure

    measured = {t.name: measured_sites(t, ref, cfg.min_coverage) for t in cfg.tissues if t.measured}
    preds = {t.name: predictions(t.name) for t in cfg.tissues}
    model_of = {t: metas[t].model for t in preds}
    title = f"methray score-genome: {cfg.run_name} ({cfg.genome})"
    figure = storage.join(prefix, "figure.png")
    if not measured:  # nothing to compare with: the figure of predictions alone
        return {"figure": predictions_figure(preds, model_of, figure, cfg.plot_region_bp, title=title, genome=cfg.genome)}
    regions = {t.name: held_out(t) for t in cfg.tissues}
    out = {}

    own = []
    for tissue, m in measured.items():
        both = _joined(preds[tissue], m)
        reg, what = regions[tissue]
        for label, sub in (("all measured CpGs (includes training sites)", both), (what, restrict(both, reg))):
            rows = metric_rows(sub, model_of[tissue], tissue)
            rows["region"] = label
            rows["measured_not_scored"] = len(m) - len(both)
            own.append(rows)
    out["metrics"] = _table(pd.concat(own, ignore_index=True), prefix, "metrics")

    cross, joined_test = [], {}
    for model_tissue in preds:
        reg, what = regions[model_tissue]
        for tissue, m in measured.items():
            sub = restrict(_joined(preds[model_tissue], m), reg)
            joined_test[(model_tissue, tissue)] = sub
            rows = metric_rows(sub, model_of[model_tissue], tissue)
            rows["trained_on"] = metas[model_tissue].tissue or model_tissue
            rows["model_of"] = model_tissue
            rows["restriction"] = what
            cross.append(rows)
    out["cross_tissue"] = _table(pd.concat(cross, ignore_index=True), prefix, "cross_tissue")

    donor_rows = []
    for t in cfg.tissues:
        if not t.donors:
            continue
        for donor, d in read_donors(t.donors, ref).items():
            for model_tissue in preds:
                reg, what = regions[model_tissue]
                sub = restrict(_joined(preds[model_tissue], d), reg)
                y, p = sub["beta"].to_numpy(float), sub["beta_pred"].to_numpy(float)
                donor_rows.append(
                    {"model_of": model_tissue, "model": model_of[model_tissue], "tissue": t.name, "donor": donor,
                     "n": len(sub), "auroc": classification_metrics(y, p)["auroc"], "rmse": regression_metrics(y, p).get("rmse", np.nan),
                     "restriction": what}
                )
    if donor_rows:
        donors = pd.DataFrame(donor_rows)
        out["donors"] = _table(donors, prefix, "donors")
        spread = (
            donors.melt(id_vars=["model_of", "model", "tissue"], value_vars=["auroc", "rmse", "n"], var_name="metric")
            .groupby(["model_of", "model", "tissue", "metric"], sort=False)["value"]
            .agg(donors="count", mean="mean", sd="std", min="min", median="median", max="max")
            .reset_index()
        )
        out["donors_summary"] = _table(spread, prefix, "donors_summary")

    own_test = {t: joined_test[(t, t)] for t in measured}
    out["figure"] = run_figure(own_test, preds, model_of, figure, cfg.plot_region_bp, title=title, genome=cfg.genome)
    return out

