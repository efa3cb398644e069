"""Training at scale: streaming windows (memory independent of the number of sites) and
fault tolerance (a worker killed with SIGKILL, the run resumed from its checkpoint).

Real IMR90 sites on real chr22; MRCNN with a fixed number of steps per epoch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from conftest import FASTA, IMR90, head_lines
from methray import checkpoint as ckpt
from methray.config import TrainConfig
from methray.encoding import WindowSpec, one_hot
from methray.genome import Reference
from methray.train import STATE_FILE, epoch_order, fit, lr_scheduler
from methray.windows import WindowRows, encode_rows

pytestmark = pytest.mark.ray


def _imr90_sites(n: int, skip: int = 0) -> WindowRows:
    rows = [line.split("\t") for line in head_lines(IMR90, n, skip)]
    df = pd.DataFrame({
        "chrom": [r[0] for r in rows],
        "pos": [int(r[1]) - 1 for r in rows],  # Bismark coverage is 1-based
        "beta": [int(r[4]) / max(int(r[4]) + int(r[5]), 1) for r in rows],
    })
    return WindowRows.from_frame(df)


def _meta() -> ckpt.CheckpointMeta:
    return ckpt.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1)


def _fit(sites: WindowRows, val: WindowRows, tmp: Path, name: str, steps: int, **train):
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 64, "num_workers": 1, "use_gpu": False, "patience": 5, **train})
    return fit(sites, val, reference=str(FASTA), meta=_meta(), train_cfg=cfg, name=name, storage_path=str(tmp / "ray_train"),
               checkpoint_dir=str(tmp / "checkpoint"), progress=False, steps_per_epoch=steps)


def test_site_batches_encode_like_the_reference_and_epochs_reshuffle():
    sites = _imr90_sites(500)
    spec = WindowSpec(400, exclude_cpg=True)
    idx = np.array([499, 3, 250])
    expected = one_hot(Reference(str(FASTA)).windows("chr22", sites.pos[idx], spec))
    np.testing.assert_array_equal(encode_rows(sites, idx, str(FASTA), spec), expected)
    # every epoch a new global order (a permutation of all rows); two workers get disjoint
    # equal parts; the same (seed, epoch) gives the same order (a resumed run)
    assert sorted(epoch_order(1001, 0, 1, 0, 1)[:].tolist()) == list(range(1001))
    a, b = epoch_order(1001, 0, 1, 0, 2)[:], epoch_order(1001, 0, 1, 1, 2)[:]
    assert len(a) == len(b) == 500 and not set(a) & set(b)
    assert not np.array_equal(epoch_order(1001, 0, 1, 0, 1)[:], epoch_order(1001, 0, 2, 0, 1)[:])
    np.testing.assert_array_equal(epoch_order(1001, 0, 2, 0, 1)[100:300], epoch_order(1001, 0, 2, 0, 1)[:][100:300])
    big = epoch_order(10_000_000, 0, 1, 0, 1)[:100_000]  # a slice costs the slice only
    assert len(np.unique(big)) == 100_000 and big.min() >= 0 and big.max() < 10_000_000
    assert abs(np.corrcoef(big[:-1], big[1:])[0, 1]) < 0.02  # consecutive rows unrelated


def test_training_memory_does_not_grow_with_the_number_of_sites(ray_session, tmp_path):
    # The same number of steps on 3k and on 120k training sites. The worker's private memory
    # must not grow with the sites (the epoch's own growth the same; the peak within noise of a
    # fresh worker process); its shared memory (object store) by the site rows at most
    # (16 B a site), where materialised windows would add 120k x 1,600 B = 183 MiB.
    val = _imr90_sites(512, skip=125_000)
    h, rows_mib = {}, {}
    for n in (3_000, 120_000):
        sites = _imr90_sites(n)
        res = _fit(sites, val, tmp_path / str(n), f"mem{n}", steps=12)
        assert res.n_train == n and res.history[0]["samples"] == 12 * 64
        h[n], rows_mib[n] = res.history[0], sites.nbytes / 2**20
    # what the epoch itself adds to the worker's private memory (batches, activations)
    growth = {n: h[n]["worker_peak_mib"] - h[n]["worker_base_mib"] for n in h}
    assert growth[120_000] < growth[3_000] + 64, h  # allocator noise; windows would add 183 MiB
    assert h[120_000]["worker_peak_mib"] < 1.25 * h[3_000]["worker_peak_mib"], h  # +183 MiB would fail
    assert h[120_000]["worker_shm_mib"] - h[3_000]["worker_shm_mib"] < rows_mib[120_000] + 8, (h, rows_mib)


def _kill_after_first_checkpoint(storage: Path, killed: dict, stop: threading.Event) -> None:
    """Wait until Ray Train has registered a checkpoint, then SIGKILL the worker that wrote it."""
    me = psutil.Process()
    while not stop.is_set():
        try:
            snapshot = "".join(p.read_text() for p in storage.glob("kill-*/checkpoint_manager_snapshot.json"))
        except OSError:
            snapshot = ""
        for state_file in storage.glob(f"kill-*/checkpoint_*/{STATE_FILE}"):
            if state_file.parent.name not in snapshot:
                continue  # uploaded, not registered yet
            try:
                pid = json.loads(state_file.read_text())["history"][-1]["pid"]
            except (OSError, ValueError, KeyError, IndexError):
                continue
            # only a process of this test's own Ray instance
            assert pid in {p.pid for p in me.children(recursive=True)}, pid
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
            return
        time.sleep(0.05)


def test_worker_killed_mid_run_resumes_from_its_checkpoint_and_rerun_reports(ray_session, tmp_path):
    sites, val = _imr90_sites(4_000), _imr90_sites(256, skip=125_000)
    killed, stop = {}, threading.Event()
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(tmp_path / "ray_train", killed, stop), daemon=True)
    killer.start()
    try:
        res = _fit(sites, val, tmp_path, "kill", steps=40, epochs=3, max_failures=2)
    finally:
        stop.set()
        killer.join(timeout=5)
    assert "pid" in killed and not psutil.pid_exists(killed["pid"])
    epochs = [h["epoch"] for h in res.history]
    assert epochs == [1, 2, 3]  # the same number of epochs as an uninterrupted run
    after = [h for h in res.history if h["pid"] != killed["pid"]]
    assert after and after[0]["resumed_from_epoch"] >= 1  # the new worker started from a checkpoint
    assert ckpt.read_meta(str(tmp_path / "checkpoint")).epoch in epochs
    # The learning-rate schedule (cosine over 3 x 40 steps) continued after the restart from
    # the state in latest.pt: each epoch's last step has the rate of an uninterrupted run.
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched, expected = lr_scheduler(opt, "cosine", 3 * 40), []
    for step in range(3 * 40):
        if step % 40 == 39:
            expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [h["lr"] for h in res.history] == pytest.approx(expected, rel=1e-9)
    # A rerun with the same run directory does not train again: it reports the finished run.
    before = sorted(p.name for p in Path(res.run_dir).glob("checkpoint_*"))
    again = _fit(sites, val, tmp_path, "kill", steps=40, epochs=3, max_failures=2)
    assert again.run_dir == res.run_dir and again.history == res.history
    assert sorted(p.name for p in Path(res.run_dir).glob("checkpoint_*")) == before


def test_prepare_runs_tissue_files_as_parallel_ray_tasks(ray_session, tmp_path):
    # Two real IMR90 slices as two tissues: prepared in Ray tasks, the same rows and counts as
    # one tissue at a time in this process; an input error is still one MethrayError.
    from conftest import slice_config, write_gz
    from methray.config import load_config
    from methray.errors import MethrayError
    from methray.prepare import prepare, prepare_tissue
    from methray.sites import read_sites

    a = write_gz(tmp_path / "a.cov.gz", head_lines(IMR90, 2000))
    b = write_gz(tmp_path / "b.cov.gz", head_lines(IMR90, 2000, skip=50_000))
    cfg = load_config(data=slice_config(tmp_path / "run", a, tissues=[{"name": "a", "path": str(a)}, {"name": "b", "path": str(b)}]))
    reports = prepare(cfg)
    table = read_sites(cfg.sites_table)
    for r, t in zip(reports, cfg.tissues):
        alone, counts = prepare_tissue(t, cfg.reference, cfg.cpg_islands, cfg.prepare)
        assert (r.tissue, r.rows_read, r.kept) == (t.name, counts.rows_read, counts.kept) and r.kept == len(alone) > 1000
        got = table[table["tissue"] == t.name].sort_values("pos")
        np.testing.assert_array_equal(got["pos"].to_numpy(), np.sort(alone["pos"].to_numpy()))
    bad = write_gz(tmp_path / "bad.cov.gz", ["chrUn\t100\t100\t50.0\t1\t1\n"])
    cfg_bad = load_config(data=slice_config(tmp_path / "bad", a, tissues=[{"name": "a", "path": str(a)}, {"name": "bad", "path": str(bad)}]))
    with pytest.raises(MethrayError) as err:
        prepare(cfg_bad)
    assert type(err.value) is MethrayError and "chrUn" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "bad" / "cpg_table").exists()
