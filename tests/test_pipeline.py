"""End to end on a slice of the real data: prepare -> train (1 epoch, seeds 0 and 1) -> score -> evaluate."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methray.config import load_config
from methray.metrics import COLUMNS, metric_rows
from methray.pipeline import run_pipeline
from methray.tables import read_result

from conftest import slice_config

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def demo_run(ray_session, imr90_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(data=slice_config(out, imr90_slice, train={"seeds": 2}))
    table = run_pipeline(cfg)
    return cfg, table


def test_run_directory_holds_every_output(demo_run):
    cfg, _ = demo_run
    out = cfg.out_dir
    for name in ("config.yaml", "metrics.tsv", "metrics.parquet", "imr90.mrcnn.bedGraph", "imr90.cpg_density.bedGraph",
                 "imr90.composition_gbm.bedGraph", "metric_intervals.tsv", "checkpoint/model.pt", "checkpoint/meta.json", "train_history.tsv", "prepare_report.json", "split_regions.tsv",
                 "seeds/seed1/checkpoint/model.pt", "seeds/seed1/train_history.tsv", "seeds/seed1/predictions/imr90.mrcnn.parquet"):
        assert Path(out, name).exists(), name
    assert not list(Path(out, "seeds").rglob("*.bedGraph"))  # the tracks are the run's checkpoint's (seed 0)
    resolved = load_config(str(Path(out, "config.yaml")))
    assert resolved.reference == cfg.reference and resolved.tissues[0].path == cfg.tissues[0].path


def test_bedgraph_sorted_parseable_and_in_unit_interval(demo_run):
    cfg, _ = demo_run
    path = f"{cfg.out_dir}/imr90.mrcnn.bedGraph"
    with open(path) as fh:
        header = fh.readline()
    assert header.startswith("track type=bedGraph") and 'name="imr90 mrcnn"' in header
    bg = pd.read_csv(path, sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "value"])
    assert len(bg) > 500
    assert (bg["chrom"] == "chr22").all()
    assert (np.diff(bg["start"]) > 0).all()  # sorted, one row per CpG
    assert (bg["end"] - bg["start"] == 1).all()
    assert bg["value"].between(0, 1).all()
    held_out = pd.read_parquet(f"{cfg.out_dir}/predictions/imr90.mrcnn.parquet")
    assert set(held_out["split"]) == {"test"} and len(held_out) == len(bg)


def test_predictions_read_as_one_table(demo_run):
    import duckdb

    from methray import predictions

    cfg, _ = demo_run
    glob = f"{cfg.out_dir}/predictions/*.parquet"
    per_model = duckdb.sql(f"select model, tissue, count(*) n, avg(beta_pred) p from read_parquet('{glob}') group by all order by model").fetchall()
    assert [(m, t) for m, t, _, _ in per_model] == [("composition_gbm", "imr90"), ("cpg_density", "imr90"), ("mrcnn", "imr90")]
    assert per_model[0][2] == per_model[1][2] == per_model[2][2] > 500  # the same held-out CpGs for every model
    rel = duckdb.sql(f"select * from read_parquet('{glob}')")
    assert rel.columns == predictions.COLUMNS
    assert [str(t) for t in rel.types] == ["VARCHAR", "BIGINT", "VARCHAR", "VARCHAR", "FLOAT", "DOUBLE", "BOOLEAN", "VARCHAR"]
    pl = pytest.importorskip("polars")  # not a test extra; checked where installed
    assert pl.read_parquet(glob).columns == predictions.COLUMNS
    both = pd.read_parquet(f"{cfg.out_dir}/predictions")
    assert list(both.columns) == predictions.COLUMNS and both["model"].nunique() == 3


def test_every_seed_trained_on_the_same_sites_and_evaluated(demo_run):
    import torch

    from methray import checkpoint

    cfg, table = demo_run
    first, second = (checkpoint.read_meta(cfg.checkpoint_of(s)) for s in (0, 1))
    assert (first.seed, second.seed) == (0, 1)
    w0, w1 = (torch.load(Path(cfg.checkpoint_of(s), "model.pt"), weights_only=True) for s in (0, 1))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # another seed, another model
    h0, h1 = (pd.read_csv(Path(d, "train_history.tsv"), sep="\t") for d in (cfg.out_dir, cfg.seed_dir(1)))
    assert h0["samples"].tolist() == h1["samples"].tolist()
    p0 = pd.read_parquet(f"{cfg.out_dir}/predictions/imr90.mrcnn.parquet")
    p1 = pd.read_parquet(f"{cfg.out_dir}/seeds/seed1/predictions/imr90.mrcnn.parquet")
    assert p0["pos"].tolist() == p1["pos"].tolist() and not np.allclose(p0["beta_pred"], p1["beta_pred"])
    rows = table[(table["subset"] == "all") & (table["model"] == "mrcnn")]
    assert rows["seed"].tolist() == [0, 1]
    assert rows["auroc"].tolist() == pytest.approx([metric_rows(p, "mrcnn", "imr90")["auroc"].iloc[0] for p in (p0, p1)])
    assert table[table["model"] != "mrcnn"]["seed"].isna().all()


def test_more_seeds_than_trained_or_scored_is_one_error_and_writes_nothing(demo_run):
    from methray.errors import MethrayError
    from methray.pipeline import run_evaluate, run_score

    cfg, _ = demo_run
    more = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seeds": 3})})
    files = sorted(Path(cfg.out_dir).rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in files]
    with pytest.raises(MethrayError, match=r"seeds/seed2/checkpoint: not a methray checkpoint"):
        run_score(more)
    with pytest.raises(MethrayError, match=r"seeds/seed2/predictions/imr90.mrcnn.parquet: no predictions of seed 2"):
        run_evaluate(more)
    assert sorted(Path(cfg.out_dir).rglob("*")) == files and [p.stat().st_mtime_ns for p in files] == stamps


def test_metric_table_columns_present_and_finite(demo_run):
    cfg, table = demo_run
    assert list(table.columns) == COLUMNS + ["seed"]
    assert set(table["model"]) == {"mrcnn", "cpg_density", "composition_gbm"}
    assert set(table["subset"]) == {"all", "cgi", "non_cgi"}
    overall = table[table["subset"] == "all"]
    assert (overall["n_hyper"] + overall["n_mid"] + overall["n_hypo"] <= overall["n"]).all()
    for col in ("n", "rmse", "mae", "pearson_r", "spearman_rho", "accuracy", "auroc", "auprc_unmeth"):
        assert np.isfinite(overall[col].astype(float)).all(), col
    assert (overall["n"] > 500).all()
    disk = pd.read_csv(f"{cfg.out_dir}/metrics.tsv", sep="\t")
    assert disk.shape == table.shape
    history = pd.read_csv(f"{cfg.out_dir}/train_history.tsv", sep="\t")
    assert history["epoch"].tolist() == [1] and np.isfinite(history["val_loss"]).all()


def test_intervals_from_hold_out_blocks_for_the_model_and_both_baselines(demo_run):
    cfg, table = demo_run
    header, intervals = read_result(f"{cfg.out_dir}/metric_intervals.tsv")
    assert "bootstrap" in header[0] and "hold-out blocks" in header[0] and "mrcnn: of the mean over seeds 0, 1" in header[0]
    assert set(intervals["model"]) == {"mrcnn", "cpg_density", "composition_gbm"}
    assert set(intervals[intervals["model"] != "mrcnn"]["metric"]) == {"auroc", "auprc_unmeth", "rmse"}
    assert set(intervals[intervals["model"] == "mrcnn"]["metric"]) == {"auroc", "auprc_unmeth", "rmse", "mae", "pearson_r"}
    overall = table[table["subset"] == "all"].groupby("model").mean(numeric_only=True)  # mrcnn: the mean of its seeds
    for r in intervals.itertuples():
        assert r.estimate == pytest.approx(overall.loc[r.model, r.metric], abs=1e-4)
        assert r.lo <= r.hi and r.n_blocks >= 1


def test_summary_prints_the_model_beside_both_baselines():
    # mrcnn with two seeds (mean ± sd and the interval), the baselines one fit each; real betas.
    from conftest import IMR90, head_lines
    from methray.pipeline import summary

    rows = [line.split("\t") for line in head_lines(IMR90, 2000)]
    df = pd.DataFrame({"beta": [int(r[4]) / max(int(r[4]) + int(r[5]), 1) for r in rows], "in_cpg_island": False})
    rng = np.random.default_rng(0)
    noisy = lambda s: df.assign(beta_pred=np.clip(df["beta"] + rng.normal(0, s, len(df)), 0, 1))  # noqa: E731
    table = pd.concat([metric_rows(noisy(s), m, "imr90").assign(seed=k) for m, s, k in
                       (("mrcnn", 0.2, 0), ("mrcnn", 0.25, 1), ("cpg_density", 0.4, None), ("composition_gbm", 0.3, None))], ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    intervals = pd.DataFrame({"model": ["mrcnn", "cpg_density", "composition_gbm"], "tissue": "imr90", "metric": "auroc",
                              "lo": [0.61, 0.52, 0.55], "hi": [0.72, 0.58, 0.66]})
    lines = summary(table, intervals).splitlines()
    assert "mean ± sd over training seeds" in lines[0]
    assert lines[1].split() == ["model", "tissue", "n", "seeds", "AUROC", "AUPRC-u", "RMSE", "MAE", "r", "acc"]
    assert [line.split()[0] for line in lines[2:]] == ["mrcnn", "cpg_density", "composition_gbm"]
    mrcnn = table[(table["model"] == "mrcnn") & (table["subset"] == "all")]
    fields = lines[2].split()
    assert fields[3:9] == ["2", f"{mrcnn.auroc.mean():.3f}", "±", f"{mrcnn.auroc.std():.3f}", "[0.610,", "0.720]"]
    assert fields[9] == f"{mrcnn.auprc_unmeth.mean():.3f}" and fields[10] == f"{mrcnn.rmse.mean():.3f}"
    gbm = table[(table["model"] == "composition_gbm") & (table["subset"] == "all")].iloc[0]
    assert lines[4].split()[3:7] == ["-", f"{gbm.auroc:.3f}", "[0.550,", "0.660]"]
    assert "seeds" in summary(table).splitlines()[1] and "[" not in summary(table).splitlines()[2]  # without intervals
