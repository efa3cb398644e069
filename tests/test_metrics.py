import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from methray.metrics import COLUMNS, classification_metrics, metric_rows, regression_metrics


def test_regression_metrics_and_groups_on_a_known_case():
    y = np.array([0.95, 1.0, 0.5, 0.45, 0.05, 0.0, 0.7])
    p = np.array([0.85, 1.0, 0.3, 0.45, 0.25, 0.0, 0.7])
    m = regression_metrics(y, p)
    assert m["n"] == 7
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0.04 + 0.04) / 7))
    assert m["mae"] == pytest.approx((0.1 + 0.2 + 0.2) / 7)
    assert m["rmse_hyper"] == pytest.approx(np.sqrt(0.01 / 2))  # y > 0.9: 0.95, 1.0
    assert m["mae_mid"] == pytest.approx(0.1)  # 0.4..0.6: 0.5, 0.45
    assert m["mae_hypo"] == pytest.approx(0.1)  # < 0.1: 0.05, 0.0
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y, p)[0, 1])


def test_classification_at_cutoff_half():
    y = np.array([0.9, 0.8, 0.2, 0.1, 0.6])
    p = np.array([0.7, 0.4, 0.3, 0.6, 0.9])
    m = classification_metrics(y, p)
    # truth: T T F F T; calls: T F F T T -> tp 2, fn 1, tn 1, fp 1
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["auroc"] == pytest.approx(roc_auc_score(y > 0.5, p))


def test_metric_rows_subsets_and_empty_groups():
    df = pd.DataFrame({"beta": [0.95, 0.05, 0.7, 0.2], "beta_pred": [0.9, 0.1, 0.6, 0.3], "in_cpg_island": [False, True, False, True]})
    rows = metric_rows(df, "m", "t")
    assert list(rows.columns) == COLUMNS
    assert rows["subset"].tolist() == ["all", "cgi", "non_cgi"]
    assert rows["n"].tolist() == [4, 2, 2]
    assert rows["n_hyper"].tolist() == [1, 0, 1] and rows["n_hypo"].tolist() == [1, 1, 0] and rows["n_mid"].tolist() == [0, 0, 0]
    cgi = rows.set_index("subset").loc["cgi"]
    assert np.isnan(cgi["rmse_hyper"])  # no hypermethylated site in islands here
    assert np.isnan(cgi["auroc"])  # one class only
