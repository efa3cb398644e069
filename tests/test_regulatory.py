"""Regulatory-element task: window encoding, the split actually used for training, RC averaging,
interval bedGraphs and a tiny end-to-end run on real chr22 labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfaidx
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from methray import models, tracks
from methray.errors import MethrayError
from methray.metrics_multilabel import multilabel_metrics
from methray.predictor import rc_average_probs
from methray.regulatory.config import load_regulatory_config
from methray.budget import cap_rows
from methray.regulatory.data import load_split_labels
from methray.regulatory.job import run_regulatory
from methray.regulatory.labels import make_labels
from methray.regulatory.tracks import scan_windows
from methray.augment import reverse_complement
from methray.windows import encode_intervals

from conftest import DATA, FASTA


def _config(out, **extra) -> dict:
    cfg = {
        "data_dir": str(DATA),
        "out_dir": str(out),
        "reference": "chr22.fa",
        "labels": {"peaks": {"CTCF": "ctcf_gm12878.narrowPeak"}, "sites": ["tf_sites.bed"], "negative_fraction": 0.25,
                   "classes": ["CTCF", "WHSC1", "ZNF436", "ZNF768"]},
        "split": {"inside_windows": 60},
        "budget": {"max_train_windows": 300, "max_val_windows": 60, "max_eval_windows": 80, "note": "test"},
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def test_encode_intervals_matches_pyfaidx():
    fa = pyfaidx.Fasta(str(FASTA), as_raw=True)
    size = len(fa["chr22"])
    # real sequence, soft-masked repeats, an N-rich stretch, and a window running past the end
    starts = np.array([17_443_628, 24_100_000, 30_000_300, 16_000_000, size - 600])
    batch = {"chrom": np.array(["chr22"] * 5), "start": starts, "end": starts + 1000,
             "labels": np.eye(5, 3, dtype=np.uint8), "extra": np.arange(5)}
    out = encode_intervals(batch, str(FASTA))
    assert out["x"].shape == (5, 1000, 4) and out["x"].dtype == np.uint8
    assert out["y"].dtype == np.float32 and out["y"].shape == (5, 3) and "labels" not in out
    np.testing.assert_array_equal(out["extra"], np.arange(5))
    for i, s in enumerate(starts):
        seq = fa["chr22"][int(s):int(s) + 1000].upper()
        seq = seq + "N" * (1000 - len(seq))
        expect = np.array([[b == c for c in "ACGT"] for b in seq], dtype=np.uint8)
        np.testing.assert_array_equal(out["x"][i], expect, err_msg=f"window {s}")
    assert out["x"][3].sum() < 1000 and out["x"][4][600:].sum() == 0  # N rows and past-the-end rows are zero
    with pytest.raises(ValueError, match="different lengths"):
        encode_intervals({"chrom": np.array(["chr22"] * 2), "start": np.array([0, 10]), "end": np.array([100, 20])}, str(FASTA))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    cfg = load_regulatory_config(data=_config(tmp_path_factory.mktemp("reg_labels")))
    make_labels(cfg, 300)
    return cfg


def test_training_windows_do_not_overlap_test_windows(labelled):
    cfg = labelled
    w, y, classes = load_split_labels(cfg, 300)
    assert classes == ["CTCF", "WHSC1", "ZNF436", "ZNF768"] and y.shape == (len(w), 4)
    split = w["split"].to_numpy()
    inside = np.flatnonzero(w["inside"].to_numpy())
    used = cap_rows(np.flatnonzero(split == "train"), cfg.budget.max_train, cfg.train.seed, keep=inside)
    assert len(used) == 300 and np.isin(inside, used).all() and (split[used] == "train").all()
    assert len(inside) == 60
    for held in ("test", "valid"):
        h = w[split == held]
        hs = np.sort(h["start"].to_numpy())
        tr = w.iloc[used]
        # a held-out window [t, t + 1000) overlaps [s, e) iff s - 1000 < t < e
        n_close = np.searchsorted(hs, tr["end"].to_numpy(), "left") - np.searchsorted(hs, tr["start"].to_numpy() - 1000, "right")
        assert (n_close == 0).all(), held
        assert len(h) > 1000
    # the inside block lies in training data, outside the held-out blocks' spans
    test = w[split == "test"]
    ins = w.iloc[inside]
    assert (ins["end"] <= test["start"].min()).all() or (ins["start"] >= test["end"].max()).all()


def test_cap_rows():
    idx = np.arange(10, 110)
    a = cap_rows(idx, 20, 0, keep=np.array([10, 11, 12]))
    assert len(a) == 20 and {10, 11, 12} <= set(a) and set(a) <= set(idx) and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, cap_rows(idx, 20, 0, keep=np.array([10, 11, 12])))
    np.testing.assert_array_equal(cap_rows(idx, None, 0), idx)


def test_rc_average_is_strand_symmetric():
    torch.manual_seed(0)
    model = models.build("deepsea", window_length=200, n_outputs=3, n_kernels=(8, 8, 8), n_hidden=8).eval()
    codes = torch.randint(0, 4, (6, 200))
    x = torch.nn.functional.one_hot(codes, 4).float()
    with torch.no_grad():
        p, p_rc = rc_average_probs(model, x), rc_average_probs(model, reverse_complement(x))
        plain = torch.sigmoid(model(x))
        manual = (plain + torch.sigmoid(model(reverse_complement(x)))) / 2
        # a reverse-complement palindrome: the window equals its own reverse complement
        half = x[:, :100]
        pal = torch.cat([half, reverse_complement(half)], dim=1)
        assert torch.equal(pal, reverse_complement(pal))
        p_pal = rc_average_probs(model, pal)
        plain_pal = torch.sigmoid(model(pal))
    assert p.shape == (6, 3)
    torch.testing.assert_close(p, p_rc)
    torch.testing.assert_close(p, manual)
    torch.testing.assert_close(p_pal, plain_pal)
    assert not torch.allclose(p, plain)  # the model is not RC-invariant, so averaging matters
    # metrics on averaged scores are scikit-learn's
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.uint8)
    m = multilabel_metrics(y, p.numpy(), ["a", "b", "c"]).set_index("class")
    for k, c in enumerate("abc"):
        assert m.loc[c, "auroc"] == pytest.approx(roc_auc_score(y[:, k], p[:, k].numpy()))
        assert m.loc[c, "auprc"] == pytest.approx(average_precision_score(y[:, k], p[:, k].numpy()))


def test_interval_bedgraph(tmp_path):
    df = pd.DataFrame({"chrom": ["chr2", "chr1", "chr1"], "start": [50, 300, 0], "end": [350, 600, 300], "prob": [0.5, 0.25, 0.125]})
    path = tmp_path / "x.bedGraph"
    n = tracks.write_bedgraph(df, str(path), name="n", description="d", chrom_order=["chr1", "chr2"],
                              value_col="prob", pos_col="start", end_col="end")
    lines = path.read_text().splitlines()
    assert n == 3 and lines[0].startswith("track type=bedGraph")
    assert lines[1:] == ["chr1\t0\t300\t0.1250", "chr1\t300\t600\t0.2500", "chr2\t50\t350\t0.5000"]


def test_config_errors(tmp_path):
    with pytest.raises(MethrayError, match="budget.max_trian"):
        load_regulatory_config(data=_config(tmp_path, budget={"max_trian": 3}))
    with pytest.raises(MethrayError, match="unknown model"):
        load_regulatory_config(data=_config(tmp_path, models=["nope"]))
    cfg = load_regulatory_config(data=_config(tmp_path, labels={"classes": ["CTCF", "XYZ"]}))
    make_labels(cfg, 1000)
    with pytest.raises(MethrayError, match="XYZ"):
        load_split_labels(cfg, 1000)
    with pytest.raises(MethrayError, match="unknown step"):
        run_regulatory(cfg, ["labels", "fly"])


def test_scan_windows_region(tmp_path):
    cfg = load_regulatory_config(data=_config(tmp_path, genome_scan={"region": "chr22:34,200,000-34,400,000"}))
    w, dropped = scan_windows(cfg, 300)
    assert (w["start"] % 300 == 0).all() and (w["end"] - w["start"] == 1000).all()
    assert w["start"].min() >= 34_200_000 and w["end"].max() <= 34_400_000
    assert len(w) + dropped == len(range(34_200_000, 34_400_000 - 1000 + 1, 300))
    assert len(w) > 400


def test_end_to_end_tiny(ray_session, tmp_path):
    small = {"n_kernels": [16, 16, 16, 16], "n_hidden": 16}
    cfg = load_regulatory_config(data=_config(
        tmp_path / "run", models=["conv4_frss"], model_params={"conv4_frss": small},
        train={"epochs": 1, "batch_size": 32, "shuffle_buffer": 0, "rc_augment": True},
        overfit={"strides": [300, 500]}, genome_scan={"region": "chr22:34,200,000-34,230,000"},
        score={"actors": 1, "cpus_per_actor": 0.5, "batch_size": 128},
    ))
    res = run_regulatory(cfg)
    m = pd.read_csv(tmp_path / "run" / "metrics.tsv", sep="\t", comment="#")
    pd.testing.assert_frame_equal(m, pd.read_parquet(tmp_path / "run" / "metrics.parquet"), check_exact=False, atol=1e-4)
    assert set(m["region"]) == {"inside", "held_out"} and set(m["model"]) == {"conv4_frss"}
    mean = m[m["class"] == "mean"]
    assert len(mean) == 2 and np.isfinite(mean[["auroc", "auprc"]].to_numpy()).all()
    assert ((mean[["auroc", "auprc"]] >= 0) & (mean[["auroc", "auprc"]] <= 1)).all().all()
    assert (mean["n"] == [60, 80]).all()  # the inside block; the held-out block capped at 80
    assert "budget: test" in (tmp_path / "run" / "metrics.tsv").read_text().splitlines()[1]
    ov = res["overfit"]
    assert list(ov[["stride", "region"]].itertuples(index=False, name=None)) == [
        (300, "inside"), (300, "held_out"), (500, "inside"), (500, "held_out")]
    assert (ov["n_train"] == 300).all() and np.isfinite(ov["mean_auprc"]).all()
    assert len(res["tracks"]) == 4
    lines = (tmp_path / "run" / "tracks" / "conv4_frss.CTCF.bedGraph").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    starts = [int(r[1]) for r in rows]
    assert lines[0].startswith("track") and len(rows) > 50 and starts == sorted(starts)
    assert all(int(r[2]) - int(r[1]) == 300 for r in rows)  # each window's central stride
    assert all(int(b[1]) >= int(a[2]) for a, b in zip(rows, rows[1:]))  # no overlaps
    assert all(0 <= float(r[3]) <= 1 for r in rows)
