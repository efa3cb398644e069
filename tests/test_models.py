"""Model zoo: output and layer shapes against the published tables, a few training steps on
a real chr22 slice (IMR90 WGBS), and model-specific properties (FRSS reverse-complement
equivariance, DanQ random dropout, DeepMethyGene channel scaling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from methray import tasks
from methray.encoding import WindowSpec, one_hot
from methray.genome import Reference
from methray.models import build, get, model_table, names, n_parameters
from methray.models.conv4_frss import FRSSBlock

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hg19_chr22"
ZOO = ["cnn_baseline", "deepcpg_dna", "deepsea", "basset", "danq", "danq_random_dropout", "conv4_frss"]

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cpgs() -> pd.DataFrame:
    """The first 300 CpGs of the IMR90 Bismark coverage file (chr22)."""
    cov = pd.read_csv(
        DATA / "imr90_wgbs.bismark.cov.gz", sep="\t", header=None, nrows=300,
        names=["chrom", "start", "end", "pct", "n_meth", "n_unmeth"],
    )
    assert (cov["chrom"] == "chr22").all()
    cov["pos"] = cov["start"] - 1  # 1-based C of the + strand -> 0-based
    cov["beta"] = cov["pct"] / 100.0
    return cov


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(str(DATA / "chr22.fa"))


def real_batch(reference, cpgs, spec: WindowSpec, n: int, seed: int = 0):
    """``n`` CpGs drawn from the slice: one-hot windows ``(n, L, 4) float32`` and betas ``(n, 1)``."""
    rows = cpgs.iloc[np.random.default_rng(seed).choice(len(cpgs), n, replace=False)]
    codes = reference.windows("chr22", rows["pos"].to_numpy(), spec)
    x = torch.from_numpy(one_hot(codes).astype(np.float32))
    y = torch.tensor(rows["beta"].to_numpy(), dtype=torch.float32).unsqueeze(1)
    return x, y


def output_shapes(model: torch.nn.Module, x: torch.Tensor, modules: dict) -> dict:
    """Output shape of each named submodule during one forward pass."""
    seen = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=k: seen.__setitem__(k, tuple(out.shape))) for k, m in modules.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def eval_loss(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float(tasks.loss("methylation", model(x), y))


# ---------------------------------------------------------------- registry


def test_registry_lists_the_zoo_with_published_defaults():
    assert set(ZOO + ["mrcnn", "deepmethygene"]) <= set(names())
    expected = {
        "cnn_baseline": (400, True, 1, True),
        "deepcpg_dna": (1001, False, 1, True),
        "deepsea": (1000, False, 919, False),
        "basset": (600, False, 164, False),
        "danq": (1000, False, 919, False),
        "danq_random_dropout": (1000, False, 919, False),
        "conv4_frss": (1000, False, 1, False),
    }
    for name, (length, excl, n_out, meth) in expected.items():
        info = get(name)
        assert (info.window.length, info.window.exclude_cpg, info.n_outputs, info.methylation) == (length, excl, n_out, meth), name
    assert get("deepmethygene").window is None


def test_model_table_rows():
    rows = {r["name"]: r for r in model_table()}
    assert set(rows) == set(names())
    # known published sizes: DeepSEA ~52.8 M parameters; Basset ~4.1 M
    assert rows["deepsea"]["parameters"] == 52_843_119
    assert rows["basset"]["parameters"] == 4_135_064
    assert rows["deepmethygene"]["window"] == "-" and rows["deepmethygene"]["example"] == "n_cpgs=100"
    assert rows["deepmethygene"]["parameters"] == n_parameters(build("deepmethygene", n_cpgs=100))
    assert rows["cnn_baseline"]["window"] == 400 and rows["cnn_baseline"]["exclude_cpg"] is True
    assert all(r["paper"] and r["parameters"] > 0 for r in rows.values())


def test_overrides_reach_the_constructor():
    m = build("deepsea", window_length=500, n_outputs=3)
    assert m(torch.zeros(2, 500, 4)).shape == (2, 3)
    m = build("danq", n_outputs=1)
    assert m.head[-1].out_features == 1


# ---------------------------------------------------------------- shapes


def test_cnn_baseline_layers():
    m = build("cnn_baseline").eval()
    assert m.conv1.weight.shape == (64, 4, 8) and m.conv2.weight.shape == (128, 64, 8)
    s = output_shapes(m, torch.zeros(3, 400, 4), {"conv1": m.conv1, "conv2": m.conv2, "features": m.features})
    assert s == {"conv1": (3, 64, 393), "conv2": (3, 128, 91), "features": (3, 2816)}
    assert isinstance(m.head[1], torch.nn.ELU) and m.head[2].p == 0.5
    assert m(torch.zeros(3, 400, 4)).shape == (3, 1)


def test_deepcpg_dna_layers():
    m = build("deepcpg_dna").eval()
    assert m.conv1.weight.shape == (128, 4, 11) and m.conv2.weight.shape == (256, 128, 3)
    s = output_shapes(m, torch.zeros(2, 1001, 4), {"conv1": m.conv1, "conv2": m.conv2, "features": m.features})
    assert s == {"conv1": (2, 128, 991), "conv2": (2, 256, 245), "features": (2, 31232)}
    assert m.head[0].weight.shape == (128, 31232) and m.head[2].p == 0.0
    assert m(torch.zeros(2, 1001, 4)).shape == (2, 1)


def test_deepsea_layers():
    m = build("deepsea").eval()
    assert [c.weight.shape for c in (m.conv1, m.conv2, m.conv3)] == [(320, 4, 8), (480, 320, 8), (960, 480, 8)]
    s = output_shapes(m, torch.zeros(2, 1000, 4), {"c1": m.conv1, "c2": m.conv2, "c3": m.conv3, "flat": m.features})
    assert s == {"c1": (2, 320, 993), "c2": (2, 480, 241), "c3": (2, 960, 53), "flat": (2, 50880)}
    drops = [d.p for d in m.features if isinstance(d, torch.nn.Dropout)]
    assert drops == [0.2, 0.2, 0.5]
    assert m.head[0].weight.shape == (925, 50880)
    assert m(torch.zeros(2, 1000, 4)).shape == (2, 919)
    assert build("deepsea", n_outputs=1)(torch.zeros(2, 1000, 4)).shape == (2, 1)


def test_basset_layers():
    m = build("basset").eval()
    assert [c.weight.shape for c in m.convs] == [(300, 4, 19), (200, 300, 11), (200, 200, 7)]
    s = output_shapes(m, torch.zeros(2, 600, 4), {f"c{i}": c for i, c in enumerate(m.convs)} | {"flat": m.features})
    assert s == {"c0": (2, 300, 582), "c1": (2, 200, 184), "c2": (2, 200, 40), "flat": (2, 2000)}
    pools = [p.kernel_size for p in m.features if isinstance(p, torch.nn.MaxPool1d)]
    assert pools == [3, 4, 4]
    assert sum(isinstance(b, torch.nn.BatchNorm1d) for b in m.modules()) == 5
    linears = [l.weight.shape for l in m.head if isinstance(l, torch.nn.Linear)]
    assert linears == [(1000, 2000), (1000, 1000), (164, 1000)]
    assert [d.p for d in m.head if isinstance(d, torch.nn.Dropout)] == [0.3, 0.3]
    assert m(torch.zeros(2, 600, 4)).shape == (2, 164)


@pytest.mark.parametrize("name", ["danq", "danq_random_dropout"])
def test_danq_layers(name):
    m = build(name).eval()
    assert m.conv.weight.shape == (320, 4, 26)
    assert m.pool.kernel_size == 13 and m.pool.stride == 13
    assert m.lstm.bidirectional and m.lstm.hidden_size == 320 and m.lstm.weight_ih_l0.shape == (1280, 320)
    s = output_shapes(m, torch.zeros(2, 1000, 4), {"conv": m.conv, "pool": m.pool, "lstm_drop": m.drop_lstm})
    assert s == {"conv": (2, 320, 975), "pool": (2, 320, 75), "lstm_drop": (2, 75, 640)}
    assert m.head[0].weight.shape == (925, 48000)
    assert m(torch.zeros(2, 1000, 4)).shape == (2, 919)
    if name == "danq":
        assert (m.drop_pool.p, m.drop_lstm.p) == (0.2, 0.5)


def test_conv4_frss_layers():
    m = build("conv4_frss").eval()
    assert m.frss.weight0.shape == (320, 4, 9) and m.frss.weight1.shape == (480, 320, 9)
    assert m.conv3.weight.shape == (480, 480, 7) and m.conv4.weight.shape == (480, 480, 8)
    x1, x1rc, x2 = m.frss.layers(torch.zeros(2, 4, 1000))
    assert x1.shape == x1rc.shape == (2, 320, 496) and x2.shape == (2, 480, 244)
    s = output_shapes(m, torch.zeros(2, 1000, 4), {"c3": m.conv3, "c4": m.conv4, "flat": m.features})
    assert s == {"c3": (2, 480, 238), "c4": (2, 480, 112), "flat": (2, 13440)}
    assert m.head[0].weight.shape == (925, 13440)
    assert m(torch.zeros(2, 1000, 4)).shape == (2, 1)
    assert build("conv4_frss", n_outputs=5)(torch.zeros(2, 1000, 4)).shape == (2, 5)


# ---------------------------------------------------------------- training on real data

# (model, batch size, steps, learning rate): tiny batches and few steps for the big models
# (~0.5 s a step on one CPU thread); a low rate for the ~50k-input dense layers of DeepSEA,
# DanQ and conv4-FRSS, where Adam at 1e-3 overshoots on a 2-window batch.
TRAIN = [
    ("mrcnn", 16, 20, 1e-3),
    ("cnn_baseline", 16, 20, 1e-3),
    ("deepcpg_dna", 8, 10, 3e-4),
    ("deepsea", 2, 5, 3e-5),
    ("basset", 8, 12, 3e-4),
    ("danq", 2, 5, 3e-5),
    ("danq_random_dropout", 2, 5, 3e-5),
    ("conv4_frss", 2, 5, 3e-5),
]


@pytest.mark.parametrize("name,batch,steps,lr", TRAIN)
def test_trains_on_real_slice(name, batch, steps, lr, reference, cpgs):
    torch.manual_seed(0)
    info = get(name)
    x, y = real_batch(reference, cpgs, info.window, batch)
    assert x.shape == (batch, info.window.length, 4)
    assert (x.sum(-1) <= 1).all() and (x.sum((1, 2)) > info.window.length // 2).all()  # real sequence
    model = build(name, n_outputs=1)
    before = eval_loss(model, x, y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        loss = tasks.loss("methylation", model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    after = eval_loss(model, x, y)
    assert after < 0.5 * before, (name, before, after)


def test_multilabel_head_trains(reference, cpgs):
    """A multi-label model on labels from data (beta > 0.5 and beta > 0.9) with BCE."""
    torch.manual_seed(0)
    x, beta = real_batch(reference, cpgs, get("basset").window, 8, seed=1)
    labels = torch.cat([(beta > 0.5), (beta > 0.9)], dim=1).float()
    assert 0 < labels[:, 1].sum() < 8  # both classes present
    model = build("basset", n_outputs=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def bce():
        model.eval()
        with torch.no_grad():
            return float(tasks.loss("multilabel", model(x), labels))

    before = bce()
    for _ in range(12):
        model.train()
        opt.zero_grad()
        tasks.loss("multilabel", model(x), labels).backward()
        opt.step()
    assert bce() < 0.75 * before  # BCE starts near ln 2 = 0.69


# ---------------------------------------------------------------- conv4_frss


def reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """RC of channels-first one-hot ``(N, 4, L)``: reverse positions; A,C,G,T -> T,G,C,A."""
    return x.flip(1).flip(2)


def test_frss_block_is_reverse_complement_equivariant(reference, cpgs):
    torch.manual_seed(0)
    x, _ = real_batch(reference, cpgs, WindowSpec(1000), 2)
    x = x.transpose(1, 2).double()
    block = FRSSBlock().double().eval()
    x1, x1rc, x2 = block.layers(x)
    r1, r1rc, r2 = block.layers(reverse_complement(x))
    # first layer: the two strands swap, positions reversed
    torch.testing.assert_close(r1, x1rc.flip(-1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(r1rc, x1.flip(-1), rtol=1e-10, atol=1e-10)
    # block output: the same channels, positions reversed
    torch.testing.assert_close(r2, x2.flip(-1), rtol=1e-10, atol=1e-10)
    assert x2.abs().max() > 0 and not torch.allclose(x2, x2.flip(-1))  # not trivially symmetric

    # Control: also flipping W1's input channels (a full 180-degree rotation) breaks it.
    w0rc, _ = block.rotated_kernels()
    bad_w1rc = torch.flip(block.weight1, dims=(1, 2))

    def bad_x2(inp):
        a = block.pool(torch.relu(torch.conv1d(inp, block.weight0, block.bias0)))
        b = block.pool(torch.relu(torch.conv1d(inp, w0rc, block.bias0)))
        h = torch.relu(torch.conv1d(a, block.weight1, block.bias1)) + torch.relu(torch.conv1d(b, bad_w1rc, block.bias1))
        return block.pool(h)

    with torch.no_grad():
        assert not torch.allclose(bad_x2(reverse_complement(x)), bad_x2(x).flip(-1), atol=1e-6)


def test_frss_rotated_kernels_share_the_parameters():
    m = build("conv4_frss")
    params = dict(m.frss.named_parameters())
    assert set(params) == {"weight0", "bias0", "weight1", "bias1"}  # no separate rc weights
    forward_only = 320 * 4 * 9 + 320 + 480 * 320 * 9 + 480
    assert sum(p.numel() for p in params.values()) == forward_only
    w0rc, w1rc = m.frss.rotated_kernels()
    assert torch.equal(w0rc, m.frss.weight0.flip(1).flip(2)) and torch.equal(w1rc, m.frss.weight1.flip(2))
    # the rotated kernels are derived in forward: editing the parameter changes them
    with torch.no_grad():
        m.frss.weight0[0, 0, 0] = 7.0  # A at kernel position 0 -> T at the last position
    assert m.frss.rotated_kernels()[0][0, 3, 8] == 7.0
    # gradients from the rc branch alone reach the one parameter
    x = torch.rand(1, 4, 100)
    m.zero_grad()
    _, x1rc, _ = m.frss.layers(x)
    x1rc.sum().backward()
    assert m.frss.weight0.grad is not None and m.frss.weight0.grad.abs().sum() > 0


# ---------------------------------------------------------------- danq_random_dropout


def test_random_dropout_rates_redrawn_each_step(reference, cpgs):
    torch.manual_seed(0)
    x, y = real_batch(reference, cpgs, WindowSpec(300), 2)  # a short window keeps it fast
    m = build("danq_random_dropout", n_outputs=1, window_length=300)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    rates = []
    m.train()
    for _ in range(5):
        opt.zero_grad()
        tasks.loss("methylation", m(x), y).backward()
        opt.step()
        rates.append((m.p_pool, m.p_lstm))
        assert m.drop_pool.p == m.p_pool and m.drop_lstm.p == m.p_lstm  # the rates in use
    assert all(0.1 <= p <= 0.3 and 0.4 <= q <= 0.6 for p, q in rates)
    assert len(set(rates)) == 5  # a new pair every step

    # eval: no redraw, and deterministic
    m.eval()
    frozen = (m.p_pool, m.p_lstm)
    with torch.no_grad():
        a, b = m(x), m(x)
    assert torch.equal(a, b) and (m.p_pool, m.p_lstm) == frozen


def test_random_dropout_run_mode_draws_once():
    torch.manual_seed(1)
    m = build("danq_random_dropout", redraw="run", window_length=200, n_outputs=1).train()
    first = (m.p_pool, m.p_lstm)
    assert 0.1 <= first[0] <= 0.3 and 0.4 <= first[1] <= 0.6
    x = torch.rand(2, 200, 4)
    m(x), m(x)
    assert (m.p_pool, m.p_lstm) == first
    torch.manual_seed(2)
    other = build("danq_random_dropout", redraw="run", window_length=200, n_outputs=1)
    assert (other.p_pool, other.p_lstm) != first
    with pytest.raises(Exception):
        build("danq_random_dropout", redraw="epoch")


# ---------------------------------------------------------------- deepmethygene


@pytest.mark.parametrize("n,c1,c2", [(100, 10, 5), (2000, 64, 32), (640, 64, 32), (300, 30, 15), (5, 1, 1), (1, 1, 1)])
def test_deepmethygene_channels_follow_n(n, c1, c2):
    with torch.device("meta"):
        m = build("deepmethygene", n_cpgs=n)
    assert m.channels == (c1, c2)
    assert m.conv1.weight.shape == (c1, 1, 3) and m.conv2.weight.shape == (c2, c1, 3)
    assert m.res1.conv1.weight.shape == (c1, c1, 3) and m.res2.conv2.weight.shape == (c2, c2, 3)
    assert m.fc.weight.shape == (512, c2 * n) and m.out.weight.shape == (1, 512)


def test_deepmethygene_shapes_and_residual():
    m = build("deepmethygene", n_cpgs=100).eval()
    s = output_shapes(m, torch.zeros(3, 100), {"res1": m.res1, "res2": m.res2, "fc": m.fc})
    assert s == {"res1": (3, 10, 100), "res2": (3, 5, 100), "fc": (3, 512)}
    assert m(torch.zeros(3, 100)).shape == (3, 1)
    # the skip connection: with both convs of a block zeroed, the block is leaky_relu(x)
    with torch.no_grad():
        for p in m.res1.parameters():
            p.zero_()
    h = torch.randn(2, 10, 100)
    torch.testing.assert_close(m.res1(h), torch.nn.functional.leaky_relu(h, 0.01))
    with pytest.raises(ValueError):
        m(torch.zeros(3, 99))


def test_deepmethygene_trains_on_real_methylation():
    """Samples x CpGs from the saliva beta matrix: M-values of 100 CpGs -> beta of the next one."""
    beta = pd.read_csv(DATA / "saliva_bisulfite_beta.tsv.gz", sep="\t", nrows=400)
    values = beta.drop(columns=["chrom", "start", "end"]).T  # (samples, CpGs)
    values = values.loc[:, values.notna().all()].to_numpy(np.float64)
    assert values.shape[0] >= 20 and values.shape[1] >= 101
    b = np.clip(values, 0.01, 0.99)
    m_values = np.log2(b / (1 - b))
    x = torch.tensor(m_values[:, :100], dtype=torch.float32)
    y = torch.tensor(values[:, 100:101], dtype=torch.float32)
    torch.manual_seed(0)
    model = build("deepmethygene", n_cpgs=100)
    before = eval_loss(model, x, y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        model.train()
        opt.zero_grad()
        tasks.loss("methylation", model(x), y).backward()
        opt.step()
    assert eval_loss(model, x, y) < 0.5 * before
