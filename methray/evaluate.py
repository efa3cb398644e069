"""Stage 5, evaluate: the baseline and the metric table for a run.

Writes ``metrics.tsv`` and ``metrics.parquet`` (tidy: one row per model x tissue x subset,
columns :data:`methray.metrics.COLUMNS`) into the run directory. The CpG-density baseline
(:mod:`methray.baseline`) is fitted on the same split and reported as its own model row.
"""

from __future__ import annotations

import pandas as pd

from . import baseline
from .checkpoint import read_meta
from .config import RunConfig
from .metrics import metric_rows
from .sites import read_sites
from .predictions import read_predictions, write_predictions
from .tables import write_table


def run_baseline(cfg: RunConfig, split: str = "test") -> None:
    """Fit the CpG-density baseline per tissue and write its predictions like a model's."""
    spec = read_meta(cfg.checkpoint_dir).window
    for t in cfg.tissues:
        train = read_sites(cfg.sites_table, tissue=t.name, split="train")
        test = read_sites(cfg.sites_table, tissue=t.name, split=split)
        test = test.assign(beta_pred=baseline.fit_predict(train, test, cfg.reference, spec))
        write_predictions(cfg, test, t.name, baseline.NAME)


def evaluate(cfg: RunConfig) -> pd.DataFrame:
    """Compute the metric table for the run's model and the baseline, for every tissue.

    Returns
    -------
    pd.DataFrame
        The tidy metric table (also written as ``metrics.tsv`` and ``metrics.parquet``).
    """
    model = read_meta(cfg.checkpoint_dir).model
    frames = []
    for t in cfg.tissues:
        for name in (model, baseline.NAME):
            frames.append(metric_rows(read_predictions(cfg, t.name, name), name, t.name))
    table = pd.concat(frames, ignore_index=True)
    write_table(table, cfg.path("metrics"))
    return table
