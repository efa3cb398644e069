"""Stage 3, train: Ray Train ``TorchTrainer`` (data parallel) on encoded windows.

- ``ScalingConfig(num_workers, use_gpu)`` from the ``train`` config section: CPU workers
  locally, GPUs when the cluster has them (``use_gpu: auto``), with no code change.
- Each worker reads its shard with ``ray.train.get_dataset_shard(...).iter_torch_batches``.
- Every epoch reports train / validation loss with ``ray.train.report``; a checkpoint is
  attached when the validation loss improves. Validation loss is all-reduced over workers,
  so every worker takes the same early-stopping decision (stop after ``patience`` epochs
  without improvement).
- The best checkpoint is copied to ``<out_dir>/checkpoint`` (see :mod:`methray.checkpoint`);
  Ray Train's own run directory is ``<out_dir>/ray_train``.

The encoded datasets are materialised in the object store before ``fit()``: Ray Train
reserves the workers' CPUs, and a lazy pipeline could then starve (see the Ray notes).
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import ray
import ray.train
import torch

from . import checkpoint as ckpt
from . import models, storage, tasks
from .augment import random_reverse_complement
from .config import RunConfig, TrainConfig
from .encoding import WindowSpec
from .windows import window_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What training produced."""

    checkpoint_dir: str
    history: list[dict]
    best_val_loss: float
    n_train: int
    n_val: int
    seconds: float


def model_window(cfg: RunConfig) -> WindowSpec:
    """The input window of the configured model (registry default, length overridable)."""
    info = models.get(cfg.model.name)
    if info.window is None:
        from .errors import MethrayError

        raise MethrayError(f"model {cfg.model.name!r} is not a sequence model; it cannot be trained on CpG windows")
    return WindowSpec(cfg.model.window_length or info.window.length, info.window.exclude_cpg)


def learning_rate(train_cfg: TrainConfig, model: str) -> float:
    """Adam learning rate: ``train.lr`` if set, else the model's registry default."""
    return train_cfg.lr or models.get(model).lr


def _all_reduce_sum(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


def train_loop_per_worker(config: dict) -> None:
    """The per-worker training loop (runs inside Ray Train workers)."""
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    model = models.build(config["model"], window_length=config["window_length"], n_outputs=config["n_outputs"], **config["params"])
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    task = config["task"]

    def collate(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(batch["x"]).to(device, non_blocking=True).float()
        y = torch.as_tensor(batch["y"]).to(device, non_blocking=True)
        return x, y

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    best, stale = math.inf, 0
    rank = ray.train.get_context().get_world_rank()
    for epoch in range(1, config["epochs"] + 1):
        start = time.perf_counter()
        model.train()
        loss_sum, n = 0.0, 0
        for x, y in train_shard.iter_torch_batches(
            batch_size=config["batch_size"], collate_fn=collate, local_shuffle_buffer_size=config["shuffle_buffer"] or None
        ):
            if config["rc_augment"]:
                x = random_reverse_complement(x)
            optimizer.zero_grad(set_to_none=True)
            loss = tasks.loss(task, model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            n += len(y)
        model.eval()
        val_sum, val_n = 0.0, 0
        with torch.no_grad():
            for x, y in val_shard.iter_torch_batches(batch_size=4 * config["batch_size"], collate_fn=collate):
                val_sum += tasks.loss(task, model(x), y).item() * len(y)
                val_n += len(y)
        loss_sum, n, val_sum, val_n = _all_reduce_sum([loss_sum, n, val_sum, val_n])
        train_loss, val_loss = loss_sum / max(n, 1), val_sum / max(val_n, 1)
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "samples": int(n), "seconds": time.perf_counter() - start}
        improved = val_loss < best
        best, stale = (val_loss, 0) if improved else (best, stale + 1)
        metrics["best_val_loss"] = best
        if improved and rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                net = model.module if hasattr(model, "module") else model
                ckpt.save(tmp, net, config["meta"].model_copy(update={"epoch": epoch, "val_loss": val_loss}))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if stale >= config["patience"]:
            break


class _Progress(ray.train.UserCallback):
    """Forwards each epoch's metrics from the Ray Train controller to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            self.queue.put_nowait(dict(metrics[0]))


def _follow_progress(queue, label: str, stop: threading.Event, history: list[dict], echo: bool) -> None:
    from ray.util.queue import Empty

    while not stop.is_set() or not queue.empty():
        try:
            m = queue.get(timeout=0.5)
        except Empty:
            continue
        history.append(m)
        if echo:
            log.info(f"train {label} epoch {m['epoch']}: train_loss {m['train_loss']:.4f} val_loss {m['val_loss']:.4f} ({m['seconds']:.0f} s, {m['samples'] / max(m['seconds'], 1e-9):,.0f} samples/s)")


def fit(
    train_ds: "ray.data.Dataset",
    val_ds: "ray.data.Dataset",
    *,
    meta: ckpt.CheckpointMeta,
    train_cfg: TrainConfig,
    name: str,
    storage_path: str,
    checkpoint_dir: str,
    progress: bool = True,
) -> TrainResult:
    """Train a registered model on datasets of encoded windows with ``TorchTrainer``.

    Parameters
    ----------
    train_ds, val_ds
        Ray Datasets with ``x`` ``(L, 4) uint8`` one-hot windows and ``y`` targets
        (``float32`` scalar for methylation, ``(K,)`` 0/1 for multilabel). Materialised here.
    meta
        Checkpoint metadata (the model to build and anything else to record); each saved
        checkpoint adds its ``epoch`` and ``val_loss``.
    train_cfg
        The ``train`` config section (epochs, batch size, lr, patience, workers, GPU, ...).
    name
        Ray Train run name (a folder under ``storage_path``).
    storage_path
        Ray Train storage (local folder or ``s3://``).
    checkpoint_dir
        Where the best checkpoint is published (local or ``s3://``); the per-epoch history
        goes beside it (:func:`history_path`).
    progress
        Log one line per epoch as it finishes.

    Returns
    -------
    TrainResult
    """
    from ray.train import CheckpointConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    from .errors import MethrayError

    start = time.perf_counter()
    # The CpG table is in genomic order; shuffling its blocks (plus the local shuffle buffer
    # in the loop) mixes regions within every batch without a full global shuffle.
    train_ds = train_ds.randomize_block_order(seed=train_cfg.seed).materialize()
    val_ds = val_ds.materialize()
    n_train, n_val = train_ds.count(), val_ds.count()
    if n_train == 0 or n_val == 0:
        raise MethrayError(f"no {'training' if n_train == 0 else 'validation'} windows; check the split section")
    use_gpu = train_cfg.use_gpu if train_cfg.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) >= 1
    loop_config = {
        "model": meta.model,
        "task": meta.task,
        "window_length": meta.window_length,
        "n_outputs": meta.n_outputs,
        "params": meta.params,
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "lr": learning_rate(train_cfg, meta.model),
        "patience": train_cfg.patience,
        "shuffle_buffer": train_cfg.shuffle_buffer,
        "rc_augment": train_cfg.rc_augment,
        "seed": train_cfg.seed,
        "threads": max(1, int(train_cfg.cpus_per_worker)),
        "meta": meta,
    }
    if not storage.is_remote(storage_path):
        storage_path = os.path.abspath(storage_path)
    train_fs, train_storage = storage.arrow_location(storage_path)
    queue = Queue(actor_options={"num_cpus": 0})  # epoch metrics, controller -> driver
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=train_cfg.num_workers,
            use_gpu=bool(use_gpu),
            resources_per_worker={"CPU": train_cfg.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        datasets={"train": train_ds, "val": val_ds},
        run_config=RayRunConfig(
            name=name,
            storage_path=train_storage,
            storage_filesystem=train_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[_Progress(queue)],
        ),
    )
    stop, history = threading.Event(), []
    follower = threading.Thread(target=_follow_progress, args=(queue, meta.model, stop, history, progress), daemon=True)
    follower.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        follower.join(timeout=10)
        queue.shutdown()
    if result.checkpoint is None:
        raise MethrayError("training produced no checkpoint (no epoch finished)")
    publish_checkpoint(result.checkpoint, checkpoint_dir)
    write_history(history, history_path(checkpoint_dir))
    best = min(h["val_loss"] for h in history) if history else float("nan")
    return TrainResult(checkpoint_dir, history, best, n_train, n_val, time.perf_counter() - start)


def checkpoint_meta(cfg: RunConfig, spec: WindowSpec, **extra) -> ckpt.CheckpointMeta:
    """Checkpoint metadata for the configured model; ``extra`` sets further fields."""
    info = models.get(cfg.model.name)
    n_outputs = cfg.model.n_outputs or (1 if cfg.model.task == "methylation" else info.n_outputs)
    return ckpt.CheckpointMeta(
        model=cfg.model.name,
        task=cfg.model.task,
        window_length=spec.length,
        exclude_cpg=spec.exclude_cpg,
        n_outputs=n_outputs,
        params=cfg.model.params,
        genome=cfg.genome,
        run_name=cfg.run_name,
        **extra,
    )


def train(cfg: RunConfig) -> TrainResult:
    """Train ``cfg.model`` on the first tissue's CpG table and keep the best checkpoint.

    Returns
    -------
    TrainResult
        Checkpoint location, per-epoch history and data sizes.

    Raises
    ------
    MethrayError
        Unknown model, a split gap smaller than the window, or no training / validation data.
    """
    from .errors import MethrayError

    spec = model_window(cfg)
    if cfg.split.gap_bp < spec.length:
        raise MethrayError(f"split.gap_bp ({cfg.split.gap_bp}) is smaller than the {cfg.model.name} window ({spec.length} bp): train and test windows could overlap")
    if not storage.exists(cfg.sites_table):
        raise MethrayError(f"{cfg.sites_table}: CpG table not found; run `methray prepare` first")
    tissue = cfg.tissues[0].name
    train_ds = window_dataset(cfg.sites_table, cfg.reference, spec, tissue=tissue, split="train")
    val_ds = window_dataset(cfg.sites_table, cfg.reference, spec, tissue=tissue, split="val")
    if cfg.train.max_train_sites:
        n_all = train_ds.count()
        if n_all > cfg.train.max_train_sites:
            train_ds = train_ds.random_sample(cfg.train.max_train_sites / n_all, seed=cfg.train.seed)
    return fit(
        train_ds,
        val_ds,
        meta=checkpoint_meta(cfg, spec, tissue=tissue),
        train_cfg=cfg.train,
        name=f"{cfg.run_name}-{cfg.model.name}",
        storage_path=cfg.path("ray_train"),
        checkpoint_dir=cfg.checkpoint_dir,
    )


def history_path(checkpoint_dir: str) -> str:
    """``train_history.tsv`` beside a checkpoint directory (``<run>/checkpoint`` -> ``<run>/train_history.tsv``)."""
    parent = posixpath.dirname(checkpoint_dir.rstrip("/")) if storage.is_remote(checkpoint_dir) else os.path.dirname(os.path.abspath(checkpoint_dir))
    return storage.join(parent, "train_history.tsv")


def write_history(history: list[dict], path: str) -> None:
    """Write the per-epoch metrics (epoch, train_loss, val_loss, samples, seconds, best_val_loss) as TSV, atomically."""
    import pandas as pd

    with storage.atomic_write(path) as fh:
        pd.DataFrame(history).to_csv(fh, sep="\t", index=False)


def publish_checkpoint(checkpoint: "ray.train.Checkpoint", target: str) -> None:
    """Copy a Ray Train checkpoint to ``target`` (local or ``s3://``), replacing it atomically."""
    with tempfile.TemporaryDirectory(prefix="methray-ckpt-") as tmp:
        checkpoint.to_directory(tmp)
        if storage.is_remote(target):
            fs, p = storage.filesystem(target)
            for name in os.listdir(tmp):
                fs.put_file(os.path.join(tmp, name), f"{p}/{name}")
            return
        staging = storage.staging_dir(target)
        try:
            shutil.copytree(tmp, staging, dirs_exist_ok=True)
            storage.replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
