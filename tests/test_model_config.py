"""Models selected by name from the run config, the window encoder at every model's window,
and one training step of every sequence model on both tasks (methylation, multilabel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfaidx
import pytest
import torch

from methray import tasks
from methray.cli import main
from methray.config import load_config, save_config
from methray.encoding import WindowSpec
from methray.errors import MethrayError
from methray.models import build, get, names
from methray.train import checkpoint_meta, model_window, train
from methray.windows import encode_batch

from conftest import FASTA, IMR90, head_lines, slice_config

SEQUENCE_MODELS = ["mrcnn", "cnn_baseline", "deepcpg_dna", "deepsea", "basset", "danq", "danq_random_dropout", "conv4_frss"]

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cpgs() -> pd.DataFrame:
    """60 real IMR90 CpGs (Bismark, 1-based C) as 0-based positions with beta."""
    rows = [line.split("\t") for line in head_lines(IMR90, 60, skip=1000)]
    return pd.DataFrame({"chrom": [r[0] for r in rows], "pos": [int(r[1]) - 1 for r in rows], "beta": [float(r[3]) / 100 for r in rows]})


def config_for(tmp_path, **model):
    return load_config(data=slice_config(tmp_path, IMR90, model=model))


def test_all_nine_names_resolve_from_the_config(tmp_path):
    assert set(SEQUENCE_MODELS + ["deepmethygene", "context_cnn"]) == set(names())  # context_cnn: tests/test_context.py
    for name in SEQUENCE_MODELS:
        cfg = config_for(tmp_path, name=name)
        spec = model_window(cfg)
        assert spec == get(name).window, name  # the registry window, CpG exclusion included
        meta = checkpoint_meta(cfg, spec)
        assert (meta.model, meta.task, meta.n_outputs) == (name, "methylation", 1)
        model = build(meta.model, window_length=meta.window_length, n_outputs=meta.n_outputs, **meta.params).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, spec.length, 4)).shape == (2, 1), name
    # deepmethygene resolves (it is registered) but has no DNA window
    cfg = config_for(tmp_path, name="deepmethygene")
    assert get(cfg.model.name).window is None
    with pytest.raises(MethrayError, match="'deepmethygene' is not a sequence model"):
        model_window(cfg)


def test_model_overrides_from_config_and_set(tmp_path):
    data = slice_config(tmp_path, IMR90)
    cfg = load_config(data=data, overrides=["model.name=danq_random_dropout", "model.task=multilabel", "model.n_outputs=3",
                                             "model.window_length=300", "model.params={redraw: run}"])
    spec = model_window(cfg)
    meta = checkpoint_meta(cfg, spec)
    assert meta.window == WindowSpec(300) and meta.n_outputs == 3 and meta.task == "multilabel"
    model = build(meta.model, window_length=300, n_outputs=3, **meta.params)
    assert model.redraw == "run" and model(torch.zeros(2, 300, 4)).shape == (2, 3)
    # multilabel without n_outputs keeps the published number of outputs
    assert checkpoint_meta(load_config(data=data, overrides=["model.name=deepsea", "model.task=multilabel"]), spec).n_outputs == 919
    with pytest.raises(MethrayError, match="model.task"):
        load_config(data=data, overrides=["model.task=classification"])
    with pytest.raises(MethrayError, match="unknown model 'mrcnn2'"):
        model_window(load_config(data=data, overrides=["model.name=mrcnn2"]))


def test_train_refuses_a_non_sequence_model(tmp_path):
    cfg = config_for(tmp_path, name="deepmethygene")
    with pytest.raises(MethrayError, match="not a sequence model; it cannot be trained on CpG windows"):
        train(cfg)


def test_train_command_says_why_deepmethygene_cannot_train(ray_session, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    save_config(config_for(tmp_path / "out"), str(path))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(path), "--set", "model.name=deepmethygene"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("methray: error: model 'deepmethygene' is not a sequence model")


@pytest.mark.parametrize("spec", [WindowSpec(1001), WindowSpec(1000), WindowSpec(600), WindowSpec(400, exclude_cpg=True)], ids=str)
def test_window_encoder_serves_every_model_window(spec, cpgs):
    enc = encode_batch({"chrom": cpgs["chrom"].to_numpy(), "pos": cpgs["pos"].to_numpy(), "beta": cpgs["beta"].to_numpy()}, str(FASTA), spec.length, spec.exclude_cpg)
    assert enc["x"].shape == (len(cpgs), spec.length, 4) and enc["x"].dtype == np.uint8
    np.testing.assert_array_equal(enc["y"], cpgs["beta"].to_numpy(np.float32))
    fasta = pyfaidx.Fasta(str(FASTA), sequence_always_upper=True)
    half = spec.length // 2
    for i, pos in enumerate(cpgs["pos"].to_numpy()[:5]):
        if spec.exclude_cpg:  # length/2 bases before the C, length/2 after the G
            expected = str(fasta["chr22"][pos - half:pos]) + str(fasta["chr22"][pos + 2:pos + 2 + spec.length - half])
        else:  # centred on the C
            expected = str(fasta["chr22"][pos - half:pos - half + spec.length])
            assert expected[half:half + 2] == "CG"
        decoded = "".join("ACGT"[j] if row.any() else "N" for row, j in zip(enc["x"][i], enc["x"][i].argmax(-1)))
        assert decoded == expected.replace("a", "A"), (spec, pos)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_one_training_step_on_each_task(name, cpgs):
    """One Adam step per task on 2 real windows: finite loss, weights move, outputs in range."""
    spec = get(name).window
    enc = encode_batch({"chrom": cpgs["chrom"].to_numpy()[:2], "pos": cpgs["pos"].to_numpy()[:2], "beta": cpgs["beta"].to_numpy()[:2]}, str(FASTA), spec.length, spec.exclude_cpg)
    x = torch.from_numpy(enc["x"]).float()
    targets = {"methylation": torch.from_numpy(enc["y"]), "multilabel": torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])}
    for task, y in targets.items():
        torch.manual_seed(0)
        model = build(name, n_outputs=1 if task == "methylation" else 3).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        before = [p.detach().clone() for p in model.parameters()]
        loss = tasks.loss(task, model(x), y)
        assert torch.isfinite(loss), (name, task)
        loss.backward()
        opt.step()
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), (name, task)
        model.eval()
        with torch.no_grad():
            out = tasks.predict(task, model(x))
        assert out.shape == (2, y.reshape(2, -1).shape[1])
        assert ((out >= 0) & (out <= 1)).all(), (name, task)
