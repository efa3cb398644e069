"""Attributions and motifs (methray.interpret) on toy models with known answers, and on real windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from methray import models
from methray.encoding import WindowSpec, one_hot
from methray.genome import Reference
from methray.interpret.attribute import deep_lift_shap, ism, reverse_complement
from methray.interpret.motifs import (
    MIN_MOTIF_BITS,
    filter_pwms,
    first_dna_conv,
    information_bits,
    jaspar_motifs,
    match_motifs,
    modisco_motifs,
)

from conftest import FASTA

CTCF = "MA0139"  # JASPAR CORE CTCF matrix id (version stripped)


class Linear(nn.Module):
    """f(x) = sum_l sum_b W[l, b] x[l, b] + c: ISM's answer is W[l, b] - W[l, x_l]."""

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.w = nn.Parameter(torch.from_numpy(w.astype(np.float32)))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2))[:, None] + 0.3


class MotifScanner(nn.Module):
    """Max over positions of ReLU(PWM log-odds scan): a model that reads one motif."""

    def __init__(self, log_odds: np.ndarray, length: int = 200):
        super().__init__()
        self.conv = nn.Conv1d(4, 1, len(log_odds))
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(length - len(log_odds) + 1)  # a module DeepLIFT has a rule for (not torch.amax)
        with torch.no_grad():
            self.conv.weight[:] = torch.from_numpy(log_odds.T[None].astype(np.float32))
            self.conv.bias[:] = -float(log_odds.max(axis=1).sum()) * 0.6
        self.out = nn.Linear(1, 1)
        with torch.no_grad():
            self.out.weight[:] = 1.0
            self.out.bias[:] = 0.0

    def forward(self, x):
        h = self.pool(self.relu(self.conv(x.transpose(1, 2))))
        return self.out(h[:, :, 0])


def _random_onehot(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return one_hot(rng.integers(0, 4, size=(n, length)).astype(np.uint8)).astype(np.float32)


def test_ism_of_a_linear_model_is_its_centred_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 4))
    x = _random_onehot(6, 50, 1)
    got = ism(Linear(w).eval(), x)
    expect = w - w.mean(axis=1, keepdims=True)  # f(x with b at l) - f(x), centred over b
    assert got.shape == (6, 50, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.broadcast_to(expect, got.shape), atol=1e-5)


def test_deep_lift_shap_sums_to_the_output_difference_on_real_windows():
    # An untrained MRCNN on real chr22 windows (no N): sum of contributions = f(x) - mean f(refs).
    torch.manual_seed(0)
    model = models.build("mrcnn", window_length=400, n_outputs=1).eval()
    ref = Reference(str(FASTA))
    pos = np.arange(30_000_000, 30_000_000 + 40 * 997, 997)
    x = one_hot(ref.windows("chr22", pos, WindowSpec(400, True))).astype(np.float32)
    x = x[x.sum(axis=(1, 2)) == 400][:4]
    assert len(x) == 4
    hyp = deep_lift_shap(model, x, n_shuffles=8, seed=1)
    contrib = (hyp * x).sum(axis=(1, 2))
    from tangermeme.deep_lift_shap import deep_lift_shap as tm_dls

    from methray.interpret.attribute import ChannelsFirst

    _, refs = tm_dls(ChannelsFirst(model), torch.from_numpy(x).transpose(1, 2).contiguous(), n_shuffles=8, random_state=1,
                     return_references=True)  # the references the same seed draws, (N, 8, 4, L)
    with torch.no_grad():
        fx = model(torch.from_numpy(x))[:, 0].numpy()
        fr = np.stack([model(refs[i].transpose(1, 2).float())[:, 0].numpy() for i in range(len(x))])
    np.testing.assert_allclose(contrib, fx - fr.mean(axis=1), atol=2e-3)
    assert np.abs(contrib).max() > 1e-3  # not trivially zero


def test_reverse_complement_of_one_hot():
    x = one_hot(np.array([[0, 1, 2, 3, 3]], np.uint8))  # ACGTT
    np.testing.assert_array_equal(reverse_complement(x), one_hot(np.array([[0, 0, 1, 2, 3]], np.uint8)))  # AACGT


def test_mrcnn_has_no_filter_motifs():
    assert first_dna_conv(models.build("mrcnn")) is None
    assert filter_pwms(models.build("mrcnn"), _random_onehot(2, 400, 0)) == []


@pytest.fixture(scope="module")
def jaspar():
    return jaspar_motifs()


@pytest.fixture(scope="module")
def planted(jaspar):
    """300 random 200 bp sequences, CTCF sites (drawn from its JASPAR PPM) planted in half."""
    name = next(k for k in jaspar if k.split(".")[0] == CTCF)
    ppm = jaspar[name]
    rng = np.random.default_rng(3)
    x = _random_onehot(300, 200, 2)
    for i in range(0, 300, 2):
        site = np.array([rng.choice(4, p=row) for row in ppm])
        start = rng.integers(20, 200 - len(ppm) - 20)
        x[i, start : start + len(ppm)] = np.eye(4, dtype=np.float32)[site]
    model = MotifScanner(np.log(ppm / 0.25)).eval()
    return x, model, name


def test_planted_motif_recovered_from_the_first_layer_and_matched_to_jaspar(planted, jaspar):
    x, model, name = planted
    pwms = filter_pwms(model, x)
    assert len(pwms) == 1 and pwms[0]["n_sites"] >= 30
    m = match_motifs({"filter_0": pwms[0]["ppm"]}, jaspar)
    best = m.iloc[0]
    assert best["target"].split(".")[0] == CTCF and best["significant"] and best["q_value"] < 0.05
    assert information_bits(pwms[0]["ppm"]) >= MIN_MOTIF_BITS  # an informative motif


def test_information_bits():
    assert information_bits(np.full((10, 4), 0.25)) == pytest.approx(0.0, abs=1e-6)
    assert information_bits(np.eye(4)[[0, 1, 2]]) == pytest.approx(6.0, abs=1e-6)


@pytest.mark.slow
def test_planted_motif_recovered_by_modisco_from_deep_lift_shap(planted, jaspar):
    x, model, name = planted
    hyp = deep_lift_shap(model, x, n_shuffles=5, seed=0)
    pats = [p for p in modisco_motifs(x, hyp) if "ppm" in p]
    assert pats, "modisco found no pattern"
    m = match_motifs({p["name"]: p["ppm"] for p in pats}, jaspar)
    top = m[m["rank"] == 1].sort_values("p_value").iloc[0]
    assert "CTCF" in top["target"] and top["significant"]
