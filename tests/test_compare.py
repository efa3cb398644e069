"""`methray compare` on a tiny budget over a real slice: two non-MRCNN models, two seeds each,
trained with ``train.fit``, reloaded with ``checkpoint.load``, scored with
``score.Predictor``; the comparison table's columns, header, seeds, intervals, shared test
sites and the cross-tissue rows (IMR90-trained models against saliva)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from methray import checkpoint
from methray.budget import Budget
from methray.compare import INTERVAL_METRICS, RUN_COLUMNS, TABLE_METRICS, compare, read_comparison
from methray.config import load_config
from methray.errors import MethrayError
from methray.models.cnn_baseline import CNNBaseline
from methray.predictor import Predictor

from conftest import FASTA, SALIVA, slice_config

pytestmark = pytest.mark.ray

MODELS = ["cnn_baseline", "deepcpg_dna"]
TINY = Budget(name="tiny", epochs=1, max_train_per_model={"deepcpg_dna": 300}, max_train=600, max_val=150, max_eval=400)


SEEDS = 2
BASELINES = ["cpg_density", "composition_gbm"]


@pytest.fixture(scope="module")
def saliva_slice(imr90_slice, tmp_path_factory) -> Path:
    """The real saliva bedGraph rows inside the IMR90 slice (chr22:24.08-24.89 Mb)."""
    df = pd.read_csv(SALIVA, sep="\t", comment="t", header=None)
    df = df[(df[1] >= 24_080_627) & (df[1] < 24_885_234)]
    path = tmp_path_factory.mktemp("saliva") / "saliva_slice.bedGraph"
    df.to_csv(path, sep="\t", header=False, index=False)
    return path


@pytest.fixture(scope="module")
def comparison(ray_session, imr90_slice, saliva_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    tissues = [{"name": "imr90", "path": str(imr90_slice)}, {"name": "saliva", "path": str(saliva_slice), "format": "bedgraph"}]
    cfg = load_config(data=slice_config(out, imr90_slice, tissues=tissues, train={"batch_size": 32}))
    table = compare(cfg, names=MODELS, budget=TINY, seeds=SEEDS)
    return cfg, table


def test_table_columns_rows_seeds_and_budget_header(comparison):
    cfg, table = comparison
    header, disk = read_comparison(cfg.path("comparison.tsv"))
    assert header.startswith("methray compare, imr90, hg19; budget: tiny")
    assert "at most 1 epochs per model" in header and "cnn_baseline 600" in header and "deepcpg_dna 300" in header
    assert "test sites 400" in header and "seeds 0..1" in header
    assert "bootstrap replicates over hold-out blocks" in header and "mean over seeds" in header
    headline = [f"{m}{end}" for m in INTERVAL_METRICS for end in ("", "_sd", "_lo", "_hi")]
    metric_cols = [m if s == "all" else f"{s}_{m}" for s, m in TABLE_METRICS]
    assert list(disk.columns) == RUN_COLUMNS + headline + metric_cols
    assert set(INTERVAL_METRICS) == {"auroc", "auprc_unmeth", "rmse", "mae", "pearson_r"}
    names = MODELS + BASELINES
    assert disk["model"].tolist() == [m for m in names for _ in ("imr90", "saliva")]
    assert disk["tissue"].tolist() == ["imr90", "saliva"] * len(names)
    own = disk[disk["tissue"] == "imr90"].set_index("model")
    assert own["train_sites"].tolist() == [600, 300, 600, 600]
    assert own["seeds"].tolist() == [SEEDS, SEEDS, 1, SEEDS]  # cpg_density: one deterministic fit
    assert (own["n"] == 400).all()  # the same capped test set for every model
    assert own.loc["deepcpg_dna", "window"] == "1001" and own.loc["cnn_baseline", "window"] == "400 excl. CpG"
    for col in headline + ["accuracy", "rmse_hyper", "mae_hyper", "non_cgi_rmse"]:
        assert np.isfinite(own[col]).all(), col
    assert own["rmse"].between(0, 1).all() and (own["rmse_lo"] <= own["rmse_hi"]).all()
    assert own.loc["cpg_density", "auroc_sd"] == 0
    assert own.loc["cnn_baseline", "auroc_sd"] > 0  # two seeds, two different models
    # the table's mean and sd are those of the per-seed tidy rows
    tidy = pd.read_csv(cfg.path("comparison_metrics.tsv"), sep="\t")
    per_seed = tidy[(tidy["model"] == "cnn_baseline") & (tidy["tissue"] == "imr90") & (tidy["subset"] == "all")]
    assert per_seed["seed"].tolist() == [0, 1]
    assert own.loc["cnn_baseline", "auroc"] == pytest.approx(per_seed["auroc"].mean(), abs=1e-4)
    assert own.loc["cnn_baseline", "mae_sd"] == pytest.approx(per_seed["mae"].std(ddof=1), abs=1e-4)
    assert disk.shape == table.shape
    md = Path(cfg.path("comparison.md")).read_text().splitlines()
    assert md[0] == header and md[2].startswith("| model | tissue | window | train_sites | seeds | n | AUROC |")
    assert " ± " in md[4] and "[" in md[4]


def test_every_model_and_seed_scored_on_the_same_held_out_sites(comparison):
    cfg, _ = comparison
    preds = {m: pd.read_parquet(cfg.path("predictions", f"imr90.{m}.parquet")) for m in MODELS + BASELINES}
    ref = preds["cnn_baseline"]
    assert len(ref) == 400 and set(ref["split"]) == {"test"}
    for df in preds.values():
        np.testing.assert_array_equal(df["pos"].to_numpy(), ref["pos"].to_numpy())
        assert df["beta_pred"].between(0, 1).all()
    seeds = [pd.read_parquet(cfg.path("models", "cnn_baseline", f"seed{k}", "predictions", "imr90.cnn_baseline.parquet")) for k in range(SEEDS)]
    np.testing.assert_array_equal(seeds[0]["beta_pred"].to_numpy(), ref["beta_pred"].to_numpy())  # predictions/ holds seed 0
    np.testing.assert_array_equal(seeds[1]["pos"].to_numpy(), ref["pos"].to_numpy())
    assert not np.allclose(seeds[0]["beta_pred"], seeds[1]["beta_pred"])
    tidy = pd.read_csv(cfg.path("comparison_metrics.tsv"), sep="\t")
    assert set(tidy["subset"]) == {"all", "cgi", "non_cgi"}
    assert len(tidy) == 3 * 2 * (len(MODELS) * SEEDS + 1 + SEEDS)  # subsets x tissues x runs


def test_cross_tissue_rows_use_saliva_betas_at_the_saliva_test_sites(comparison):
    cfg, table = comparison
    from methray.sites import read_sites

    saliva = read_sites(cfg.sites_table, tissue="saliva", split="test", columns=["chrom", "pos", "beta"])
    imr90 = pd.read_parquet(cfg.path("models", "cnn_baseline", "seed1", "predictions", "imr90.cnn_baseline.parquet"))
    pred = pd.read_parquet(cfg.path("models", "cnn_baseline", "seed1", "predictions", "saliva.cnn_baseline.parquet"))
    # every saliva test site (the hold-out regions are shared), with saliva's measured beta
    assert sorted(pred["pos"]) == sorted(saliva["pos"]) and len(pred) > 100
    own = pred.merge(saliva.astype({"chrom": str}), on=["chrom", "pos"])
    np.testing.assert_array_equal(own["beta_x"], own["beta_y"])
    shared = pred.merge(imr90, on=["chrom", "pos"], suffixes=("_saliva", "_imr90"))
    assert 20 < len(shared) < len(pred)  # partly the IMR90 test sites: the same prediction there
    np.testing.assert_allclose(shared["beta_pred_saliva"], shared["beta_pred_imr90"], atol=1e-6)
    assert not np.allclose(shared["beta_saliva"], shared["beta_imr90"])
    rows = table.set_index(["model", "tissue"])
    assert rows.loc[("cnn_baseline", "saliva"), "n"] == len(pred)
    assert rows.loc[("composition_gbm", "saliva"), "n"] == len(pred)
    tidy = pd.read_csv(cfg.path("comparison_metrics.tsv"), sep="\t")
    mine = tidy[(tidy["model"] == "cnn_baseline") & (tidy["tissue"] == "saliva") & (tidy["subset"] == "all") & (tidy["seed"] == 1)]
    rmse = np.sqrt(np.mean((pred["beta"] - pred["beta_pred"]) ** 2))
    assert mine["rmse"].item() == pytest.approx(rmse, abs=1e-4)
    assert rows.loc[("cnn_baseline", "saliva"), "rmse"] != pytest.approx(rows.loc[("cnn_baseline", "imr90"), "rmse"])
    _, intervals = read_comparison(cfg.path("comparison_intervals.tsv"))
    assert set(intervals["tissue"]) == {"imr90", "saliva"} and (intervals["lo"] <= intervals["hi"]).all()


def test_checkpoint_reloads_and_predictor_reproduces_the_scores(comparison):
    cfg, _ = comparison
    directory = cfg.path("models", "cnn_baseline", "seed0", "checkpoint")
    model, meta = checkpoint.load(directory)
    assert isinstance(model, CNNBaseline) and not model.training
    assert (meta.model, meta.task, meta.n_outputs, meta.window_length, meta.exclude_cpg) == ("cnn_baseline", "methylation", 1, 400, True)
    assert meta.n_train == 600 and meta.epochs_run == 1 and meta.compare_budget == "tiny" and meta.seed == 0
    history = pd.read_csv(cfg.path("models", "cnn_baseline", "seed0", "train_history.tsv"), sep="\t")
    assert history["epoch"].tolist() == [1] and np.isfinite(history["val_loss"]).all()

    scored = pd.read_parquet(cfg.path("predictions", "imr90.cnn_baseline.parquet")).head(50)
    out = Predictor(directory, str(FASTA))({"chrom": scored["chrom"].to_numpy(), "pos": scored["pos"].to_numpy(), "beta": scored["beta"].to_numpy()})
    np.testing.assert_allclose(out["beta_pred"], scored["beta_pred"].to_numpy(), atol=1e-5)
    assert out["beta_pred"].std() > 0  # depends on the sequence


def test_rerun_reuses_checkpoints_trained_under_the_same_budget(comparison, caplog):
    # Seed 0's checkpoint is reused; seed 1's weights no longer fit the model as built now (a
    # layer changed under the same name), so seed 1 is trained again, to the same weights (the
    # same seed on CPU), and the table is the same.
    cfg, table = comparison
    caplog.set_level(logging.INFO, logger="methray")
    model_pt = [Path(cfg.path("models", "cnn_baseline", f"seed{k}", "checkpoint", "model.pt")) for k in range(SEEDS)]
    before = [p.stat().st_mtime_ns for p in model_pt]
    weights = torch.load(model_pt[1], weights_only=True)
    broken = dict(weights)
    broken.pop(next(iter(broken)))
    torch.save(broken, model_pt[1])
    again = compare(cfg, names=["cnn_baseline"], budget=TINY, seeds=SEEDS)
    assert "compare cnn_baseline seed 0: reusing" in caplog.text and "compare cnn_baseline seed 1: reusing" not in caplog.text
    assert model_pt[0].stat().st_mtime_ns == before[0] and model_pt[1].stat().st_mtime_ns != before[1]
    retrained, _ = checkpoint.load(str(model_pt[1].parent))  # complete again
    assert all(torch.equal(retrained.state_dict()[k], v) for k, v in weights.items())
    first = table.set_index(["model", "tissue"]).loc[("cnn_baseline", "imr90"), "auroc"]
    assert again.set_index(["model", "tissue"]).loc[("cnn_baseline", "imr90"), "auroc"] == pytest.approx(first)


def test_fine_tuning_starts_from_the_other_tissues_checkpoints(comparison, imr90_slice, saliva_slice, tmp_path):
    """Saliva first, on the same hold-out regions, seed 0 from the IMR90 run's weights (a
    learning rate of 1e-9 keeps the fine-tuned weights where they started)."""
    import torch

    cfg, _ = comparison
    tissues = [{"name": "saliva", "path": str(saliva_slice), "format": "bedgraph"}, {"name": "imr90", "path": str(imr90_slice)}]
    tuned = load_config(data=slice_config(tmp_path / "tuned", imr90_slice, tissues=tissues, train={"batch_size": 32, "lr": 1e-9}))
    table = compare(tuned, names=["cnn_baseline"], budget=TINY, seeds=1, init_from=cfg.out_dir)
    assert pd.read_csv(tuned.path("split_regions.tsv"), sep="\t").equals(pd.read_csv(cfg.path("split_regions.tsv"), sep="\t"))
    assert set(table["tissue"]) == {"saliva", "imr90"}
    start = cfg.path("models", "cnn_baseline", "seed0", "checkpoint")
    model, meta = checkpoint.load(tuned.path("models", "cnn_baseline", "seed0", "checkpoint"))
    assert meta.init_from == start and meta.tissue == "saliva"
    init = checkpoint.load(start)[0].state_dict()
    torch.manual_seed(0)
    fresh = CNNBaseline().state_dict()  # where training from random weights starts
    assert max(float((w - init[n]).abs().max()) for n, w in model.state_dict().items()) < 1e-6
    assert sum(float((w - init[n]).norm()) for n, w in fresh.items()) > 1
    with pytest.raises(MethrayError, match="has no mrcnn checkpoint for seed 0"):
        compare(tuned, names=["mrcnn"], budget=TINY, seeds=1, init_from=cfg.out_dir)
    other = load_config(data=slice_config(tmp_path / "other", imr90_slice, split={"n_blocks": 4, "gap_bp": 1001}))
    with pytest.raises(MethrayError, match="other hold-out regions"):
        compare(other, names=["cnn_baseline"], budget=TINY, seeds=1, init_from=cfg.out_dir)
    assert not (tmp_path / "other" / "cpg_table").exists()  # refused before the table was written
    from methray.pipeline import run_prepare

    run_prepare(other)  # a table of its own already there: refused as well
    with pytest.raises(MethrayError, match="other hold-out regions"):
        compare(other, names=["cnn_baseline"], budget=TINY, seeds=1, init_from=cfg.out_dir)
    assert not (tmp_path / "other" / "models").exists()


def test_gap_smaller_than_the_widest_window_is_refused(tmp_path, imr90_slice):
    cfg = load_config(data=slice_config(tmp_path, imr90_slice, split={"gap_bp": 600}))
    with pytest.raises(MethrayError, match=r"gap_bp \(600\) is smaller than the widest window \(1001 bp\)"):
        compare(cfg, names=MODELS, budget=TINY)
    with pytest.raises(MethrayError, match="not a sequence model"):
        compare(cfg, names=["deepmethygene"], budget=TINY)
