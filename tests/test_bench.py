"""Smoke test of the benchmark command (``bench/run.py --quick``) so it cannot rot.

It asserts that every section ran on real data and produced consistent figures, never how
fast anything was (no timed assertions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch

from conftest import DATA, FASTA, ROOT


def test_bench_quick_writes_results_for_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path), "--data", str(DATA)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (md,) = tmp_path.glob("*-quick.md")
    res = json.loads(md.with_suffix(".json").read_text())
    assert res["machine"]["cores"] == os.cpu_count() and res["machine"]["versions"]["torch"] == torch.__version__
    n = res["data"]["sites"]
    assert 500 < n < 1500  # the first 1,500 IMR90 rows, strands merged and coverage-filtered
    enc = res["encoding"]["encoders"]
    assert set(enc) == {"methray", "methray_encode_batch", "limit", "naive"} and all(v["windows_per_s"] > 0 for v in enc.values())
    assert all(r["windows"] == n for r in res["pipeline"]["runs"].values())
    train = res["training"]
    assert train["ray_train"]["mrcnn"]["1"]["samples"] == train["ray_train"]["mrcnn"]["2"]["samples"] == 256
    assert train["torch_baseline"]["1"]["samples_per_s"] > 0
    assert ("skipped" in train["gpu"]) == (not torch.cuda.is_available())
    score = res["scoring"]
    assert score["loop"]["cpgs"] == score["ray"]["2 actors"]["cpgs"] == n
    assert score["bedgraph_max_abs_diff"] < 1e-3  # both paths score the same sites alike
    proj = res["projection"]
    assert proj["gpu_hours"]["1"] > proj["gpu_hours"]["8"] > proj["gpu_hours"]["64"] > 0 and "ASSUMED" in proj["gpu_rate_source"]
    names = {t["target"] for t in res["targets"]}
    assert "encoding: methray / numpy limit" in names and "Ray Train mrcnn: 2 workers / 1" in names
    text = md.read_text()
    for heading in ("## Targets", "## 1. Window encoding", "## 2. Ray Data", "## 3. Training", "### GPU", "## 4. Scoring", "## 6. Scaling", "load average at start"):
        assert heading in text


def test_gpu_section_code_path_runs_on_cpu():
    # The GPU section (fp32 vs bf16 autocast) only runs on CUDA machines; run its code on the
    # CPU here so that it stays working on machines without a GPU.
    from bench import training
    from methray.encoding import WindowSpec

    pos = np.arange(30_000_000, 30_000_000 + 64 * 50, 50)
    x = training.encoded_windows(str(FASTA), "chr22", pos, WindowSpec(400, True))
    y = torch.rand(len(pos))
    out = training.gpu(["mrcnn"], {"mrcnn": (x, y)}, x, batch_size=32, infer_batch_size=32, device="cpu")
    assert out["train"]["mrcnn"]["fp32"]["samples_per_s"] > 0 and out["train"]["mrcnn"]["bf16"]["samples_per_s"] > 0
    assert out["inference"]["bf16"]["samples_per_s"] > 0
    if not torch.cuda.is_available():
        assert "skipped" in training.gpu(["mrcnn"], {"mrcnn": (x, y)}, x, batch_size=32, infer_batch_size=32)
