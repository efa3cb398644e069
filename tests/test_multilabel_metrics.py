import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from methray.errors import MethrayError
from methray.metrics_multilabel import multilabel_metrics


def _case():
    # 6 windows, 4 classes: A (2 pos), B (3 pos), C (no positives), D (no negatives)
    y = np.array([
        [1, 0, 0, 1],
        [0, 1, 0, 1],
        [1, 1, 0, 1],
        [0, 0, 0, 1],
        [0, 1, 0, 1],
        [0, 0, 0, 1],
    ], dtype=np.uint8)
    s = np.array([
        [0.9, 0.1, 0.5, 0.2],
        [0.8, 0.7, 0.1, 0.3],
        [0.4, 0.6, 0.2, 0.9],
        [0.3, 0.2, 0.3, 0.1],
        [0.2, 0.8, 0.4, 0.5],
        [0.1, 0.3, 0.6, 0.4],
    ])
    return y, s


def test_hand_computed_values():
    y, s = _case()
    df = multilabel_metrics(y, s, classes=["A", "B", "C", "D"]).set_index("class")
    # A: positives scored 0.9, 0.4; negatives 0.8, 0.3, 0.2, 0.1.
    # AUROC = pairs (pos > neg) / 8 = (4 + 3) / 8. AP: ranks 0.9 (P=1/1), 0.8, 0.4 (P=2/3):
    # AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert df.loc["A", "auroc"] == pytest.approx(7 / 8)
    assert df.loc["A", "auprc"] == pytest.approx(5 / 6)
    # B: positives 0.7, 0.6, 0.8 vs negatives 0.1, 0.2, 0.3: perfectly separated.
    assert df.loc["B", "auroc"] == pytest.approx(1.0)
    assert df.loc["B", "auprc"] == pytest.approx(1.0)
    for k, c in enumerate("AB"):
        assert df.loc[c, "auroc"] == pytest.approx(roc_auc_score(y[:, k], s[:, k]))
        assert df.loc[c, "auprc"] == pytest.approx(average_precision_score(y[:, k], s[:, k]))
    # C has no positives, D no negatives: NaN, not evaluable, excluded from the means
    for c in "CD":
        assert np.isnan(df.loc[c, "auroc"]) and np.isnan(df.loc[c, "auprc"])
        assert df.loc[c, "n_classes"] == 0
    assert df.loc["C", "n_pos"] == 0 and df.loc["D", "n_pos"] == 6
    assert (df["n"] == 6).all()
    mean = df.loc["mean"]
    assert mean["auroc"] == pytest.approx((7 / 8 + 1) / 2)
    assert mean["auprc"] == pytest.approx((5 / 6 + 1) / 2)
    assert mean["n_classes"] == 2 and mean["n_pos"] == 5
    out = multilabel_metrics(y, s)
    assert out.attrs == {"n_evaluable": 2, "n_skipped": 2}
    assert list(out.columns) == ["class", "n", "n_pos", "auroc", "auprc", "n_classes"]
    assert list(out["class"]) == ["0", "1", "2", "3", "mean"]


def test_matches_sklearn_on_random_case():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 5)) < 0.2).astype(np.uint8)
    s = rng.random((200, 5)) + 0.5 * y
    df = multilabel_metrics(y, s)
    ref_roc = [roc_auc_score(y[:, k], s[:, k]) for k in range(5)]
    ref_ap = [average_precision_score(y[:, k], s[:, k]) for k in range(5)]
    np.testing.assert_allclose(df["auroc"].to_numpy()[:5], ref_roc)
    np.testing.assert_allclose(df["auprc"].to_numpy()[:5], ref_ap)
    assert df["auprc"].iloc[-1] == pytest.approx(np.mean(ref_ap))


def test_no_evaluable_class_gives_nan_mean():
    df = multilabel_metrics(np.zeros((4, 2)), np.ones((4, 2)))
    assert np.isnan(df["auprc"]).all() and df.attrs["n_skipped"] == 2


def test_bad_input():
    with pytest.raises(MethrayError, match="same"):
        multilabel_metrics(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(MethrayError, match="0 and 1"):
        multilabel_metrics(np.full((2, 1), 2), np.zeros((2, 1)))
    with pytest.raises(MethrayError, match="NaN"):
        multilabel_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(MethrayError, match="class names"):
        multilabel_metrics(np.array([0, 1]), np.array([0.1, 0.2]), classes=["a", "b"])
