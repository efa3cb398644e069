"""The composition_gbm baseline, its reference-only features, AUPRC of the unmethylated
class and the block bootstrap.

Features are checked against a direct per-site computation on the chr22 sequence (pyfaidx
strings, Python counting); the baseline is fitted on prepared real IMR90 sites.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyfaidx
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from methray import baseline, bootstrap
from methray.composition import composition_features, feature_names, kmer_names
from methray.config import load_config
from methray.io.bed import read_bed
from methray.metrics import auprc_unmethylated, metric_rows
from methray.pipeline import run_prepare
from methray.run import start_run
from methray.sites import read_sites

from conftest import FASTA, ISLANDS, slice_config

# Real CpGs of chr22 (0-based C): in a CpG island (PRAME region), in a CpG-poor stretch, and
# 120 bp from the first sequenced base of chr22 (its 100 kb window is mostly N).
CHR22 = pyfaidx.Fasta(str(FASTA), as_raw=True)["chr22"]


def _cpgs_near(start: int, n: int) -> list[int]:
    seq = CHR22[start : start + 5000].upper()
    return [start + i for i in range(len(seq) - 1) if seq[i : i + 2] == "CG"][:n]


def _first_base() -> int:
    for start in range(0, len(CHR22), 1_000_000):
        chunk = CHR22[start : start + 1_000_000].upper()
        if chunk.lstrip("N"):
            return start + len(chunk) - len(chunk.lstrip("N"))
    raise AssertionError("chr22 is all N")


@pytest.fixture(scope="module")
def positions() -> list[int]:
    islands = read_bed(str(ISLANDS))
    island = islands[islands["chrom"] == "chr22"].iloc[40]
    first = _first_base()
    near_start = [p for p in _cpgs_near(first, 50) if p - first >= 100][:1]
    return _cpgs_near(int(island["start"]), 2) + _cpgs_near(30_000_000, 2) + near_start


def _direct(pos: int, width: int) -> dict[str, float]:
    lo, hi = max(pos - width // 2, 0), min(pos - width // 2 + width, len(CHR22))
    seq = CHR22[lo:hi].upper()
    called = sum(seq.count(b) for b in "ACGT")
    c, g, cpg = seq.count("C"), seq.count("G"), seq.count("CG")
    return {"gc": (c + g) / called, "cpg_oe": cpg * called / (c * g), "cpg": 100 * cpg / called}


def test_features_match_a_direct_per_site_computation(positions):
    feats = composition_features(pd.DataFrame({"chrom": "chr22", "pos": positions}), str(FASTA), str(ISLANDS))
    assert list(feats.columns) == feature_names() and len(feats) == len(positions)
    for i, pos in enumerate(positions):
        row = feats.iloc[i]
        for width in (100, 1_000, 100_000):
            want = _direct(pos, width)
            for name, value in want.items():
                assert row[f"{name}_{width}"] == pytest.approx(value, rel=1e-5), (pos, name, width)
        window = CHR22[pos - 200 : pos + 200].upper()
        for kmer in ("A", "CG", "TTT", "ACGT", "GGCC"):
            count = sum(window[j : j + len(kmer)] == kmer for j in range(len(window) - len(kmer) + 1))
            assert row[f"k_{kmer}"] == count, (pos, kmer)
        called_2mers = sum(set(window[j : j + 2]) <= set("ACGT") for j in range(len(window) - 1))
        assert sum(row[f"k_{''.join(t)}"] for t in itertools.product("ACGT", repeat=2)) == called_2mers
        left, right = CHR22[pos - 1].upper(), CHR22[pos + 2].upper()
        assert row["flank_w"] == (left in "AT") + (right in "AT")
        assert row[f"flank_m1_{left}"] == 1 and row[f"flank_p2_{right}"] == 1
    # the island CpGs are inside (distance 0), the CpG-poor ones are not
    assert feats["in_cpg_island"].tolist()[:2] == [1, 1] and feats["island_distance"].iloc[0] == 0
    assert (feats["island_distance"].iloc[2:4] > 0).all()
    # near the first sequenced base the 100 kb window is mostly N: fractions use called bases only
    assert feats["gc_100000"].iloc[-1] == pytest.approx(_direct(positions[-1], 100_000)["gc"], rel=1e-5)
    assert len(kmer_names()) == 4 + 16 + 64 + 256


def test_island_distance_is_the_gap_to_the_nearest_island(positions):
    islands = read_bed(str(ISLANDS))
    isl = islands[islands["chrom"] == "chr22"]
    pos = positions[2]
    want = min(max(s - pos, pos - (e - 1), 0) for s, e in zip(isl["start"], isl["end"]))
    got = composition_features(pd.DataFrame({"chrom": ["chr22"], "pos": [pos]}), str(FASTA), str(ISLANDS))["island_distance"].item()
    assert got == want > 0


@pytest.fixture(scope="module")
def slice_sites(imr90_slice, tmp_path_factory):
    cfg = load_config(data=slice_config(tmp_path_factory.mktemp("gbm"), imr90_slice))
    start_run(cfg, with_ray=False)
    run_prepare(cfg)
    return cfg, {s: read_sites(cfg.sites_table, split=s) for s in ("train", "val", "test")}


def test_gbm_is_fitted_on_training_sites_only(slice_sites, monkeypatch):
    cfg, sites = slice_sites
    fitted = []
    real_fit = HistGradientBoostingRegressor.fit
    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", lambda self, x, y, **kw: fitted.append((x, y)) or real_fit(self, x, y, **kw))
    # test betas hidden: a model that used them would fail on NaN targets
    test = sites["test"].assign(beta=np.nan)
    pred = baseline.fit_predict_gbm(sites["train"], sites["val"], test, cfg.reference, cfg.cpg_islands, seed=0)
    train_x = composition_features(sites["train"], cfg.reference, cfg.cpg_islands).to_numpy()
    assert len(fitted) == len(baseline.GBM_GRID)
    for x, y in fitted:
        np.testing.assert_array_equal(np.asarray(x), train_x)
        np.testing.assert_array_equal(y, sites["train"]["beta"].to_numpy())
    assert pred.shape == (len(test),) and np.isfinite(pred).all() and ((pred >= 0) & (pred <= 1)).all()
    # same seed, same predictions
    again = baseline.fit_predict_gbm(sites["train"], sites["val"], test, cfg.reference, cfg.cpg_islands, seed=0)
    np.testing.assert_array_equal(pred, again)
    # it learns something real: better than the linear CpG-density baseline's training-set mean
    scored = sites["test"].assign(beta_pred=pred)
    assert metric_rows(scored, baseline.GBM_NAME, "imr90").iloc[0]["rmse"] < np.sqrt(np.mean((sites["test"]["beta"] - sites["train"]["beta"].mean()) ** 2))


def test_auprc_of_the_unmethylated_class_on_a_hand_made_case():
    y = np.array([0.1, 0.2, 0.8, 0.9])
    p = np.array([0.3, 0.6, 0.4, 0.9])
    # positives (beta <= 0.5): sites 0, 1; scores 1 - p = 0.7, 0.4, 0.6, 0.1
    # ranked: pos (P 1, R 1/2), neg, pos (P 2/3, R 1), neg -> AP = 1/2 * 1 + 1/2 * 2/3
    assert auprc_unmethylated(y, p) == pytest.approx(0.5 + 1 / 3)
    assert np.isnan(auprc_unmethylated(np.array([0.9, 0.8]), np.array([0.1, 0.2])))
    rows = metric_rows(pd.DataFrame({"beta": y, "beta_pred": p, "in_cpg_island": [True, False, False, False]}), "m", "t")
    assert rows.iloc[0]["auprc_unmeth"] == pytest.approx(0.5 + 1 / 3)


def test_hold_out_blocks_cut_the_test_regions():
    regions = pd.DataFrame({"chrom": ["chr22"] * 3, "start": [0, 1000, 2500], "end": [1000, 2500, 3000], "split": ["train", "test", "test"]})
    blocks = bootstrap.hold_out_blocks(np.array(["chr22"] * 5), np.array([10, 1000, 1999, 2000, 2600]), regions, block_bp=1000)
    assert blocks.tolist() == [-1, 0, 0, 1, 2]


def test_block_bootstrap_resamples_blocks_not_sites():
    # two blocks of 500 sites: one predicted exactly, one off by 0.5 everywhere
    y = np.tile([0.2, 0.9], 500)
    p = np.concatenate([y[:500], y[500:] + np.where(y[500:] > 0.5, -0.5, 0.5)])
    blocks = np.repeat([0, 1], 500)
    by_block = bootstrap.block_bootstrap(y, p, blocks, n_boot=200, seed=1).set_index("metric")
    # replicates are {0,0}, {0,1} or {1,1}: RMSE 0, 0.354 or 0.5 and nothing in between
    assert by_block.loc["rmse", "estimate"] == pytest.approx(np.sqrt(0.125))
    assert by_block.loc["rmse", "lo"] == pytest.approx(0.0) and by_block.loc["rmse", "hi"] == pytest.approx(0.5)
    assert by_block.loc["rmse", "n_blocks"] == 2
    by_site = bootstrap.block_bootstrap(y, p, np.arange(len(y)), n_boot=200, seed=1).set_index("metric")
    assert by_site.loc["rmse", "hi"] - by_site.loc["rmse", "lo"] < 0.05  # sites as units: far too narrow
    again = bootstrap.block_bootstrap(y, p, blocks, n_boot=200, seed=1)
    pd.testing.assert_frame_equal(by_block.reset_index(), again)
