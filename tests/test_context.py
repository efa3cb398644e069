"""Regional context features (methray.context) and the context_cnn model: features against a
brute-force count on real chr22 sequence, the once-per-node memory-mapped cache, the model's
shapes, and a tiny training + scoring run through `methray compare` with the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfaidx
import pytest
import torch

from methray import context, models
from methray.augment import reverse_complement
from methray.budget import Budget
from methray.compare import compare
from methray.composition import ratios
from methray.config import load_config
from methray.errors import MethrayError
from methray.genome import Reference
from methray.predictor import Predictor

from conftest import FASTA, slice_config

REF = str(FASTA)
# Real CpGs of chr22 (imr90 region), one near the edge of the sequenced part, and the contig ends.
CPG_REGION = ("chr22", 24_100_000, 24_160_000)


def real_cpgs(n: int = 40) -> np.ndarray:
    seq = pyfaidx.Fasta(REF, as_raw=True)[CPG_REGION[0]][CPG_REGION[1] : CPG_REGION[2]].upper()
    pos = np.array([i for i in range(len(seq) - 1) if seq[i : i + 2] == "CG"], np.int64) + CPG_REGION[1]
    return pos[np.linspace(0, len(pos) - 1, n).astype(int)]


def brute_counts(seq: str, lo: int, hi: int) -> list[int]:
    """called, C, G, CpG (C in [lo, hi)) of a sequence string, by plain Python."""
    s = seq.upper()
    part = s[lo:hi]
    cpg = s[lo : hi + 1].count("CG")  # CG cannot overlap itself; its C in [lo, hi)
    return [sum(b in "ACGT" for b in part), part.count("C"), part.count("G"), cpg]


def test_features_match_a_brute_force_count_on_real_sequence():
    pos = np.concatenate([real_cpgs(), [17_443_700, 0, 51_304_565]])  # + sequence start, contig ends
    size = 51_304_566
    sums = context.bin_sums(REF, "chr22")
    assert sums.shape == (-(-size // context.BIN_BP) + 1, 4)
    feats = context.context_features(REF, np.array(["chr22"] * len(pos)), pos)
    assert feats.shape == (len(pos), context.N_FEATURES) and feats.dtype == np.float32
    fasta = pyfaidx.Fasta(REF, as_raw=True)["chr22"]
    for j, p in enumerate(pos):
        for i, w in enumerate(context.SCALES):
            k, h = p // 100, w // 200
            lo, hi = max(0, (k - h) * 100), min(size, (k + h + 1) * 100)
            seq = fasta[lo : min(size, hi + 1)]  # one more base: a CpG straddling the window end
            n = brute_counts(seq, 0, hi - lo)
            gc, oe, dens = (float(v[0]) for v in ratios(*[np.array([v]) for v in n]))
            expect = [
                0.0 if np.isnan(gc) else (gc - 0.42) / 0.1,
                0.0 if np.isnan(oe) else np.log2(max(oe, 1 / 32)) + 1.5,
                0.0 if np.isnan(dens) else np.log2(1 + dens),
                1 - n[0] / (hi - lo),
            ]
            np.testing.assert_allclose(feats[j, 4 * i : 4 * i + 4], expect, rtol=1e-5, atol=1e-5, err_msg=f"{p} {w}")
    # real CpGs of the IMR90 region: regional GC and CpG content vary between them
    assert feats[:40, 0].std() > 0.1 and ((feats[:, 3::4] >= 0) & (feats[:, 3::4] <= 1)).all()
    assert feats[-2, -1] > 0.5  # chr22:0 lies in the N arm


def test_bin_cache_is_built_once_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("METHRAY_CACHE", str(tmp_path / "cache"))
    # a real 30 kb of chr22 as its own small FASTA (the cache key is the file)
    seq = pyfaidx.Fasta(REF, as_raw=True)["chr22"][24_100_000:24_130_017]
    fa = tmp_path / "small.fa"
    fa.write_text(">s\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    calls = []

    def build(codes, path):
        calls.append(len(codes))
        context.build_bin_sums(codes, path)

    a = Reference(str(fa)).derived("s", context.CACHE_KIND, build)
    b = Reference(str(fa)).derived("s", context.CACHE_KIND, build)  # a new process-level handle
    assert calls == [30_017]
    files = list((tmp_path / "cache").rglob(f"s.{context.CACHE_KIND}.npy"))
    assert len(files) == 1 and isinstance(np.load(files[0], mmap_mode="r"), np.memmap)
    assert isinstance(a.base, np.memmap) and not a.flags.writeable
    np.testing.assert_array_equal(a, b)
    assert a.shape == (302, 4) and a[-1].tolist() == brute_counts(seq, 0, len(seq))
    # the chunked builder agrees with one pass over the whole contig
    monkeypatch.setattr(context, "_CHUNK_BINS", 7)
    context.build_bin_sums(np.asarray(Reference(str(fa)).contig_codes("s")), tmp_path / "chunked.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "chunked.npy"), a)


def test_context_cnn_shapes_and_strand_symmetric_summary():
    info = models.get("context_cnn")
    assert info.context_features == context.N_FEATURES == len(context.feature_names()) == 20
    assert (info.window.length, info.window.exclude_cpg) == (400, True)
    assert all(models.get(n).context_features == 0 for n in ("mrcnn", "cnn_baseline", "deepcpg_dna"))
    m = models.build("context_cnn").eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 400)), 4).float()
    assert m(x, torch.randn(5, context.N_FEATURES)).shape == (5, 1)
    # the window summary of the other strand: same composition, flanks swapped and complemented
    s, r = m.summary(x), m.summary(reverse_complement(x))
    torch.testing.assert_close(s[:, :4], r[:, :4])
    torch.testing.assert_close(s[:, 4:8], r[:, 8:12].flip(1))
    with pytest.raises(TypeError):
        m(x)  # a context model needs its context


def test_kmer_spectrum_counts_the_baselines_kmers_on_real_windows():
    from methray.composition import kmer_counts, kmer_names
    from methray.encoding import WindowSpec, one_hot
    from methray.models.context_cnn import kmer_spectrum

    ref = Reference(REF)
    # real CpGs and two windows reaching into chr22's leading N run (N-containing k-mers not counted)
    pos = np.concatenate([real_cpgs(30), [17_443_628 + 50, 17_443_628 + 150]])  # 17,443,628: the first called base
    codes = ref.windows("chr22", pos, WindowSpec(400, True))
    assert (codes == 4).any() and not (codes == 4).all(axis=1).any()
    spectrum = kmer_spectrum(torch.from_numpy(one_hot(codes)).float())
    np.testing.assert_array_equal(spectrum.numpy(), kmer_counts(codes))
    assert spectrum.shape == (len(pos), len(kmer_names()))
    # a window without N holds 397 4-mers
    full = ~(codes == 4).any(axis=1)
    assert full.sum() > 20 and spectrum[full, -256:].sum(dim=1).tolist() == [397.0] * int(full.sum())


def test_model_inputs_and_window_only_jobs_refuse_context_models():
    chroms, pos = np.array(["chr22", "chr22"]), real_cpgs(2)
    assert context.model_inputs("mrcnn", REF, chroms, pos) == ()
    (ctx,) = context.model_inputs("context_cnn", REF, chroms, pos)
    np.testing.assert_array_equal(ctx, context.context_features(REF, chroms, pos))
    context.refuse_context("mrcnn", "ckpt", "variants")
    with pytest.raises(MethrayError, match="ckpt: context_cnn also reads regional context features; variants supports window-only"):
        context.refuse_context("context_cnn", "ckpt", "variants")


@pytest.mark.ray
def test_context_cnn_trains_and_scores_through_compare(ray_session, imr90_slice, tmp_path):
    cfg = load_config(data=slice_config(tmp_path, imr90_slice, train={"batch_size": 32}))
    budget = Budget(name="tiny", epochs=1, max_train=600, max_val=150, max_eval=300)
    table = compare(cfg, names=["context_cnn"], budget=budget, seeds=1).set_index("model")
    assert {"context_cnn", "composition_gbm"} <= set(table.index)
    assert table.loc["context_cnn", "train_sites"] == 600 and table.loc["context_cnn", "parameters"] == models.n_parameters(models.build("context_cnn"))
    scored = pd.read_parquet(cfg.path("predictions", "imr90.context_cnn.parquet"))
    assert len(scored) == 300 and scored["beta_pred"].between(0, 1).all() and scored["beta_pred"].std() > 0
    # the Predictor (score, score-genome) computes the same context and reproduces the scores
    head = scored.head(40)
    out = Predictor(cfg.path("models", "context_cnn", "seed0", "checkpoint"), REF)({"chrom": head["chrom"].to_numpy(), "pos": head["pos"].to_numpy()})
    np.testing.assert_allclose(out["beta_pred"], head["beta_pred"].to_numpy(), atol=1e-5)
