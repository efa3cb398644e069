"""Stage 3, train: Ray Train ``TorchTrainer`` (data parallel), windows encoded in the workers.

- ``ScalingConfig(num_workers, use_gpu)`` from the ``train`` config section: CPU workers
  locally, GPUs when the cluster has them (``use_gpu: auto``), with no code change.
- Data: only the site rows (contig, position, target: :class:`~methray.windows.WindowRows`) are
  materialised, in the object store. Each epoch every worker draws the same seeded global
  permutation (computed batch by batch, never materialised) and takes its own part
  (:class:`EpochOrder`); windows are encoded batch by
  batch in the worker from the memory-mapped genome (:mod:`methray.genome`), a thread
  ahead of the model. Memory is bounded by the batch, not by the number of sites, and no
  Ray Data stage competes with the training workers for the CPUs Ray Train reserved.
- Every epoch reports train / validation loss with ``ray.train.report`` and a checkpoint
  (latest weights + optimiser, loop state, best model so far). Validation loss is
  all-reduced over workers, so every worker takes the same early-stopping decision (stop
  after ``patience`` epochs without improvement).
- Seed (``train.seed``): the initial weights (``torch.manual_seed(seed)`` before the model
  is built), the epoch shuffles and each epoch's dropout / RC draws, so the same seed gives
  the same model on CPU. Learning rate: Adam with ``train.lr_schedule``
  (:func:`lr_scheduler`; cosine with warmup by default), whose state is checkpointed.
- Fine-tuning (``train.init_from``): the weights of a trained checkpoint of the same model
  replace the random ones before the first epoch (:func:`check_init_from`, in the driver).
- Fault tolerance: ``FailureConfig(max_failures=train.max_failures)``; a restarted worker
  group resumes from the latest checkpoint (:func:`ray.train.get_checkpoint`), and a rerun
  with the same run directory resumes an unfinished run or reports a finished one. Checkpoint
  uploads and downloads (workers, Ray Train's controller, the driver) run under the storage
  fault policy (:mod:`methray.storage`): a short store outage is retried there; a
  :class:`~methray.errors.MethrayError` in a worker (a storage retry budget spent, bad input)
  ends the run at once instead of restarting the workers into the same error
  (:class:`_StopOnMethrayError`), and reaches the caller unwrapped.
- The best checkpoint is copied to ``<out_dir>/checkpoint`` (see :mod:`methray.checkpoint`);
  Ray Train's own run directory is ``<out_dir>/ray_train``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch

from . import checkpoint as ckpt
from . import models, storage, tasks
from .augment import random_reverse_complement
from .config import RunConfig, TrainConfig
from .context import model_inputs
from .encoding import WindowSpec
from .runtime import keep_freed_buffers
from .sites import read_sites
from .windows import WindowRows, encode_rows

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
    run_dir: str = ""
    """Ray Train's run folder (``<storage_path>/<name>-<fingerprint>``)."""


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


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """The learning-rate schedule of ``train.lr_schedule`` for ``optimizer``.

    - ``cosine`` (default): linear warmup over the first :data:`WARMUP_FRACTION` of the
      ``total_steps`` optimiser steps of the epoch budget (``epochs x batches per epoch``),
      then cosine decay to 0 at the end of the budget, stepped after every batch
      (Loshchilov & Hutter 2017, SGDR, without restarts; warmup as Goyal et al. 2017).
    - ``plateau``: ``ReduceLROnPlateau``, the rate halved after every epoch whose
      validation loss is not a new best (stepped once per epoch with that loss).
    - ``constant``: the rate of ``train.lr`` throughout.

    Returns
    -------
    torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau | None
        None for ``constant``. Its ``state_dict`` goes into ``latest.pt`` so that a resumed
        run continues the schedule where it stopped.
    """
    if schedule == "cosine":
        warmup = max(1, round(WARMUP_FRACTION * total_steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)
    return None


WARMUP_FRACTION = 0.05
"""Share of the cosine schedule's steps spent warming up (linearly from ``lr / warmup``)."""


def _all_reduce_sum(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


def _rss_mib() -> tuple[float, float]:
    """This process's private (anonymous) and shared-memory RSS in MiB (``/proc/self/status``).

    Private memory is what must not grow with the number of sites. Shared memory here is
    Ray's object store as mapped into the worker (the site rows, one copy per node).
    File-backed pages (the memory-mapped genome, libraries) are page cache shared by every
    process on the node and are not counted.
    """
    kb = {"RssAnon:": 0, "RssShmem:": 0}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":", 1)[0] + ":"
                if key in kb:
                    kb[key] = int(line.split()[1])
    except OSError:  # not Linux
        return float("nan"), float("nan")
    return kb["RssAnon:"] / 1024, kb["RssShmem:"] / 1024


def _batches(data, index, n: int, batch_size: int, reference: str, spec: WindowSpec, device, depth: int = 2, model: str | None = None):
    """Yield ``(x (B, L, 4) float32, *extra, y)`` tensors for ``data`` rows ``index[:n]``, in order.

    ``extra`` are the model's inputs beside the window (:func:`methray.context.model_inputs`
    for ``model``; none for window-only models or ``model=None``).

    ``index`` is anything sliceable into row-index arrays (an array, :class:`EpochOrder`).

    A background thread encodes the next ``depth`` batches while the model trains on the
    current one (numpy gathers release the GIL), so the encoder hides behind the model.
    """
    import queue

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    # Decided once, not per batch: window-only models skip the contig-name gather.
    with_context = model is not None and bool(models.get(model).context_features)
    contig_names = np.asarray(data.contigs)

    def produce():
        try:
            for a in range(0, n, batch_size):
                if stop.is_set():
                    return
                rows = index[a : min(n, a + batch_size)]
                extra = model_inputs(model, reference, contig_names[data.contig[rows]], data.pos[rows]) if with_context else ()
                q.put((encode_rows(data, rows, reference, spec), *extra, data.y[rows]))
            q.put(done)
        except BaseException as exc:  # surfaced in the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            x, *extra, y = item
            yield torch.from_numpy(x).to(device).float(), *(torch.from_numpy(e).to(device) for e in extra), torch.from_numpy(y).to(device)
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except Exception:
                pass
            thread.join(timeout=0.05)


class EpochOrder:
    """This worker's training rows for one epoch: a seeded global shuffle, computed lazily.

    Row ``j`` of the shuffled order is ``permute(j)``, a pseudo-random permutation of
    ``[0, n)`` (a 4-round Feistel network over the index bits, keys drawn from ``(seed,
    epoch)``, with cycle-walking back into ``[0, n)``). Worker ``rank`` of ``world`` takes
    positions ``[rank * m, (rank + 1) * m)`` with ``m = n // world``: disjoint rows, the same
    number of batches everywhere (the ``n % world`` remaining rows sit out that epoch), and a
    resumed run draws the same order again. Slicing computes only the indices asked for, so
    the memory is that of a batch, not ``8 n`` bytes of a materialised permutation.

    ``order[a:b]`` -> ``(b - a,) int64`` row indices; ``len(order) == n // world``.
    """

    ROUNDS = 6

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
        self.n, self.start, self.m = int(n), rank * (int(n) // world), int(n) // world
        half = max(1, (max(int(n) - 1, 1).bit_length() + 1) // 2)
        self.half, self.mask = np.uint64(half), np.uint64((1 << half) - 1)
        self.keys = np.random.default_rng([seed, epoch]).integers(1, 2**62, self.ROUNDS, dtype=np.uint64)

    def __len__(self) -> int:
        return self.m

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        with np.errstate(over="ignore"):
            for k in self.keys:  # round function: the splitmix64 finaliser of (right ^ key)
                h = right ^ k
                h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                h ^= h >> np.uint64(31)
                left, right = right, left ^ (h & self.mask)
        return (left << self.half) | right

    def permute(self, j: np.ndarray) -> np.ndarray:
        """The permutation at positions ``j`` (each in ``[0, n)``), ``int64``."""
        y = self._feistel(np.asarray(j, dtype=np.uint64))
        out = y >= self.n
        while out.any():  # cycle-walking: a permutation of [0, 4^half) restricted to [0, n)
            y[out] = self._feistel(y[out])
            out = y >= self.n
        return y.astype(np.int64)

    def __getitem__(self, s: slice) -> np.ndarray:
        a, b, step = s.indices(self.m)
        return self.permute(np.arange(self.start + a, self.start + b, step, dtype=np.int64))


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> EpochOrder:
    """Worker ``rank``'s shuffled training rows for ``epoch`` (see :class:`EpochOrder`)."""
    return EpochOrder(n, seed, epoch, rank, world)


class _Strided:
    """Rows ``rank, rank + world, ...`` below ``n``, sliceable like an array (validation rows)."""

    def __init__(self, n: int, rank: int, world: int):
        self.n, self.rank, self.world = n, rank, world

    def __len__(self) -> int:
        return max(0, (self.n - self.rank + self.world - 1) // self.world)

    def __getitem__(self, s: slice) -> np.ndarray:
        a, b, _ = s.indices(len(self))
        return self.rank + self.world * np.arange(a, b, dtype=np.int64)


WARMUP_STEPS = 5
"""Training steps left out of an epoch's ``steady_samples_per_s`` (first allocations, thread start-up)."""

WORKER_NICENESS = 0
"""Nice levels the training worker processes add to the raylet's (``RAY_worker_niceness`` in their runtime env).

Ray starts its worker processes 15 nice levels below the raylet (``nice(15)`` in each
worker), i.e. below the driver of an embedded Ray, the user's own priority. On a machine
where anything else runs, a training worker then waits for a core while the same loop run
as a plain script gets its fair share; each epoch reports the training thread's share of a
core (``steady_cpu_share``). With 0 the workers run at the raylet's priority, as the
driver does; None keeps Ray's default. ``bench/scale.py`` stage ``train_workers`` measures
both (README "Scale" > "Ray overhead").
"""

STATE_FILE = "train_state.json"
LATEST_FILE = "latest.pt"
BEST_DIR = "best"


def train_loop_per_worker(config: dict) -> None:
    """The per-worker training loop (runs inside Ray Train workers).

    Data: the site rows (:class:`~methray.windows.WindowRows`, in the object store, read zero-copy)
    are shuffled globally each epoch (:class:`EpochOrder`) and their windows encoded batch by
    batch from the memory-mapped genome: the worker's memory depends on the batch size, not on
    the number of sites.

    Checkpoints: every epoch rank 0 reports one holding the latest weights and optimiser state
    (``latest.pt``), the loop state and per-epoch history (``train_state.json``) and the best
    model so far as a methray checkpoint (``best/``). A restarted worker (``FailureConfig``) or a
    rerun with the same storage resumes from it (:func:`ray.train.get_checkpoint`): the next
    epoch is ``epoch + 1``; a finished run is not trained again.
    """
    torch.set_num_threads(config["threads"])
    keep_freed_buffers()  # no page faults for each step's activations (see there)
    device = ray.train.torch.get_device()
    torch.manual_seed(config["seed"])  # the initial weights (DDP copies rank 0's to every worker)
    model = models.build(config["model"], window_length=config["window_length"], n_outputs=config["n_outputs"], **config["params"])
    if config["init_from"]:  # fine-tuning (checked in the driver by check_init_from)
        model.load_state_dict(ckpt.load(config["init_from"])[0].state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    spec = WindowSpec(config["window_length"], config["exclude_cpg"])
    task, reference, batch_size = config["task"], config["reference"], config["batch_size"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    data = ray.get(config["rows"])  # {"train": WindowRows, "val": WindowRows}: zero-copy numpy arrays
    train_rows, val_rows = data["train"], data["val"]
    per_epoch = len(train_rows) // world
    per_epoch = min(per_epoch, config["steps_per_epoch"] * batch_size) if config["steps_per_epoch"] else per_epoch
    scheduler = lr_scheduler(optimizer, config["lr_schedule"], config["epochs"] * math.ceil(per_epoch / batch_size))
    state = {"epoch": 0, "best_val_loss": math.inf, "stale": 0, "history": []}
    best_dir = tempfile.mkdtemp(prefix="methray-best-")
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            state = json.loads(Path(d, STATE_FILE).read_text())
            saved = torch.load(Path(d, LATEST_FILE), map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scheduler is not None and "scheduler" in saved:
                scheduler.load_state_dict(saved["scheduler"])
            shutil.copytree(Path(d, BEST_DIR), best_dir, dirs_exist_ok=True)
    if state["epoch"] >= config["epochs"] or state["stale"] >= config["patience"]:
        return  # a finished run: nothing to train (the driver reports it)
    model = ray.train.torch.prepare_model(model)
    upload = checkpoint_uploader(config["storage_path"])
    val_order = _Strided(len(val_rows), rank, world)
    resumed_from = state["epoch"]
    base = _rss_mib()[0]  # private memory once model and rows are in place
    for epoch in range(state["epoch"] + 1, config["epochs"] + 1):
        start = time.perf_counter()
        torch.manual_seed(config["seed"] * 100_003 + epoch)  # dropout etc.: a resumed epoch draws the same
        rows = epoch_order(len(train_rows), config["seed"], epoch, rank, world)
        n_rows = min(len(rows), config["steps_per_epoch"] * batch_size) if config["steps_per_epoch"] else len(rows)
        model.train()
        loss_sum, n, peak = 0.0, 0, np.array(_rss_mib())
        warm_t, warm_n, warm_cpu = math.nan, 0, math.nan
        for step, (x, *extra, y) in enumerate(_batches(train_rows, rows, n_rows, batch_size, reference, spec, device, model=config["model"])):
            if step == WARMUP_STEPS:
                warm_t, warm_n, warm_cpu = time.perf_counter(), n, time.thread_time()
            if config["rc_augment"]:
                x = random_reverse_complement(x)
            optimizer.zero_grad(set_to_none=True)
            loss = tasks.loss(task, model(x, *extra), y)
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # this step's rate (reported: the epoch's last)
            if config["lr_schedule"] == "cosine":
                scheduler.step()
            loss_sum += loss.item() * len(y)
            n += len(y)
            if step % 16 == 0:
                peak = np.fmax(peak, _rss_mib())
        steady_s, steady_n = time.perf_counter() - warm_t, n - warm_n  # training steps only, after warm-up
        steady_cpu = time.thread_time() - warm_cpu  # this thread's CPU time for them (below 1 x steady_s: waiting for a core)
        model.eval()
        val_sum, val_n = 0.0, 0
        with torch.no_grad():
            for x, *extra, y in _batches(val_rows, val_order, len(val_order), 4 * batch_size, reference, spec, device, model=config["model"]):
                val_sum += tasks.loss(task, model(x, *extra), y).item() * len(y)
                val_n += len(y)
        peak = np.fmax(peak, _rss_mib())
        loss_sum, n, val_sum, val_n, steady_n = _all_reduce_sum([loss_sum, n, val_sum, val_n, steady_n])
        train_loss, val_loss = loss_sum / max(n, 1), val_sum / max(val_n, 1)
        if config["lr_schedule"] == "plateau":
            scheduler.step(val_loss)  # the same all-reduced loss on every worker
        improved = val_loss < state["best_val_loss"]
        state["best_val_loss"] = val_loss if improved else state["best_val_loss"]
        state["stale"] = 0 if improved else state["stale"] + 1
        state["epoch"] = epoch
        metrics = {
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "samples": int(n),
            "seconds": time.perf_counter() - start, "best_val_loss": state["best_val_loss"], "lr": lr,
            # every worker's samples after the first WARMUP_STEPS steps / this worker's time for them (NaN: too few steps)
            "steady_samples_per_s": steady_n / steady_s if steady_s > 0 else math.nan,
            # share of those seconds the training thread ran on a core, and the worker's niceness (WORKER_NICENESS)
            "steady_cpu_share": steady_cpu / steady_s if steady_s > 0 else math.nan, "worker_niceness": os.getpriority(os.PRIO_PROCESS, 0),
            "worker_base_mib": round(base, 1), "worker_peak_mib": round(float(peak[0]), 1), "worker_shm_mib": round(float(peak[1]), 1), "resumed_from_epoch": resumed_from, "pid": os.getpid(),
        }
        state["history"].append(metrics)
        net = model.module if hasattr(model, "module") else model
        if rank == 0:
            if improved:
                ckpt.save(best_dir, net, config["meta"].model_copy(update={"epoch": epoch, "val_loss": val_loss}))
            with tempfile.TemporaryDirectory(prefix="methray-ckpt-") as tmp:
                saved = {"model": net.state_dict(), "optimizer": optimizer.state_dict()}
                if scheduler is not None:
                    saved["scheduler"] = scheduler.state_dict()
                torch.save(saved, Path(tmp, LATEST_FILE))
                Path(tmp, STATE_FILE).write_text(json.dumps(state, indent=1))
                shutil.copytree(best_dir, Path(tmp, BEST_DIR))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_upload_fn=upload)
        else:
            ray.train.report(metrics)
        if state["stale"] >= config["patience"]:
            break
    shutil.rmtree(best_dir, ignore_errors=True)


def checkpoint_uploader(storage_path: str):
    """The ``checkpoint_upload_fn`` of :func:`ray.train.report` for Ray Train storage at ``storage_path``.

    On ``s3://`` a checkpoint is uploaded file by file under the storage fault policy
    (:func:`methray.storage.put_dir`), so that an upload that fails raises in the worker;
    Ray Train's own upload (``pyarrow.fs.copy_files``) would report it as saved. ``None``
    (Ray Train's upload) for local storage.

    The checkpoint goes where Ray Train would put it, ``<run folder>/<checkpoint_dir_name>``
    on Ray Train's storage filesystem (its storage context, as Ray Train asks of a custom
    upload), so Ray Train manages it as its own: keeps, deletes and restores it.

    Parameters
    ----------
    storage_path
        Ray Train's storage (``RunConfig.storage_path``): a local folder or ``s3://``.

    Returns
    -------
    callable or None
        ``upload(checkpoint, checkpoint_dir_name) -> Checkpoint`` (the persisted one); it
        raises :class:`~methray.storage.StorageError` when the retry budget is spent.
    """
    if not storage.is_remote(storage_path):
        return None
    scheme = storage_path.split("://", 1)[0]

    def upload(checkpoint: "ray.train.Checkpoint", checkpoint_dir_name: str) -> "ray.train.Checkpoint":
        where = ray.train.get_context().get_storage()
        path = f"{where.experiment_fs_path}/{checkpoint_dir_name}"
        storage.put_dir(checkpoint.path, f"{scheme}://{path}")
        return ray.train.Checkpoint(path=path, filesystem=where.storage_filesystem)

    return upload


class _Progress(ray.train.UserCallback):
    """Forwards each epoch's metrics from the Ray Train controller to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            self.queue.put_nowait(dict(metrics[0]))


class _StopOnMethrayError(ray.train.UserCallback):
    """Ends the run when a worker fails with a :class:`~methray.errors.MethrayError`.

    ``FailureConfig`` restarts the worker group after any worker error. A methray error is not
    worth a restart: a storage operation that spent its retry budget
    (:class:`~methray.storage.StorageError`) would spend it again in every restart, multiplying
    the time to the error line by ``max_failures + 1``, and bad input stays bad. Raising here, in
    Ray Train's controller, makes a non-retryable controller failure whose cause is the
    worker's error (:func:`~methray.errors.find_methray_error` unwraps it). Workers that die
    (a lost node, a killed process) are still restarted from the latest checkpoint.
    """

    def after_exception(self, run_context, worker_exceptions):
        from .errors import find_methray_error

        for exc in worker_exceptions.values():
            err = find_methray_error(exc)
            if err is not None:
                raise err


def _follow_progress(queue, label: str, stop: threading.Event, history: list[dict], echo: bool) -> None:
    from ray.util.queue import Empty

    while not stop.is_set() or not queue.empty():
        try:
            m = queue.get(timeout=0.5)
        except Empty:
            continue
        history.append(m)
        if echo:
            log.info(f"train {label} epoch {m['epoch']}: train_loss {m['train_loss']:.4f} val_loss {m['val_loss']:.4f} lr {m.get('lr', float('nan')):.2g} ({m['seconds']:.0f} s, {m['samples'] / max(m['seconds'], 1e-9):,.0f} samples/s)")


def fit(
    train_rows: WindowRows,
    val_rows: WindowRows,
    *,
    reference: str,
    meta: ckpt.CheckpointMeta,
    train_cfg: TrainConfig,
    name: str,
    storage_path: str,
    checkpoint_dir: str,
    progress: bool = True,
    steps_per_epoch: int | None = None,
) -> TrainResult:
    """Train a registered model on site rows with ``TorchTrainer``, resuming where a run stopped.

    Parameters
    ----------
    train_rows, val_rows
        Site rows (:class:`~methray.windows.WindowRows`): ``y`` ``(N,) float32`` for methylation,
        ``(N, K)`` 0/1 for multilabel. Their windows are encoded inside the workers, batch by
        batch; only these rows (13 bytes a site for methylation) go to the object store.
    reference
        FASTA path (local or ``s3://``) the windows are taken from.
    meta
        Checkpoint metadata (the model to build and anything else to record); each saved
        checkpoint adds its ``epoch`` and ``val_loss``.
    train_cfg
        The ``train`` config section (epochs, batch size, lr, patience, workers, GPU,
        ``max_failures``, ...).
    name
        Ray Train run name (a folder under ``storage_path``). A run folder that already holds
        checkpoints of this name is resumed from its latest one; a finished one is reported.
    storage_path
        Ray Train storage (local folder or ``s3://``).
    checkpoint_dir
        Where the best checkpoint is published (local or ``s3://``); the per-epoch history
        goes beside it (:func:`history_path`).
    progress
        Log one line per epoch as it finishes.
    steps_per_epoch
        Cap on training batches per epoch (benchmarks, quick runs); None = every site.

    Returns
    -------
    TrainResult
        ``history`` holds every epoch of the run, including epochs trained before a restart.

    Raises
    ------
    MethrayError
        No training or validation sites, or no epoch finished.
    StorageError
        Ray Train storage or the checkpoint on ``s3://`` still unreachable when the storage
        retry budget (``storage.retry_budget_s``) was spent, in a worker, Ray Train's controller
        or here; unwrapped from Ray Train's ``TrainingFailedError``. A rerun with the same
        ``storage_path`` resumes from the latest checkpoint.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    from .errors import MethrayError, find_methray_error

    start = time.perf_counter()
    n_train, n_val = len(train_rows), len(val_rows)
    if n_train < train_cfg.num_workers or n_val == 0:
        raise MethrayError(f"no {'training' if n_train < train_cfg.num_workers else 'validation'} sites; check the split section")
    use_gpu = train_cfg.use_gpu if train_cfg.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) >= 1
    loop_config = {
        "model": meta.model,
        "task": meta.task,
        "window_length": meta.window_length,
        "exclude_cpg": meta.exclude_cpg,
        "n_outputs": meta.n_outputs,
        "params": meta.params,
        "reference": reference,
        # Site rows only (tens of bytes a site); workers read them zero-copy.
        "rows": ray.put({"train": train_rows, "val": val_rows}),
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "lr": learning_rate(train_cfg, meta.model),
        "lr_schedule": train_cfg.lr_schedule,
        "patience": train_cfg.patience,
        "rc_augment": train_cfg.rc_augment,
        "seed": train_cfg.seed,
        "init_from": train_cfg.init_from,
        "threads": max(1, int(train_cfg.cpus_per_worker)),
        "meta": meta,
    }
    if not storage.is_remote(storage_path):
        storage_path = os.path.abspath(storage_path)
    # Same data and settings -> same Ray Train run folder, so a rerun resumes (or reports) it;
    # changed ones start a new run instead of resuming one trained on something else.
    run_name = f"{name}-{run_fingerprint(train_rows, val_rows, reference, loop_config)}"
    loop_config["storage_path"] = storage_path
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
        run_config=RayRunConfig(
            name=run_name,
            storage_path=train_storage,
            storage_filesystem=train_fs,
            # Only the latest checkpoint is kept: it carries the best model in best/.
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
            callbacks=[_Progress(queue), _StopOnMethrayError()],
            worker_runtime_env=None if WORKER_NICENESS is None else {"env_vars": {"RAY_worker_niceness": str(WORKER_NICENESS)}},
        ),
    )
    stop, reported = threading.Event(), []
    follower = threading.Thread(target=_follow_progress, args=(queue, meta.model, stop, reported, progress), daemon=True)
    follower.start()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:  # a worker's or the controller's error, wrapped
        err = find_methray_error(exc)
        if err is None:
            raise
        raise err from exc
    finally:
        stop.set()
        follower.join(timeout=10)
        queue.shutdown()
    if result.checkpoint is None:
        raise MethrayError("training produced no checkpoint (no epoch finished)")
    with result.checkpoint.as_directory() as d:
        state = json.loads(Path(d, STATE_FILE).read_text())
        publish_checkpoint(ray.train.Checkpoint.from_directory(str(Path(d, BEST_DIR))), checkpoint_dir)
    history = state["history"]
    write_history(history, history_path(checkpoint_dir))
    if not reported:
        log.info("train %s: already finished (%d epochs in %s); nothing to train", run_name, len(history), storage_path)
        if progress:
            log.info(f"train {meta.model}: run {run_name} already finished ({len(history)} epochs, best val_loss {state['best_val_loss']:.4f}); not trained again")
    return TrainResult(checkpoint_dir, history, state["best_val_loss"], n_train, n_val, time.perf_counter() - start, storage.join(storage_path, run_name))


def run_fingerprint(train_rows: WindowRows, val_rows: WindowRows, reference: str, loop_config: dict) -> str:
    """A short hash of what a training run learns from: site rows, reference, model and settings.

    Left out: ``epochs`` and ``patience`` (a rerun with more epochs continues the run),
    workers, threads and ``max_failures`` (they do not change what is learnt).
    """
    import hashlib

    h = hashlib.blake2b(digest_size=6)
    for sites in (train_rows, val_rows):
        for arr in (sites.contig, sites.pos, sites.y):
            h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
        h.update("\t".join(sites.contigs).encode())
    keys = ("model", "task", "window_length", "exclude_cpg", "n_outputs", "params", "batch_size", "steps_per_epoch", "lr", "lr_schedule", "rc_augment", "seed", "meta")
    settings = {k: loop_config[k] for k in keys}
    settings["meta"] = settings["meta"].model_dump(mode="json")
    h.update(json.dumps({"reference": reference, **settings}, sort_keys=True, default=str).encode())
    return h.hexdigest()


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


def train(cfg: RunConfig, seed: int | None = None) -> TrainResult:
    """Train ``cfg.model`` on the first tissue's CpG table and keep the best checkpoint.

    Parameters
    ----------
    seed
        Training seed (default ``train.seed``); its checkpoint is
        :meth:`~methray.config.RunConfig.checkpoint_of` (the run's own for ``train.seed``).
        With ``train.max_train_sites`` every seed trains on the same sites.

    Returns
    -------
    TrainResult
        Checkpoint location, per-epoch history and data sizes.

    Raises
    ------
    MethrayError
        Unknown model, a split gap smaller than the window, or no training / validation data.
    """
    from .budget import cap_rows
    from .errors import MethrayError

    seed = cfg.train.seed if seed is None else seed
    spec = model_window(cfg)
    if cfg.split.gap_bp < spec.length:
        raise MethrayError(f"split.gap_bp ({cfg.split.gap_bp}) is smaller than the {cfg.model.name} window ({spec.length} bp): train and test windows could overlap")
    if not storage.exists(cfg.sites_table):
        raise MethrayError(f"{cfg.sites_table}: CpG table not found; run `methray prepare` first")
    tissue = cfg.tissues[0].name
    cols = ["chrom", "pos", "beta"]
    train_df = read_sites(cfg.sites_table, tissue=tissue, split="train", columns=cols)
    train_df = train_df.iloc[cap_rows(np.arange(len(train_df)), cfg.train.max_train_sites)]
    val_df = read_sites(cfg.sites_table, tissue=tissue, split="val", columns=cols)
    check_init_from(cfg.train.init_from, cfg.model.name, spec)
    return fit(
        WindowRows.from_frame(train_df),
        WindowRows.from_frame(val_df),
        reference=cfg.reference,
        meta=checkpoint_meta(cfg, spec, tissue=tissue, init_from=cfg.train.init_from, seed=seed),
        train_cfg=cfg.train.model_copy(update={"seed": seed}),
        name=f"{cfg.run_name}-{cfg.model.name}" + ("" if seed == cfg.train.seed else f"-seed{seed}"),
        storage_path=cfg.path("ray_train"),
        checkpoint_dir=cfg.checkpoint_of(seed),
    )


def check_init_from(path: str | None, model: str, spec: WindowSpec) -> None:
    """Check, in the driver, that ``train.init_from`` holds weights the model can start from.

    Fine-tuning starts from a trained checkpoint instead of random weights (e.g. a model
    trained on IMR90 adapted to saliva, :mod:`methray.compare` ``init_from``); the model,
    its window and its parameters must be the same.

    Raises
    ------
    MethrayError
        ``path`` has no checkpoint, or one of another model, window or shape.
    """
    from .errors import MethrayError

    if path is None:
        return
    meta = ckpt.read_meta(path)
    if (meta.model, meta.window_length, meta.exclude_cpg) != (model, spec.length, spec.exclude_cpg):
        raise MethrayError(f"{path}: train.init_from holds {meta.model} ({meta.window_length} bp); expected {model} ({spec.length} bp) to fine-tune")
    try:
        ckpt.check_loads(path)
    except MethrayError as exc:
        if isinstance(exc.__cause__, RuntimeError):  # load_state_dict: weights of another shape (e.g. an older version of the model)
            raise MethrayError(f"{path}: train.init_from weights do not fit {model} as built now (other parameters or an older version)") from None
        raise


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
            storage.put_dir(tmp, target)
            return
        staging = storage.staging_dir(target)
        try:
            shutil.copytree(tmp, staging, dirs_exist_ok=True)
            storage.replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
