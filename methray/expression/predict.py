"""``methray expression-predict``: trained gene models + a new methylation matrix -> expression.

The models are the ``final_models`` of a finished ``methray expression`` run (fitted on all of
its samples, ``<run>/models/<model>/<gene_id>.pkl``). The new matrix must hold every probe the
models use (the same 450K / EPIC probe ids); its beta values become M-values with the run's
``features.eps``, and a missing value is replaced by the probe's mean over the training samples
(the rule of :class:`methray.expression.models.GeneModel`).

The model files are Python pickles: load only runs you trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import storage
from ..errors import MethrayError
from .config import load_expression_config
from .data import m_values, read_matrix


@dataclass
class PredictResult:
    out: str
    models: list[str]
    n_genes: int
    n_samples: int
    n_imputed: int


def predict_expression(run_dir: str, methylation: str, out: str, models: list[str] | None = None) -> PredictResult:
    """Predict log2 expression of every trained gene in every sample of ``methylation``.

    Parameters
    ----------
    run_dir
        Output directory of ``methray expression`` (its ``config.yaml``, ``genes.tsv``, ``models/``).
    methylation
        Beta values, probes x samples (TSV, first column the probe id), local or ``s3://``.
    out
        Output table, ``.tsv`` / ``.tsv.gz`` or ``.parquet``: columns ``model``, ``gene_id``,
        ``symbol``, then one column per sample (predicted log2 expression); written atomically.
    models
        Which trained models (default: every one in ``models/``).

    Raises
    ------
    MethrayError
        No finished run at ``run_dir``, no trained model, or probes of the models missing from
        the new matrix.
    """
    cfg_path = storage.join(run_dir, "config.yaml")
    genes_path = storage.join(run_dir, "genes.tsv")
    if not storage.exists(cfg_path) or not storage.exists(genes_path):
        raise MethrayError(f"{run_dir}: not a finished `methray expression` run (config.yaml and genes.tsv expected)")
    cfg = load_expression_config(cfg_path)
    symbols = pd.read_csv(genes_path, sep="\t", usecols=["gene_id", "symbol"]).drop_duplicates().set_index("gene_id")["symbol"]
    models = models or [m for m in cfg.final_models if storage.exists(storage.join(run_dir, "models", m))]
    if not models:
        raise MethrayError(f"{run_dir}/models: no trained models (set final_models in the run's config)")
    beta = read_matrix(methylation, "methylation (beta)")
    try:
        mv = pd.DataFrame(m_values(beta.to_numpy(), cfg.features.eps), index=beta.index, columns=beta.columns)
    except ValueError as exc:
        raise MethrayError(f"{methylation}: {exc}") from None
    rows, n_imputed = [], 0
    for model in models:
        if model not in cfg.final_models:
            raise MethrayError(f"{run_dir}: model {model!r} was not trained for prediction (final_models: {cfg.final_models})")
        for gene_id in symbols.index:
            path = storage.join(run_dir, "models", model, f"{gene_id}.pkl")
            if not storage.exists(path):
                raise MethrayError(f"{path}: trained model missing (run `methray expression` again to finish)")
            fs, p = storage.filesystem(path)
            with fs.open(p, "rb") as fh:
                gm = pickle.load(fh)
            absent = [pr for pr in gm.probes if pr not in mv.index]
            if absent:
                raise MethrayError(f"{methylation}: {len(absent)} probe(s) of gene {gene_id} missing, e.g. {absent[0]}")
            X = mv.loc[gm.probes].to_numpy(np.float32).T
            n_imputed += int(np.isnan(X).sum())
            rows.append([model, gene_id, symbols[gene_id], *gm.predict(X)])
    table = pd.DataFrame(rows, columns=["model", "gene_id", "symbol", *map(str, mv.columns)])
    with storage.atomic_path(out) as tmp:
        if out.endswith(".parquet"):
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", compression="gzip" if out.endswith(".gz") else None)
    return PredictResult(out, models, len(symbols), mv.shape[1], n_imputed)
