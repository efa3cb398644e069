"""Training reproducibility, the learning-rate schedule and the workers' process settings.

The same seed must give the same model on CPU (initial weights, epoch shuffles, dropout, RC
draws), hence the same per-epoch losses, predictions and metrics; another seed another model.
Real IMR90 sites on real chr22, MRCNN, one worker.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import ray
import torch

from conftest import FASTA, IMR90, head_lines, slice_config
from methray import checkpoint as ckpt
from methray.config import TrainConfig, load_config
from methray.metrics import metric_rows
from methray.score import predict_dataset
from methray.train import WARMUP_FRACTION, fit, lr_scheduler
from methray.windows import WindowRows


def _sites(n: int, skip: int) -> pd.DataFrame:
    rows = [line.split("\t") for line in head_lines(IMR90, n, skip)]
    return pd.DataFrame({
        "chrom": [r[0] for r in rows],
        "pos": [int(r[1]) - 1 for r in rows],  # Bismark coverage is 1-based
        "beta": [int(r[4]) / max(int(r[4]) + int(r[5]), 1) for r in rows],
    })


def _lrs(schedule: str, steps: int, val_losses=()) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = lr_scheduler(opt, schedule, steps)
    out = [opt.param_groups[0]["lr"]]
    if schedule == "plateau":
        for loss in val_losses:
            sched.step(loss)
            out.append(opt.param_groups[0]["lr"])
        return out
    for _ in range(steps - 1):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_cosine_warms_up_then_decays_to_zero_and_plateau_halves_on_a_stall():
    lrs = _lrs("cosine", 200)
    warmup = round(WARMUP_FRACTION * 200)
    assert lrs[0] == pytest.approx(1e-3 / warmup)
    assert np.all(np.diff(lrs[:warmup]) > 0) and lrs[warmup] == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[warmup:]) < 0) and lrs[-1] < 1e-6
    assert lrs[warmup + (200 - warmup) // 2] == pytest.approx(0.5e-3, rel=0.02)  # half-way: cos(pi/2)
    # plateau: halved after each epoch without a new best, unchanged after an improvement
    assert _lrs("plateau", 0, [0.10, 0.09, 0.095, 0.094, 0.08]) == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-4])
    assert lr_scheduler(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]), "constant", 10) is None


_FAULTS_PER_STEP = """
import resource, sys
import torch
from methray import models
from methray.runtime import keep_freed_buffers
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_buffers()
torch.manual_seed(0)
model = models.build("mrcnn", n_outputs=1).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.nn.functional.one_hot(torch.randint(0, 4, (128, 400)), 4).float(), torch.rand(128, 1)
for step in range(12):
    if step == 4:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 8)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc thresholds are glibc's")
def test_training_steps_reuse_freed_buffers_instead_of_faulting_in_pages():
    # Each in a fresh process: malloc's thresholds are per process and move with its history.
    def faults(mode: str) -> float:
        root = os.path.dirname(os.path.dirname(ckpt.__file__))  # this checkout's methray
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, check=True, env=env)
        return float(out.stdout.split()[-1])

    # MRCNN, batch 128, one thread, after 4 warm-up steps: minor page faults per step
    assert faults("default") > 500  # glibc's defaults: each step's buffers are mapped and zeroed again
    assert faults("keep") < 50  # keep_freed_buffers (as every training worker does): reused


@pytest.mark.ray
def test_same_seed_gives_identical_losses_predictions_and_metrics(ray_session, tmp_path):
    train, val, test = _sites(400, 0), _sites(128, 125_000), _sites(300, 60_000)
    cfg = load_config(data=slice_config(tmp_path / "run", IMR90))
    meta = ckpt.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1)
    runs = {}
    for label, seed in (("a", 0), ("b", 0)):  # another seed gives another model: tests/test_pipeline.py (train.seeds)
        train_cfg = TrainConfig(epochs=2, batch_size=32, num_workers=1, use_gpu=False, patience=5, seed=seed, rc_augment=True)
        res = fit(WindowRows.from_frame(train), WindowRows.from_frame(val), reference=str(FASTA), meta=meta, train_cfg=train_cfg,
                  name=f"seed{seed}", storage_path=str(tmp_path / label / "ray_train"), checkpoint_dir=str(tmp_path / label / "checkpoint"),
                  progress=False)
        pred = predict_dataset(ray.data.from_pandas([test.iloc[i : i + 100] for i in range(0, len(test), 100)]), cfg, res.checkpoint_dir).to_pandas()
        pred = pred.sort_values("pos", kind="stable").reset_index(drop=True)
        runs[label] = (res, pred, metric_rows(pred.assign(in_cpg_island=False), "mrcnn", "imr90"))
    (a, pa, ma), (b, pb, mb) = runs["a"], runs["b"]
    assert [h["epoch"] for h in a.history] == [1, 2]
    # the worker ran at the driver's priority (train.WORKER_NICENESS), not Ray's default 15 nice levels below it
    assert {h["worker_niceness"] for h in a.history} == {os.getpriority(os.PRIO_PROCESS, 0)}
    assert all(0 < h["steady_cpu_share"] <= 1.05 for h in a.history)  # a thread runs at most the wall time
    for key in ("train_loss", "val_loss", "lr"):
        assert [h[key] for h in a.history] == [h[key] for h in b.history], key
    np.testing.assert_array_equal(pa["beta_pred"].to_numpy(), pb["beta_pred"].to_numpy())
    pd.testing.assert_frame_equal(ma, mb)
    assert all(math.isfinite(h["val_loss"]) for h in a.history)
