"""Checkpoint metadata: one writer, one reader, typed; old and unknown keys survive."""

from __future__ import annotations

import json

import pytest
import torch

from methray import checkpoint, models
from methray.checkpoint import CheckpointMeta
from methray.encoding import WindowSpec
from methray.errors import MethrayError


def test_meta_round_trips_and_rebuilds_the_model(tmp_path):
    meta = CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1, tissue="imr90")
    torch.manual_seed(0)
    checkpoint.save(tmp_path, models.build("mrcnn", window_length=400, n_outputs=1), meta.model_copy(update={"epoch": 2, "val_loss": 0.08}))
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk["epoch"] == 2 and "classes" not in on_disk  # unset keys are left out
    model, back = checkpoint.load(str(tmp_path))
    assert back.window == WindowSpec(400, exclude_cpg=True) and back.tissue == "imr90" and back.val_loss == 0.08
    assert not model.training


def test_unknown_keys_are_kept_and_missing_ones_named(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "meta.json").write_text(json.dumps({"model": "mrcnn", "task": "methylation", "window_length": 400, "n_outputs": 1, "later": 3}))
    meta = checkpoint.read_meta(str(tmp_path))
    checkpoint.write_meta(tmp_path, meta)
    assert json.loads((tmp_path / "meta.json").read_text())["later"] == 3
    (tmp_path / "meta.json").write_text(json.dumps({"model": "mrcnn"}))
    with pytest.raises(MethrayError, match="meta.json: not a methray checkpoint's metadata"):
        checkpoint.read_meta(str(tmp_path))
    with pytest.raises(MethrayError, match="not a methray checkpoint"):
        checkpoint.read_meta(str(tmp_path / "nothing"))


def test_init_from_refuses_another_model_window_or_shape(tmp_path):
    """train.init_from (fine-tuning) is checked in the driver, with one line per mistake."""
    from methray.train import check_init_from

    meta = CheckpointMeta(model="cnn_baseline", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1)
    good = tmp_path / "good"
    checkpoint.save(good, models.build("cnn_baseline", window_length=400, n_outputs=1), meta)
    check_init_from(str(good), "cnn_baseline", WindowSpec(400, True))
    check_init_from(None, "mrcnn", WindowSpec(400, True))  # not fine-tuning
    with pytest.raises(MethrayError, match="holds cnn_baseline \\(400 bp\\); expected mrcnn"):
        check_init_from(str(good), "mrcnn", WindowSpec(400, True))
    with pytest.raises(MethrayError, match="expected cnn_baseline \\(1001 bp\\)"):
        check_init_from(str(good), "cnn_baseline", WindowSpec(1001, False))
    weights = torch.load(good / "model.pt", weights_only=True)
    weights.pop(next(iter(weights)))
    torch.save(weights, good / "model.pt")
    with pytest.raises(MethrayError, match="weights do not fit cnn_baseline"):
        check_init_from(str(good), "cnn_baseline", WindowSpec(400, True))
    (good / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(MethrayError, match="cannot load the checkpoint|weights do not fit"):
        check_init_from(str(good), "cnn_baseline", WindowSpec(400, True))
    with pytest.raises(MethrayError):
        check_init_from(str(tmp_path / "missing"), "cnn_baseline", WindowSpec(400, True))
