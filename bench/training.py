"""Section 3: training throughput.

- Ray Train: :func:`methray.train.fit` per model with 1 and 2 CPU workers (1 torch thread
  each), one epoch over a fixed number of real CpG sites (windows encoded in the workers); samples/s from the epoch
  timing (``samples / seconds`` as the training loop reports it: forward, backward,
  optimiser step and a small validation pass), and the fixed cost of ``fit()`` (wall time
  minus the epoch: trainer start, worker group, dataset split, checkpoint) separately;
- plain torch: the same model trained in one process, no Ray, with 1 and 2 intra-op threads;
- GPU (only when ``torch.cuda.is_available()``): the plain loop on the GPU in fp32 and with
  bf16 autocast, samples/s and mean GPU utilisation, plus MRCNN inference samples/s.

All models are trained on the methylation task (one output, MSE), whatever their published
head, so the figures compare the trunks.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import torch

from methray import models, tasks
from methray.checkpoint import CheckpointMeta
from methray.config import TrainConfig
from methray.encoding import WindowSpec
from methray.train import fit
from methray.sites import read_sites
from methray.windows import WindowRows

from .machine import MemorySampler


def model_spec(name: str) -> WindowSpec:
    info = models.get(name)
    return WindowSpec(info.window.length, info.window.exclude_cpg)


def window_rows(table: str, *, samples: int, val_samples: int) -> tuple[WindowRows, WindowRows]:
    """(train, val) window rows: the first ``samples`` and ``val_samples`` CpGs of the sites
    table (wrapping around on tiny tables). Windows are encoded in the training workers."""
    df = read_sites(table, columns=["chrom", "pos", "beta"])
    take = lambda n: df.iloc[np.arange(n) % len(df)]  # noqa: E731
    return WindowRows.from_frame(take(samples)), WindowRows.from_frame(take(val_samples))


def ray_train(rows: tuple[WindowRows, WindowRows], fasta: str, name: str, *, batch_size: int, workers: int, work_dir: str, steps: int | None = None) -> dict:
    """One ``fit()`` of ``name`` with ``workers`` CPU workers, one epoch over ``rows[0]`` (needs Ray)."""
    spec = model_spec(name)
    meta = CheckpointMeta(model=name, task="methylation", window_length=spec.length, exclude_cpg=spec.exclude_cpg, n_outputs=1)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, num_workers=workers, cpus_per_worker=1, use_gpu=False, patience=1)
    with MemorySampler() as mem:
        result = fit(
            rows[0], rows[1], reference=fasta, meta=meta, train_cfg=cfg, name=f"bench-{name}-{workers}w",
            storage_path=os.path.join(work_dir, "ray_train"), checkpoint_dir=os.path.join(work_dir, f"ckpt-{name}-{workers}w"),
            progress=False, steps_per_epoch=steps,
        )
    epoch = result.history[-1]
    return {
        "samples": int(epoch["samples"]),
        "epoch_s": round(epoch["seconds"], 2),
        "samples_per_s": round(epoch["samples"] / epoch["seconds"], 1),
        "fit_wall_s": round(result.seconds, 2),
        "fit_fixed_s": round(result.seconds - sum(h["seconds"] for h in result.history), 2),
        "worker_peak_mib": epoch.get("worker_peak_mib"),
        "memory": mem.peak,
    }


def encoded_windows(fasta: str, chrom: str, positions: np.ndarray, spec: WindowSpec) -> torch.Tensor:
    """Real one-hot windows as a ``(N, L, 4) uint8`` tensor (encoded once, outside the timing)."""
    from methray.encoding import one_hot
    from methray.genome import open_reference

    return torch.from_numpy(one_hot(open_reference(fasta).windows(chrom, positions, spec)))


def train_loop(name: str, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, device: str = "cpu", autocast_dtype: torch.dtype | None = None) -> float:
    """Samples/s of one pass of a plain single-process training loop (after 2 warm-up steps)."""
    torch.manual_seed(0)
    model = models.build(name, n_outputs=1).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(xb, yb):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = tasks.loss("methylation", model(xb.to(device).float()), yb.to(device))
        loss.backward()
        optimizer.step()
        return loss

    for i in range(2):
        step(x[:batch_size], y[:batch_size])
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        loss = step(x[i : i + batch_size], y[i : i + batch_size])
    loss.item()
    sync(device)
    return len(x) / (time.perf_counter() - start)


def infer_loop(name: str, x: torch.Tensor, *, batch_size: int, device: str, autocast_dtype: torch.dtype | None = None) -> float:
    """Samples/s of plain inference over ``x`` (after one warm-up batch)."""
    torch.manual_seed(0)
    model = models.build(name, n_outputs=1).to(device).eval()
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        model(x[:batch_size].to(device).float())
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size].to(device, non_blocking=True).float())
        out.float().cpu()
        sync(device)
    return len(x) / (time.perf_counter() - start)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_baseline(name: str, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Plain single-process CPU training samples/s with each intra-op thread count."""
    before = torch.get_num_threads()
    out = {}
    try:
        for n in threads:
            torch.set_num_threads(n)
            with MemorySampler() as mem:
                rate = train_loop(name, x, y, batch_size=batch_size)
            out[str(n)] = {"samples_per_s": round(rate, 1), "memory": mem.peak}
    finally:
        torch.set_num_threads(before)
    if "1" in out and "2" in out:
        out["scaling_2_vs_1"] = round(out["2"]["samples_per_s"] / out["1"]["samples_per_s"], 2)
    return out


class GpuUtilisation:
    """Mean GPU utilisation (%) while active, sampled every ``interval`` s with
    ``torch.cuda.utilization`` (NVML) or, failing that, ``nvidia-smi``; None if neither works."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:  # no pynvml / amdsmi: ask the driver tool
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True, timeout=5)
                return float(out.stdout.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None

    def _run(self):
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def gpu(names: list[str], windows: dict[str, tuple[torch.Tensor, torch.Tensor]], infer_x: torch.Tensor, *, batch_size: int, infer_batch_size: int, device: str | None = None) -> dict:
    """GPU training (fp32 vs bf16 autocast) and MRCNN inference samples/s with utilisation.

    ``device`` defaults to ``cuda`` when available; without a GPU the section is skipped
    (``{"skipped": reason}``). ``infer_x``: MRCNN windows ``(N, 400, 4) uint8`` for inference. Passing ``device="cpu"`` runs the same code on the CPU
    (used by the tests so the GPU path cannot rot).
    """
    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
        device = "cuda"
    out = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device, "train": {}, "inference": {}}
    for name in names:
        x, y = windows[name]
        row = {}
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            with GpuUtilisation() as util:
                row[label] = {"samples_per_s": round(train_loop(name, x, y, batch_size=batch_size, device=device, autocast_dtype=dtype), 1), "gpu_util_pct": util.mean}
        row["bf16_vs_fp32"] = round(row["bf16"]["samples_per_s"] / row["fp32"]["samples_per_s"], 2)
        out["train"][name] = row
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        with GpuUtilisation() as util:
            out["inference"][label] = {"samples_per_s": round(infer_loop("mrcnn", infer_x, batch_size=infer_batch_size, device=device, autocast_dtype=dtype), 1), "gpu_util_pct": util.mean}
    return out
