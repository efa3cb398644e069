"""`methray compare` on a tiny budget over a real slice: two non-MRCNN models trained with
``train.fit``, reloaded with ``checkpoint.load``, scored with ``score.Predictor``; the
comparison table's columns, header and shared test sites."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from methray import checkpoint
from methray.budget import Budget
from methray.compare import INTERVAL_METRICS, TABLE_METRICS, compare, read_comparison
from methray.config import load_config
from methray.errors import MethrayError
from methray.models.cnn_baseline import CNNBaseline
from methray.predictor import Predictor

from conftest import FASTA, slice_config

pytestmark = pytest.mark.ray

MODELS = ["cnn_baseline", "deepcpg_dna"]
TINY = Budget(name="tiny", epochs=1, max_train_per_model={"deepcpg_dna": 300}, max_train=600, max_val=150, max_eval=400)


@pytest.fixture(scope="module")
def comparison(ray_session, imr90_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    cfg = load_config(data=slice_config(out, imr90_slice, train={"batch_size": 32}))
    table = compare(cfg, names=MODELS, budget=TINY)
    return cfg, table


def test_table_columns_rows_and_budget_header(comparison):
    cfg, table = comparison
    header, disk = read_comparison(cfg.path("comparison.tsv"))
    assert header.startswith("methray compare, imr90, hg19; budget: tiny")
    assert "at most 1 epochs per model" in header and "cnn_baseline 600" in header and "deepcpg_dna 300" in header
    assert "test sites 400" in header
    metric_cols = [m if s == "all" else f"{s}_{m}" for s, m in TABLE_METRICS]
    interval_cols = [f"{m}_{end}" for m in INTERVAL_METRICS for end in ("lo", "hi")]
    assert list(disk.columns) == ["model", "window", "parameters", "train_sites", "epochs", "train_s", "score_s"] + metric_cols + interval_cols
    assert "bootstrap replicates over hold-out blocks" in header
    assert {"auroc", "accuracy", "rmse_hyper", "mae_mid", "rmse_hypo", "cgi_auroc", "non_cgi_rmse"} <= set(disk.columns)
    assert disk["model"].tolist() == MODELS + ["cpg_density", "composition_gbm"]
    assert disk["train_sites"].tolist() == [600, 300, 600, 600]
    assert (disk["n"] == 400).all()  # the same capped test set for every model
    assert disk.loc[disk["model"] == "deepcpg_dna", "window"].item() == "1001"
    assert disk.loc[disk["model"] == "cnn_baseline", "window"].item() == "400 excl. CpG"
    for col in ("auroc", "auprc_unmeth", "accuracy", "rmse", "mae", "rmse_hyper", "mae_hyper", "non_cgi_rmse", "auroc_lo", "rmse_hi"):
        assert np.isfinite(disk[col]).all(), col
    assert disk["rmse"].between(0, 1).all()
    assert disk.shape == table.shape
    md = Path(cfg.path("comparison.md")).read_text().splitlines()
    assert md[0] == header and md[2].startswith("| model | window | parameters |")
    assert sum(line.startswith("| ") for line in md) == 1 + len(MODELS) + 2


def test_every_model_scored_on_the_same_held_out_sites(comparison):
    cfg, _ = comparison
    preds = {m: pd.read_parquet(cfg.path("predictions", f"imr90.{m}.parquet")) for m in MODELS + ["cpg_density", "composition_gbm"]}
    ref = preds["cnn_baseline"]
    assert len(ref) == 400 and set(ref["split"]) == {"test"}
    for df in preds.values():
        np.testing.assert_array_equal(df["pos"].to_numpy(), ref["pos"].to_numpy())
        assert df["beta_pred"].between(0, 1).all()
    tidy = pd.read_csv(cfg.path("comparison_metrics.tsv"), sep="\t")
    assert set(tidy["subset"]) == {"all", "cgi", "non_cgi"} and len(tidy) == 3 * 4


def test_checkpoint_reloads_and_predictor_reproduces_the_scores(comparison):
    cfg, _ = comparison
    directory = cfg.path("models", "cnn_baseline", "checkpoint")
    model, meta = checkpoint.load(directory)
    assert isinstance(model, CNNBaseline) and not model.training
    assert (meta.model, meta.task, meta.n_outputs, meta.window_length, meta.exclude_cpg) == ("cnn_baseline", "methylation", 1, 400, True)
    assert meta.n_train == 600 and meta.epochs_run == 1 and meta.compare_budget == "tiny"
    history = pd.read_csv(cfg.path("models", "cnn_baseline", "train_history.tsv"), sep="\t")
    assert history["epoch"].tolist() == [1] and np.isfinite(history["val_loss"]).all()

    scored = pd.read_parquet(cfg.path("predictions", "imr90.cnn_baseline.parquet")).head(50)
    out = Predictor(directory, str(FASTA))({"chrom": scored["chrom"].to_numpy(), "pos": scored["pos"].to_numpy(), "beta": scored["beta"].to_numpy()})
    np.testing.assert_allclose(out["beta_pred"], scored["beta_pred"].to_numpy(), atol=1e-5)
    assert out["beta_pred"].std() > 0  # depends on the sequence


def test_rerun_reuses_checkpoints_trained_under_the_same_budget(comparison, caplog):
    cfg, table = comparison
    caplog.set_level(logging.INFO, logger="methray")
    before = Path(cfg.path("models", "deepcpg_dna", "checkpoint", "model.pt")).stat().st_mtime_ns
    again = compare(cfg, names=["deepcpg_dna"], budget=TINY)
    assert "compare deepcpg_dna: reusing" in caplog.text
    assert Path(cfg.path("models", "deepcpg_dna", "checkpoint", "model.pt")).stat().st_mtime_ns == before
    first = table.set_index("model").loc["deepcpg_dna", "auroc"]
    assert again.set_index("model").loc["deepcpg_dna", "auroc"] == pytest.approx(first)


def test_gap_smaller_than_the_widest_window_is_refused(tmp_path, imr90_slice):
    cfg = load_config(data=slice_config(tmp_path, imr90_slice, split={"gap_bp": 600}))
    with pytest.raises(MethrayError, match=r"gap_bp \(600\) is smaller than the widest window \(1001 bp\)"):
        compare(cfg, names=MODELS, budget=TINY)
    with pytest.raises(MethrayError, match="not a sequence model"):
        compare(cfg, names=["deepmethygene"], budget=TINY)
