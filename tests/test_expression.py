"""methray.expression: M-values, gene selection, folds, models, ledger, the job and predict.

Real data: ../shared/data/tcga_coad_chr21 (TCGA COAD, 38 samples, chr21). The hand-checked
genes below were counted in the files with awk (see each test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methray.errors import MethrayError
from methray.expression.config import load_expression_config
from methray.expression.data import data_folds, load_data, m_values, make_folds
from methray.expression.models import GeneModel, channels, make_estimator
from methray.expression.train import fit_gene

TCGA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_coad_chr21"
pytestmark = pytest.mark.skipif(not TCGA.exists(), reason=f"real data not found at {TCGA}")

INPUTS = {
    "methylation": "methylation_beta.tsv.gz",
    "expression": "expression_log2.tsv.gz",
    "probe_genes": "probe_genes.tsv",
    "genes": "genes_hg19.tsv",
    "samples": "samples.tsv",
}
# C21orf2: 20 probes in probe_genes.tsv, all in the methylation matrix; Ensembl ENSG00000160226.
C21ORF2_PROBES = (
    "cg00314230 cg01512084 cg02513045 cg09985698 cg11023456 cg11105585 cg11706540 cg12947009 cg13637731 cg18027946 "
    "cg18342814 cg22315903 cg23366972 cg23686508 cg23687724 cg23757365 cg24316255 cg24376891 cg24710671 cg25541412"
).split()


def cfg_dict(out_dir=None, **sections) -> dict:
    d = {"data_dir": str(TCGA), "out_dir": str(out_dir or "unused"), "inputs": dict(INPUTS)}
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


@pytest.fixture(scope="module")
def data():
    cfg = load_expression_config(data=cfg_dict())
    return cfg, load_data(cfg)


# ---------------------------------------------------------------- M-values


def test_m_values_transform_and_clipping():
    beta = np.array([0.5, 0.8, 0.2, 0.0, 1.0, np.nan, 0.0005])
    m = m_values(beta, eps=1e-3)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m[:3], [0.0, 2.0, -2.0], atol=1e-6)  # log2(0.8/0.2) = 2
    lim = np.log2(0.999 / 0.001)
    np.testing.assert_allclose(m[3:5], [-lim, lim], rtol=1e-6)  # 0 and 1 clipped to eps, 1 - eps
    assert np.isnan(m[5])
    assert m[6] == pytest.approx(-lim)  # below eps: clipped too
    np.testing.assert_allclose(m_values(np.array([0.0]), eps=0.01), [np.log2(0.01 / 0.99)], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m_values(np.array([0.5, 1.2]))


def test_m_values_of_the_real_matrix(data):
    cfg, d = data
    beta = pd.read_csv(TCGA / "methylation_beta.tsv.gz", sep="\t", index_col=0)
    b = beta.loc["cg00314230", d.samples].to_numpy()
    np.testing.assert_allclose(d.mvalues.loc["cg00314230"].to_numpy(), np.log2(b / (1 - b)), rtol=1e-5)


# ---------------------------------------------------------------- genes


def test_gene_selection_hand_checked(data):
    cfg, d = data
    by_symbol = {g.symbol: g for g in d.genes}
    # 228 annotated symbols; 35 have >= 20 probes, of which C21orf29 and C21orf70 are not in
    # genes_hg19.tsv: 33 genes kept.
    assert d.report["genes annotated (symbols in probe_genes)"] == 228
    assert d.report["dropped: symbol not in the gene table"] == 43
    assert len(d.genes) == d.report["genes kept"] == 33
    assert "C21orf29" not in by_symbol and "C21orf70" not in by_symbol
    g = by_symbol["C21orf2"]
    assert g.gene_id == "ENSG00000160226" and g.n_cpgs == 20
    assert sorted(g.probes) == C21ORF2_PROBES
    X, y = d.gene_matrix(g)
    assert X.shape == (38, 20) and X.dtype == np.float32
    expr = pd.read_csv(TCGA / "expression_log2.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_allclose(y, expr.loc["ENSG00000160226", d.samples].to_numpy())
    assert by_symbol["COL18A1"].n_cpgs == 82 and by_symbol["PFKL"].gene_id == "ENSG00000141959"
    assert "DSCR3" not in by_symbol  # 19 probes


def test_min_cpgs_lower_clamps_channels():
    cfg = load_expression_config(data=cfg_dict(genes={"min_cpgs": 19, "include": ["DSCR3", "C21orf2"]}))
    d = load_data(cfg)
    n = {g.symbol: g.n_cpgs for g in d.genes}
    assert n == {"DSCR3": 19, "C21orf2": 20}
    assert d.report["genes kept with clamped deepmethygene channels (n < 20)"] == 1
    assert channels(19) == (1, 1) and channels(20) == (2, 1)


@pytest.mark.parametrize("n, expected", [(1, (1, 1)), (9, (1, 1)), (19, (1, 1)), (20, (2, 1)), (45, (4, 2)),
                                         (100, (10, 5)), (640, (64, 32)), (2000, (64, 32))])
def test_channel_counts(n, expected):
    assert channels(n) == expected


# ---------------------------------------------------------------- folds and leakage


def test_folds_keep_samples_and_patients_apart(data):
    cfg, d = data
    folds, groups = data_folds(cfg, d)
    assert sorted(np.unique(folds)) == list(range(5)) and len(folds) == 38
    patients = d.sheet["patient"].to_numpy()
    for k in range(5):
        train, test = set(np.array(d.samples)[folds != k]), set(np.array(d.samples)[folds == k])
        assert not train & test and len(train | test) == 38
        assert not set(patients[folds != k]) & set(patients[folds == k])  # tumour and normal together
    again, _ = data_folds(cfg, d)
    np.testing.assert_array_equal(folds, again)  # the same folds for every gene and model
    plain = make_folds(38, 5, seed=0)
    assert np.bincount(plain).tolist() == [8, 8, 8, 7, 7]


def test_standardisation_on_training_only_and_no_target_leak(data):
    cfg, d = data
    folds, groups = data_folds(cfg, d)
    g = next(g for g in d.genes if g.symbol == "PFKL")
    X, y = d.gene_matrix(g)
    train = folds != 0
    gm = GeneModel(make_estimator("svr", cfg, 0, groups[train]), g.probes).fit(X[train], y[train], groups[train])
    np.testing.assert_allclose(gm.scaler_.mean_, X[train].mean(axis=0), rtol=1e-5)
    assert not np.allclose(gm.scaler_.mean_, X.mean(axis=0), rtol=1e-5)
    assert gm.y_mean_ == pytest.approx(y[train].mean())
    # Changing the held-out samples' expression cannot change their predictions.
    y2 = y.copy()
    y2[folds == 0] += 5.0
    for model in ("elasticnet", "svr", "random_forest", "mean"):
        a, _ = fit_gene(model, X, y, folds, groups, cfg.model_copy(update={"random_forest": cfg.random_forest.model_copy(update={"n_estimators": 20})}), g.gene_id, g.probes)
        b, _ = fit_gene(model, X, y2, folds, groups, cfg.model_copy(update={"random_forest": cfg.random_forest.model_copy(update={"n_estimators": 20})}), g.gene_id, g.probes)
        np.testing.assert_allclose(np.array(a["pred"])[folds == 0], np.array(b["pred"])[folds == 0], err_msg=model)
        assert not np.allclose(np.array(a["pred"])[folds == 1], np.array(b["pred"])[folds == 1]), model


def test_missing_values_imputed_with_training_mean():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    X[0, 1] = np.nan
    y = X[:, 0] * 2 + 1
    gm = GeneModel(make_estimator("mean", load_expression_config(data=cfg_dict()), 0, np.arange(12))).fit(X, y)
    assert gm.scaler_.mean_[1] == pytest.approx(np.nanmean(X[:, 1]))
    Z = gm.transform(np.array([[0.0, np.nan, 0.0]], dtype=np.float32))
    assert Z[0, 1] == 0.0  # the training mean, standardised
    assert np.isfinite(gm.predict(X)).all()


def test_drop_probe_rule(tmp_path):
    beta = pd.read_csv(TCGA / "methylation_beta.tsv.gz", sep="\t", index_col=0)
    beta.loc["cg00314230", beta.columns[3]] = np.nan  # one C21orf2 probe loses a value
    beta.to_csv(tmp_path / "beta.tsv", sep="\t")
    inputs = {**{k: str(TCGA / v) for k, v in INPUTS.items()}, "methylation": str(tmp_path / "beta.tsv")}
    d = load_data(load_expression_config(data=cfg_dict(inputs=inputs, features={"missing": "drop_probe"})))
    assert d.report["probes dropped: missing values (features.missing=drop_probe)"] == 1
    assert "C21orf2" not in {g.symbol for g in d.genes}  # 19 probes left
    d = load_data(load_expression_config(data=cfg_dict(inputs=inputs)))  # impute_train_mean keeps it
    assert "C21orf2" in {g.symbol for g in d.genes} and d.report["probes with missing values"] == 1


def test_deepmethygene_early_stopping_and_seed(data):
    cfg, d = data
    g = next(g for g in d.genes if g.symbol == "C21orf2")
    X, y = d.gene_matrix(g)
    folds, groups = data_folds(cfg, d)
    small = cfg.model_copy(update={"deepmethygene": cfg.deepmethygene.model_copy(update={"max_epochs": 40, "patience": 5})})
    a, fa = fit_gene("deepmethygene", X, y, folds, groups, small, g.gene_id, g.probes, final=True)
    b, _ = fit_gene("deepmethygene", X, y, folds, groups, small, g.gene_id, g.probes)
    assert a["pred"] == b["pred"] and a["seeds"] == b["seeds"]  # seeded: reproducible
    assert all(1 <= e <= 40 for e in a["epochs"])
    assert fa.estimator.best_epoch_ <= fa.estimator.epochs_ and fa.estimator.net_.channels == (2, 1)


# ---------------------------------------------------------------- the job on Ray


@pytest.mark.ray
def test_job_end_to_end_ledger_and_predict(tmp_path, ray_session, capsys):
    from methray.cli import main
    from methray.expression.job import run_expression

    genes = ["C21orf2", "PFKL", "COL18A1"]
    base = cfg_dict(tmp_path / "run", genes={"include": genes}, deepmethygene={"max_epochs": 8, "patience": 3},
                    random_forest={"n_estimators": 20}, elasticnet={"l1_ratio": [0.5, 1.0], "n_alphas": 10},
                    compute={"genes_per_task": 2, "cpus_per_task": 0.5})
    cfg = load_expression_config(data=base)
    r = run_expression(cfg)
    out = tmp_path / "run"
    assert r.stats.units_total == 3 * 5 * 5 and r.stats.units_run == 75 and r.stats.tasks == 5 * 2
    for f in ("genes.tsv", "genes.parquet", "summary.tsv", "figure.png", "predictions.parquet", "folds.tsv", "selection.tsv", "config.yaml"):
        assert (out / f).stat().st_size > 0, f
    g = pd.read_parquet(out / "genes.parquet")
    assert len(g) == 15 and set(g["symbol"]) == set(genes)
    assert (g.loc[g["model"] == "mean", [f"r2_fold{k}" for k in range(1, 6)]] <= 1e-12).all().all()  # mean of training: R^2 <= 0
    assert g["r2_mean"].notna().all() and g["rmse_mean"].gt(0).all()
    s = pd.read_csv(out / "summary.tsv", sep="\t")
    assert list(s["model"]) == ["deepmethygene", "elasticnet", "random_forest", "svr", "mean"]
    assert s["wilcoxon_p"].iloc[1:].between(0, 1).all()
    p = pd.read_parquet(out / "predictions.parquet")
    assert len(p) == 15 * 38 and p["pred"].notna().all()

    # Resume: nothing to do; then one lost record reruns just that gene's folds of that model.
    assert run_expression(cfg).stats.units_run == 0
    rec = next((out / "ledger").glob("svr-*/ENSG00000160226.json"))
    rec.unlink()
    again = run_expression(cfg)
    assert again.stats.units_run == 5 and again.stats.units_before == 70
    # A changed setting of one model reruns that model only.
    cfg2 = load_expression_config(data={**base, "svr": {"C": 2.0}})
    assert run_expression(cfg2).stats.units_run == 15

    # Predict with the saved DeepMethyGene models, on the training matrix.
    pred_out = tmp_path / "pred.tsv"
    main(["expression-predict", "--run", str(out), "--methylation", str(TCGA / "methylation_beta.tsv.gz"), "--out", str(pred_out)])
    t = pd.read_csv(pred_out, sep="\t")
    assert t.shape == (3, 3 + 38) and set(t["symbol"]) == set(genes) and set(t["model"]) == {"deepmethygene"}
    assert t.iloc[:, 3:].notna().all().all()
    import pickle

    gm = pickle.loads((out / "models" / "deepmethygene" / "ENSG00000160226.pkl").read_bytes())
    d = load_data(cfg)
    X, _ = d.gene_matrix(next(x for x in d.genes if x.symbol == "C21orf2"))
    np.testing.assert_allclose(t.loc[t["gene_id"] == "ENSG00000160226"].iloc[0, 3:].to_numpy(float), gm.predict(X), rtol=1e-5)

    # A matrix without the models' probes: one error line, exit 2, nothing written.
    small = tmp_path / "small.tsv"
    pd.read_csv(TCGA / "methylation_beta.tsv.gz", sep="\t", index_col=0).head(50).to_csv(small, sep="\t")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["expression-predict", "--run", str(out), "--methylation", str(small), "--out", str(tmp_path / "bad.tsv")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("methray: error: ") and "missing" in err[0]
    assert not (tmp_path / "bad.tsv").exists()


def test_config_errors(tmp_path):
    with pytest.raises(MethrayError, match="unknown_key"):
        load_expression_config(data={**cfg_dict(), "unknown_key": 1})
    with pytest.raises(MethrayError, match="unknown model"):
        load_expression_config(data={**cfg_dict(), "models": ["deepmethygene", "xgboost"]})
    with pytest.raises(MethrayError, match="final_models"):
        load_expression_config(data={**cfg_dict(), "models": ["mean"]})
    bad = cfg_dict(tmp_path / "x", inputs={"expression": str(tmp_path / "none.tsv")})
    with pytest.raises(MethrayError, match="not found"):
        load_data(load_expression_config(data=bad))
    assert not (tmp_path / "x").exists()


def test_shipped_config_loads(monkeypatch):
    from methray.config import packaged_config

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cfg = load_expression_config(str(packaged_config("expression")))
    assert cfg.genes.min_cpgs == 20 and cfg.cv.n_folds == 5
    assert (cfg.deepmethygene.lr, cfg.deepmethygene.max_epochs, cfg.deepmethygene.patience) == (1e-3, 700, 90)
    assert Path(cfg.inputs.methylation).exists()
