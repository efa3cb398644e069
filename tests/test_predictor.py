"""Predictors: both strands of a CpG (RC-averaged methylation scoring) on real chr22 windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfaidx
import pytest
import torch

from conftest import FASTA, IMR90, head_lines
from methray import checkpoint as ckpt
from methray import models
from methray.augment import reverse_complement
from methray.encoding import WindowSpec, encode_sequence, one_hot
from methray.genome import Reference
from methray.predictor import Predictor

COMPLEMENT = str.maketrans("ACGTacgtN", "TGCAtgcaN")


def _revcomp(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


@pytest.fixture(scope="module")
def cpgs() -> pd.DataFrame:
    rows = [line.split("\t") for line in head_lines(IMR90, 64, skip=3000)]
    return pd.DataFrame({"chrom": [r[0] for r in rows], "pos": [int(r[1]) - 1 for r in rows]})  # Bismark: 1-based


@pytest.fixture(scope="module")
def mrcnn_checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = models.build("mrcnn", window_length=400, n_outputs=1)
    for p in model.parameters():  # spread the outputs over [0, 1], so that clipping is rare
        p.data.mul_(3)
    path = tmp_path_factory.mktemp("ckpt") / "mrcnn"
    ckpt.save(path, model, ckpt.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1))
    return str(path)


def test_reverse_complement_is_the_other_strands_window_of_the_same_cpg(cpgs):
    fa, ref = pyfaidx.Fasta(str(FASTA)), Reference(str(FASTA))
    pos = cpgs["pos"].to_numpy()[:5]
    mrcnn = one_hot(ref.windows("chr22", pos, WindowSpec(400, exclude_cpg=True)))
    wide = one_hot(ref.windows("chr22", pos, WindowSpec(1001)))
    for i, p in enumerate(pos):
        assert str(fa["chr22"][int(p) : int(p) + 2]).upper() == "CG"
        # the other strand read 5'->3': its C is the + strand's G at p + 1
        minus = _revcomp(str(fa["chr22"][int(p) - 200 : int(p) + 202]).upper())
        assert minus[200:202] == "CG"
        # MRCNN window (the CpG's own bases left out): exactly the other strand's window
        np.testing.assert_array_equal(reverse_complement(torch.from_numpy(mrcnn[i : i + 1]))[0].numpy(), encode_sequence(minus[:200] + minus[202:]))
        # C-centred 1001 bp window: centred on the other strand's G, its C one base before
        rc = reverse_complement(torch.from_numpy(wide[i : i + 1]))[0].numpy()
        other = _revcomp(str(fa["chr22"][int(p) - 500 : int(p) + 501]).upper())
        np.testing.assert_array_equal(rc, encode_sequence(other))
        assert "ACGT"[rc[500].argmax()] == "G" and "ACGT"[rc[499].argmax()] == "C"


def test_rc_average_is_the_mean_of_both_strands_and_strand_symmetric(cpgs, mrcnn_checkpoint):
    batch = {"chrom": cpgs["chrom"].to_numpy(), "pos": cpgs["pos"].to_numpy()}
    both = Predictor(mrcnn_checkpoint, str(FASTA))  # score.rc_average defaults to True
    one = Predictor(mrcnn_checkpoint, str(FASTA), rc_average=False)
    x = one_hot(Reference(str(FASTA)).windows("chr22", batch["pos"], WindowSpec(400, exclude_cpg=True)))
    model, _ = ckpt.load(mrcnn_checkpoint)
    with torch.inference_mode():
        fwd = model(torch.from_numpy(x).float()).clamp(0, 1)[:, 0].numpy()
        rev = model(reverse_complement(torch.from_numpy(x)).float()).clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(one(batch)["beta_pred"], fwd, atol=1e-6)
    np.testing.assert_allclose(both(batch)["beta_pred"], (fwd + rev) / 2, atol=1e-6)
    assert np.abs(fwd - rev).max() > 0.01  # an untrained-on-RC model is not strand symmetric by itself
    # averaged: a window and its reverse complement get the same prediction
    xr = reverse_complement(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(both.predict(x), both.predict(np.ascontiguousarray(xr)), atol=1e-6)


def test_cpu_forward_passes_in_chunks_give_the_whole_batch_predictions(mrcnn_checkpoint):
    # 700 real chr22 CpGs with both strands: 1,400 windows in passes of 256 (the last one
    # shorter), the same as one pass of the whole batch; no page faults in steady passes.
    import resource

    from methray import predictor as predictor_module

    rows = [line.split("\t") for line in head_lines(IMR90, 700, skip=5000)]
    pos = np.array([int(r[1]) - 1 for r in rows])
    x = one_hot(Reference(str(FASTA)).windows("chr22", pos, WindowSpec(400, exclude_cpg=True)))
    p = Predictor(mrcnn_checkpoint, str(FASTA))
    assert 2 * len(x) > predictor_module.CPU_FORWARD_WINDOWS
    model, _ = ckpt.load(mrcnn_checkpoint)
    with torch.inference_mode():
        xt = torch.from_numpy(x).float()
        whole = model(torch.cat([xt, reverse_complement(xt)])).clamp(0, 1)[:, 0].numpy()
    chunked = p.predict(x)[:, 0]
    np.testing.assert_allclose(chunked, (whole[: len(x)] + whole[len(x):]) / 2, atol=1e-6)
    # This thread's faults only, with one torch thread so that the model runs in it (other
    # threads of the test process, Ray's in the suite, fault on their own). The warm passes run
    # with the same thread count as the measured one: buffers of every chunk size allocated once.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        p.predict(x)
        p.predict(x)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        again = p.predict(x)[:, 0]
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    finally:
        torch.set_num_threads(threads)
    # A pass whose freed buffers went back to the OS faults ~40,000 pages; a steady pass a few
    # hundred to a few thousand (the allocator's own bookkeeping varies with the process).
    assert faults < 10_000
    assert np.array_equal(again, chunked)
