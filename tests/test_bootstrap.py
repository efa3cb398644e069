"""Block bootstrap of seed-mean metrics (``methray compare --seeds``), on real IMR90 betas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import IMR90, head_lines
from methray import bootstrap
from methray.bootstrap import SEED_METRICS, _metrics, _Ranked


@pytest.fixture(scope="module")
def sites() -> pd.DataFrame:
    rows = [line.split("\t") for line in head_lines(IMR90, 3000)]
    meth, unmeth = np.array([int(r[4]) for r in rows]), np.array([int(r[5]) for r in rows])
    df = pd.DataFrame({"chrom": [r[0] for r in rows], "pos": [int(r[1]) - 1 for r in rows], "beta": meth / np.maximum(meth + unmeth, 1)})
    rng = np.random.default_rng(0)
    for k in range(3):  # three "seeds": noisy, rounded (ties) and clipped (many 0 / 1) predictions
        df[f"p{k}"] = np.clip(np.round(df["beta"] + rng.normal(0, 0.25 + 0.05 * k, len(df)), 2), 0, 1)
    return df


def test_block_weights_equal_scikit_learn_on_the_resampled_sites(sites):
    y, p = sites["beta"].to_numpy(), sites["p0"].to_numpy()
    blocks = (sites["pos"].to_numpy() - sites["pos"].min()) // 50_000
    ids, members = np.unique(blocks, return_inverse=True)
    rng = np.random.default_rng(3)
    for _ in range(5):
        drawn = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([np.flatnonzero(members == b) for b in drawn])
        w = np.bincount(drawn, minlength=len(ids)).astype(float)[members]
        fast, slow = _Ranked(y, p).metrics(w, SEED_METRICS), _metrics(y[idx], p[idx], SEED_METRICS)
        for m in SEED_METRICS:
            assert fast[m] == pytest.approx(slow[m], abs=1e-12), m


def test_seed_mean_interval(sites):
    regions = pd.DataFrame({"chrom": ["chr22"], "start": [int(sites["pos"].min())], "end": [int(sites["pos"].max()) + 1], "split": ["test"]})
    preds = [sites.assign(beta_pred=sites[f"p{k}"]) for k in range(3)]
    out = bootstrap.seed_interval_rows(preds, regions, "m", "imr90", block_bp=50_000, n_boot=200).set_index("metric")
    assert list(out.index) == list(SEED_METRICS) and (out["seeds"] == 3).all() and (out["n"] == len(sites)).all()
    singles = [bootstrap.seed_interval_rows([p], regions, "m", "imr90", block_bp=50_000, n_boot=200).set_index("metric") for p in preds]
    for m in SEED_METRICS:
        # the estimate is the mean of the seeds' metrics; the interval holds it and is no wider than the widest seed's
        assert out.loc[m, "estimate"] == pytest.approx(np.mean([s.loc[m, "estimate"] for s in singles]))
        assert out.loc[m, "lo"] <= out.loc[m, "estimate"] <= out.loc[m, "hi"]
        assert out.loc[m, "hi"] - out.loc[m, "lo"] <= max(s.loc[m, "hi"] - s.loc[m, "lo"] for s in singles) * 1.05
    # one seed repeated: the single-seed interval exactly
    same = bootstrap.seed_interval_rows([preds[0]] * 3, regions, "m", "imr90", block_bp=50_000, n_boot=200).set_index("metric")
    pd.testing.assert_series_equal(same["lo"], singles[0]["lo"])
    with pytest.raises(ValueError, match="not at the same sites"):
        bootstrap.seed_interval_rows([preds[0], preds[1].iloc[1:]], regions, "m", "imr90")
