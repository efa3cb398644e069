"""Regulatory-element task: peaks -> labelled windows -> multi-label models -> AUROC / AUPRC.

The second family of models in the zoo (DeepSEA, Basset, DanQ, conv4-FRSS) predicts
regulatory marks (TF binding, open chromatin) from sequence. The steps, each reading what the
previous one wrote under ``out_dir``:

``labels``
    :func:`methray.labels.build_labels`: windows of ``labels.length`` bp every
    ``labels.stride`` bp, positive for a class when they contain one of its summits / site
    centres, N-rich windows dropped, negatives down-sampled (DeepGMAP kept 25 %); then
    :func:`methray.labels.split_windows`: contiguous test and validation blocks with a gap, and
    an "inside training" block. -> ``labels/stride<S>/`` (``windows.parquet``,
    ``classes.json``, ``split.parquet``).
``train``
    For each model of ``models``: a Ray Dataset of one-hot windows
    (:func:`methray.windows.encode_intervals`, ``x`` ``(L, 4) uint8``, ``y`` ``(K,) float32``)
    and :func:`methray.train.fit` with the ``multilabel`` task (BCE on logits), optionally
    with reverse-complement augmentation (``train.rc_augment``). -> ``models/<model>.s<S>/``.
``evaluate``
    Ray Data batch inference (:class:`IntervalPredictor`; sigmoid outputs of the forward and
    reverse-complement window averaged, DanQ-style, when ``evaluate.rc_average``) on the
    held-out test block and on the inside-training block; per-class and mean AUROC / AUPRC
    (:func:`methray.metrics_multilabel.multilabel_metrics`). AUPRC is the primary metric: most
    windows are negative. -> ``metrics.tsv`` / ``metrics.parquet``.
``overfit``
    DeepGMAP Table 2: the same metrics inside the training data and on the held-out block,
    side by side, for each stride of ``overfit.strides`` (models ``overfit.models``).
    -> ``overfit.tsv`` / ``overfit.parquet``.
``genome``
    Every window at the label stride over real sequence (``genome.region`` or the whole of
    the chosen contigs) scored with ``genome.model``; one bedGraph per class. Windows overlap
    when ``stride < length``, and a bedGraph must not, so each window's value is written on
    its central ``stride`` bp (``[mid - stride // 2, mid - stride // 2 + stride)``): the
    tracks tile the sequence. -> ``tracks/<model>.<class>.bedGraph``.

Budgets: a CPU machine trains these 17-52 M parameter models at tens of windows per second,
so the ``budget`` section caps training / validation / evaluation windows and the scored
region; the caps are recorded in the metric tables. A GPU cluster runs the full scale with
``--set budget.max_train_windows=null`` (and the other caps ``null``), more epochs, and a
larger batch.

References
----------
Onimaru K, Nishimura O, Kuraku S (2020). PLoS Comput Biol 16: e1007616 (DeepGMAP: windows,
strides, inside-training vs held-out overfitting check, conv4-FRSS).
Quang D, Xie X (2016). DanQ. Nucleic Acids Res 44: e107 (reverse-complement averaging).
Zhou J, Troyanskaya OG (2015). DeepSEA. Nat Methods 12: 931-934.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import ray
import torch
from pydantic import Field

from . import checkpoint as ckpt
from . import models, storage, tasks, tracks
from .augment import reverse_complement
from .config import JobConfig, Section, TrainConfig, load_job_config, resolve_path
from .errors import MethrayError
from .labels import build_labels, n_counts, read_labels, split_windows, window_starts
from .metrics_multilabel import MEAN_ROW, multilabel_metrics
from .run import start_ray, start_run
from .tables import write_table
from .windows import encode_intervals

log = logging.getLogger(__name__)

STEPS = ("labels", "train", "evaluate", "overfit", "genome")
REGIONS = ("inside", "held_out")
METRIC_COLUMNS = ["model", "stride", "region", "class", "n", "n_pos", "auroc", "auprc", "n_classes"]
OVERFIT_COLUMNS = ["stride", "model", "region", "mean_auroc", "mean_auprc", "n_windows", "n_train"]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class LabelsConfig(Section):
    peaks: dict[str, str] = Field(default_factory=dict, description="class name -> narrowPeak / BED file")
    sites: list[str] = Field(default_factory=list, description="BED4+ site tables (name = factor)")
    chroms: list[str] | None = None
    length: int = Field(1000, ge=1, description="window (model input) length, bp")
    stride: int = Field(300, ge=1, description="grid step, bp (DeepGMAP: 300)")
    mode: Literal["summit", "deepsea"] = "summit"
    min_sites: int = Field(50, ge=1)
    max_n_fraction: float = Field(0.1, ge=0, le=1)
    negative_fraction: float = Field(0.25, gt=0, le=1, description="all-zero windows kept (DeepGMAP: 0.25)")
    site_prefix: str = ""
    classes: list[str] | None = Field(None, description="keep only these classes (default all)")
    seed: int = 0


class RegSplitConfig(Section):
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    inside_windows: int = Field(300, ge=1, description="windows of the inside-training block")
    gap: int = Field(1000, ge=0, description="bp kept free around held-out blocks")
    seed: int = 0


class BudgetConfig(Section):
    max_train_windows: int | None = Field(None, ge=1, description="cap on training windows (the inside block always included)")
    max_val_windows: int | None = Field(None, ge=1)
    max_eval_windows: int | None = Field(None, ge=1, description="cap per evaluated region (held-out, inside)")
    note: str = "full scale"


class EvaluateConfig(Section):
    rc_average: bool = Field(True, description="average sigmoid outputs of the window and its reverse complement (DanQ)")


class OverfitConfig(Section):
    strides: list[int] = [100, 300, 500]
    models: list[str] | None = Field(None, description="default: all models")


class GenomeConfig(Section):
    model: str | None = Field(None, description="checkpoint to score with (default: the first model)")
    region: str | None = Field(None, description="chrom:start-end (0-based half-open) to score; default every chosen contig")
    stride: int | None = Field(None, ge=1, description="default: labels.stride")
    rc_average: bool = False


class RegulatoryConfig(JobConfig):
    """A regulatory-element run (``methray regulatory``). Paths may be local or ``s3://``."""

    run_name: str = "regulatory"
    out_dir: str = "runs/regulatory"
    labels: LabelsConfig
    split: RegSplitConfig = RegSplitConfig()
    models: list[str] = ["conv4_frss", "deepsea"]
    model_params: dict[str, dict] = Field(default_factory=dict, description="model name -> constructor overrides")
    train: TrainConfig = TrainConfig()
    budget: BudgetConfig = BudgetConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    overfit: OverfitConfig = OverfitConfig()
    genome_scan: GenomeConfig = GenomeConfig()

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        self.labels.peaks = {k: resolve_path(v, data_dir) for k, v in self.labels.peaks.items()}
        self.labels.sites = [resolve_path(s, data_dir) for s in self.labels.sites]

    def check(self) -> None:
        for name in set(self.models) | set(self.overfit.models or []) | ({self.genome_scan.model} - {None}):
            if models.get(name).window is None:
                raise MethrayError(f"model {name!r} is not a sequence model")

    def labels_dir(self, stride: int) -> str:
        return self.path("labels", f"stride{stride}")

    def model_dir(self, model: str, stride: int) -> str:
        return self.path("models", f"{model}.s{stride}")


def load_regulatory_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> RegulatoryConfig:
    """Load and validate a regulatory run config (as :func:`methray.config.load_config`).

    Relative input paths (reference, peaks, sites) are resolved against ``data_dir``,
    ``data_dir`` and ``out_dir`` against the current directory.

    Raises
    ------
    MethrayError
        Missing file, bad YAML, an unknown key or a value of the wrong type, an unknown model.
    """
    return load_job_config(RegulatoryConfig, path, overrides, data)


def budget_line(cfg: RegulatoryConfig) -> str:
    """One line stating the compute budget the metrics were obtained under."""
    b, t = cfg.budget, cfg.train
    return (
        f"budget: {b.note}; negatives kept {cfg.labels.negative_fraction:g}; train windows <= {b.max_train_windows or 'all'}; "
        f"val windows <= {b.max_val_windows or 'all'}; eval windows per region <= {b.max_eval_windows or 'all'}; "
        f"epochs {t.epochs}; batch {t.batch_size}; lr {t.lr if t.lr else 'model default'}; rc_augment {t.rc_augment}; rc_average {cfg.evaluate.rc_average}"
    )


# --------------------------------------------------------------------------------------------
# Step 1: labels and split
# --------------------------------------------------------------------------------------------


def make_labels(cfg: RegulatoryConfig, stride: int) -> dict:
    """Build the label table at ``stride`` and its contiguous split; returns a summary dict."""
    lab = cfg.labels
    out = cfg.labels_dir(stride)
    summary = build_labels(
        cfg.reference, out, peaks=lab.peaks, sites=lab.sites or None, chroms=lab.chroms, length=lab.length,
        stride=stride, mode=lab.mode, min_sites=lab.min_sites, max_n_fraction=lab.max_n_fraction,
        negative_fraction=lab.negative_fraction, seed=lab.seed, site_prefix=lab.site_prefix,
    )
    windows, _, _ = read_labels(out)
    sp = cfg.split
    inside_fraction = min(sp.inside_windows / max(len(windows), 1), 0.5 * (1 - sp.valid_fraction - sp.test_fraction))
    split = split_windows(windows, valid_fraction=sp.valid_fraction, test_fraction=sp.test_fraction,
                         inside_fraction=inside_fraction, gap=sp.gap, seed=sp.seed)
    with storage.atomic_path(storage.join(out, "split.parquet")) as tmp:
        split.reset_index(drop=True).to_parquet(tmp, index=False)
    return {"summary": summary, "split": split["split"].value_counts().to_dict(), "inside": int(split["inside"].sum())}


def load_split_labels(cfg: RegulatoryConfig, stride: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The label table at ``stride`` with its ``split`` / ``inside`` columns, classes filtered.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end``, ``split``, ``inside``.
    y : np.ndarray
        ``(n, K) uint8`` labels of the kept classes.
    classes : list[str]

    Raises
    ------
    MethrayError
        No label table / split at this stride (run the ``labels`` step), or a class in
        ``labels.classes`` that the table lacks.
    """
    out = cfg.labels_dir(stride)
    windows, y, classes = read_labels(out)
    split_path = storage.join(out, "split.parquet")
    if not storage.exists(split_path):
        raise MethrayError(f"{split_path}: no split; run the labels step first")
    fs, p = storage.filesystem(split_path)
    with fs.open(p, "rb") as fh:
        split = pd.read_parquet(fh)
    windows = windows.assign(split=split["split"].to_numpy(), inside=split["inside"].to_numpy())
    if cfg.labels.classes is not None:
        missing = [c for c in cfg.labels.classes if c not in classes]
        if missing:
            raise MethrayError(f"labels.classes: {missing} not in the label table (has {classes})")
        idx = [classes.index(c) for c in cfg.labels.classes]
        y, classes = y[:, idx], list(cfg.labels.classes)
    return windows, y, classes


def cap_rows(index: np.ndarray, limit: int | None, seed: int, keep: np.ndarray | None = None) -> np.ndarray:
    """At most ``limit`` of the row numbers ``index`` (seeded random choice, sorted).

    ``keep`` (row numbers, a subset of ``index``) are always kept (e.g. the inside block in the
    training set); the rest is filled at random up to ``limit``.
    """
    index = np.asarray(index, dtype=np.int64)
    if limit is None or len(index) <= limit:
        return index
    keep = np.asarray(keep if keep is not None else [], dtype=np.int64)
    rest = np.setdiff1d(index, keep)
    n = max(limit - len(keep), 0)
    pick = np.random.default_rng(seed).choice(rest, size=min(n, len(rest)), replace=False)
    return np.sort(np.concatenate([keep, pick]))


# --------------------------------------------------------------------------------------------
# Datasets, training, prediction
# --------------------------------------------------------------------------------------------


def interval_dataset(windows: pd.DataFrame, y: np.ndarray | None, reference: str, *, n_blocks: int = 8, encode: bool = True) -> ray.data.Dataset:
    """Windows (and labels) as a Ray Dataset, optionally one-hot encoded.

    Parameters
    ----------
    windows
        ``chrom``, ``start``, ``end`` (0-based half-open, all of one length).
    y
        ``(n, K)`` 0/1 labels or None.
    encode
        Add ``x`` ``(L, 4) uint8`` (and ``y`` ``(K,) float32``) with
        :func:`methray.windows.encode_intervals`; without it the dataset carries coordinates
        (and ``labels``) only, for :class:`IntervalPredictor` to encode.
    """
    from ray.data.extensions import ArrowTensorArray

    cols = {
        "chrom": pa.array(windows["chrom"].astype(str).to_numpy(), pa.string()),
        "start": pa.array(windows["start"].to_numpy(np.int64)),
        "end": pa.array(windows["end"].to_numpy(np.int64)),
    }
    if y is not None:
        cols["labels"] = ArrowTensorArray.from_numpy(np.ascontiguousarray(y, dtype=np.uint8))
    table = pa.table(cols)
    n = len(table)
    k = max(1, min(n_blocks, n))
    bounds = np.linspace(0, n, k + 1).astype(int)
    ds = ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])
    if encode:
        ds = ds.map_batches(encode_intervals, fn_kwargs={"reference": reference}, batch_size=512, batch_format="numpy")
    return ds


def train_model(cfg: RegulatoryConfig, model: str, stride: int, *, progress: bool = True) -> dict:
    """Train ``model`` on the training windows at ``stride`` (multilabel BCE); returns a summary.

    The training set is the ``train`` split capped at ``budget.max_train_windows`` (the
    inside-training block is always part of it); validation the ``valid`` split capped at
    ``budget.max_val_windows``.
    """
    from .train import fit

    windows, y, classes = load_split_labels(cfg, stride)
    length = cfg.labels.length
    tr = cap_rows(np.flatnonzero(windows["split"].to_numpy() == "train"), cfg.budget.max_train_windows, cfg.train.seed,
                  keep=np.flatnonzero(windows["inside"].to_numpy()))
    va = cap_rows(np.flatnonzero(windows["split"].to_numpy() == "valid"), cfg.budget.max_val_windows, cfg.train.seed)
    params = cfg.model_params.get(model, {})
    models.build(model, window_length=length, n_outputs=len(classes), **params)  # fail early on a bad combination
    meta = ckpt.CheckpointMeta(
        model=model, task="multilabel", window_length=length, exclude_cpg=False, n_outputs=len(classes),
        params=params, classes=classes, stride=stride, genome=cfg.genome, run_name=cfg.run_name,
        n_train_windows=int(len(tr)), budget=budget_line(cfg),
    )
    res = fit(
        interval_dataset(windows.iloc[tr], y[tr], cfg.reference),
        interval_dataset(windows.iloc[va], y[va], cfg.reference),
        meta=meta, train_cfg=cfg.train, name=f"{cfg.run_name}-{model}-s{stride}",
        storage_path=cfg.path("ray_train"), checkpoint_dir=storage.join(cfg.model_dir(model, stride), "checkpoint"),
        progress=progress,
    )
    return {"model": model, "stride": stride, "n_train": res.n_train, "n_val": res.n_val,
            "best_val_loss": res.best_val_loss, "seconds": res.seconds}


def rc_average_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean of the sigmoid outputs for windows and their reverse complements (DanQ).

    Parameters
    ----------
    model
        A multilabel model, ``(N, L, 4) float32`` -> ``(N, K)`` logits.
    x
        ``(N, L, 4) float32`` one-hot windows (A, C, G, T).

    Returns
    -------
    torch.Tensor
        ``(N, K) float32`` probabilities ``(sigmoid(f(x)) + sigmoid(f(rc(x)))) / 2``; the same
        for ``x`` and ``rc(x)`` (strand symmetric by construction). Quang & Xie (2016), DanQ.
    """
    both = model(torch.cat([x, reverse_complement(x)]))
    p = tasks.predict("multilabel", both)
    return (p[: len(x)] + p[len(x):]) / 2


class IntervalPredictor:
    """Ray Data callable class: encode windows ``[start, end)`` and predict class probabilities.

    Parameters
    ----------
    checkpoint_dir
        A multilabel methray checkpoint.
    reference
        FASTA path.
    rc_average
        Average forward and reverse-complement outputs (:func:`rc_average_probs`).
    threads
        torch intra-op threads.

    ``__call__`` takes ``chrom``, ``start``, ``end`` (and ``labels``) and returns the input
    columns plus ``prob`` ``(B, K) float32``.
    """

    def __init__(self, checkpoint_dir: str, reference: str, rc_average: bool = True, threads: int = 1):
        torch.set_num_threads(max(1, threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.meta = ckpt.load(checkpoint_dir, self.device)
        self.reference, self.rc_average = reference, rc_average

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        enc = encode_intervals(batch, self.reference)
        out = {k: v for k, v in enc.items() if k != "x"}
        if len(enc["start"]) == 0:
            out["prob"] = np.zeros((0, self.meta.n_outputs), np.float32)
            return out
        x = torch.from_numpy(enc["x"]).to(self.device).float()
        with torch.inference_mode():
            p = rc_average_probs(self.model, x) if self.rc_average else tasks.predict("multilabel", self.model(x))
        out["prob"] = p.float().cpu().numpy()
        return out


def predict_windows(cfg: RegulatoryConfig, checkpoint_dir: str, windows: pd.DataFrame, y: np.ndarray | None, *, rc_average: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Score windows with Ray Data batch inference.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end``, in the input order.
    prob : np.ndarray
        ``(n, K) float32``.
    y : np.ndarray or None
        ``(n, K) float32`` labels in the same order.
    """
    ckpt.read_meta(checkpoint_dir)  # fail in the driver, not in retried actor constructors
    ds = interval_dataset(windows.reset_index(drop=True), y, cfg.reference, n_blocks=4 * cfg.score.actors, encode=False)
    ds = ds.map_batches(
        IntervalPredictor,
        fn_constructor_kwargs={"checkpoint_dir": checkpoint_dir, "reference": cfg.reference, "rc_average": rc_average,
                               "threads": max(1, int(cfg.score.cpus_per_actor))},
        compute=ray.data.ActorPoolStrategy(size=cfg.score.actors),
        batch_size=cfg.score.batch_size, num_cpus=cfg.score.cpus_per_actor, num_gpus=cfg.score.gpus_per_actor,
        batch_format="numpy",
    )
    rows = [b for b in ds.iter_batches(batch_size=None, batch_format="numpy")]
    if not rows:
        raise MethrayError("no windows to score")
    cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    out = pd.DataFrame({"chrom": cat["chrom"].astype(str), "start": cat["start"], "end": cat["end"]})
    order = np.lexsort((out["start"].to_numpy(), out["chrom"].to_numpy()))  # blocks may come back out of order
    out = out.iloc[order].reset_index(drop=True)
    prob = cat["prob"][order]
    labels = cat["y"][order] if "y" in cat else None
    return out, prob, labels


# --------------------------------------------------------------------------------------------
# Step 3 / 4: evaluation and the overfitting check
# --------------------------------------------------------------------------------------------


def evaluate_model(cfg: RegulatoryConfig, model: str, stride: int) -> pd.DataFrame:
    """Per-class and mean AUROC / AUPRC of a trained model on the held-out and inside blocks.

    Returns
    -------
    pd.DataFrame
        Columns :data:`METRIC_COLUMNS` (region ``held_out`` = the test block, ``inside`` = the
        inside-training block), one row per class plus a ``mean`` row per region.
    """
    windows, y, classes = load_split_labels(cfg, stride)
    ck = storage.join(cfg.model_dir(model, stride), "checkpoint")
    if ckpt.read_meta(ck).classes != classes:
        raise MethrayError(f"{ck}: trained on other classes than {classes}; retrain")
    masks = {"inside": windows["inside"].to_numpy(), "held_out": windows["split"].to_numpy() == "test"}
    rows = {r: cap_rows(np.flatnonzero(masks[r]), cfg.budget.max_eval_windows, cfg.train.seed) for r in REGIONS}
    both = np.concatenate([rows[r] for r in REGIONS])  # one inference pass (actor start-up is costly)
    scored, prob, yy = predict_windows(cfg, ck, windows.iloc[both], y[both], rc_average=cfg.evaluate.rc_average)
    key = pd.MultiIndex.from_frame(scored[["chrom", "start"]])
    frames = []
    for region in REGIONS:
        sel = key.get_indexer(pd.MultiIndex.from_frame(windows.iloc[rows[region]][["chrom", "start"]]))
        m = multilabel_metrics(yy[sel].astype(np.uint8), prob[sel], classes)
        frames.append(m.assign(model=model, stride=stride, region=region))
    return pd.concat(frames, ignore_index=True)[METRIC_COLUMNS]


def overfit_table(metrics: pd.DataFrame, n_train: dict[tuple[str, int], int]) -> pd.DataFrame:
    """DeepGMAP Table 2 layout: one row per (stride, model, region) with the mean metrics.

    Parameters
    ----------
    metrics
        Rows of :func:`evaluate_model` (several models / strides).
    n_train
        ``(model, stride)`` -> training windows used.
    """
    mean = metrics[metrics["class"] == MEAN_ROW]
    out = pd.DataFrame({
        "stride": mean["stride"].to_numpy(), "model": mean["model"].to_numpy(), "region": mean["region"].to_numpy(),
        "mean_auroc": mean["auroc"].to_numpy(), "mean_auprc": mean["auprc"].to_numpy(), "n_windows": mean["n"].to_numpy(),
    })
    out["n_train"] = [n_train.get((m, int(s)), -1) for m, s in zip(out["model"], out["stride"])]
    out["region"] = pd.Categorical(out["region"], REGIONS)
    return out.sort_values(["stride", "model", "region"]).reset_index(drop=True).astype({"region": str})[OVERFIT_COLUMNS]


# --------------------------------------------------------------------------------------------
# Step 5: genome-wide tracks
# --------------------------------------------------------------------------------------------


def parse_region(text: str) -> tuple[str, int, int]:
    """``chrom:start-end`` (0-based half-open, commas allowed) -> ``(chrom, start, end)``."""
    try:
        chrom, span = text.rsplit(":", 1)
        a, b = (int(v.replace(",", "")) for v in span.split("-"))
    except ValueError:
        raise MethrayError(f"genome_scan.region: expected chrom:start-end, got {text!r}") from None
    if not 0 <= a < b:
        raise MethrayError(f"genome_scan.region: expected 0 <= start < end, got {text!r}")
    return chrom, a, b


def scan_windows(cfg: RegulatoryConfig, stride: int) -> tuple[pd.DataFrame, int]:
    """Every window of the label grid (``labels.length`` every ``stride`` bp) with at most
    ``labels.max_n_fraction`` N, on ``genome_scan.region`` or every chosen contig.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end`` (0-based half-open), genome order.
    n_dropped : int
        Grid windows dropped for N.
    """
    from .genome import open_reference

    ref = open_reference(cfg.reference)
    length = cfg.labels.length
    if cfg.genome_scan.region:
        chrom, lo, hi = parse_region(cfg.genome_scan.region)
        ref.check_chrom(chrom, source="genome_scan.region")
        spans = [(chrom, lo, min(hi, ref.sizes[chrom]))]
    else:
        spans = [(c, 0, ref.sizes[c]) for c in (cfg.labels.chroms or ref.chroms)]
    frames, dropped = [], 0
    for chrom, lo, hi in spans:
        # windows of the label grid (multiples of stride from the contig start) inside [lo, hi)
        starts = window_starts(ref.sizes[chrom], length, stride)
        starts = starts[(starts >= lo) & (starts + length <= hi)]
        keep = n_counts(ref.contig_codes(chrom), starts, length) <= cfg.labels.max_n_fraction * length
        dropped += int((~keep).sum())
        frames.append(pd.DataFrame({"chrom": chrom, "start": starts[keep], "end": starts[keep] + length}))
    return pd.concat(frames, ignore_index=True), dropped


def write_tracks(cfg: RegulatoryConfig, model: str, stride: int, windows: pd.DataFrame, prob: np.ndarray, classes: list[str]) -> list[str]:
    """One bedGraph per class; each window's probability on its central ``stride`` bp."""
    from .genome import open_reference

    mid = (windows["start"].to_numpy() + windows["end"].to_numpy()) // 2
    half = min(stride, cfg.labels.length)
    bins = windows[["chrom"]].assign(start=np.maximum(mid - half // 2, 0))
    bins["end"] = bins["start"] + half
    order = open_reference(cfg.reference).chroms
    paths = []
    for k, cls in enumerate(classes):
        path = cfg.path("tracks", f"{model}.{_safe(cls)}.bedGraph")
        tracks.write_bedgraph(
            bins.assign(prob=prob[:, k]), path, name=f"{cls} {model}",
            description=f"methray {model} P({cls}) per {cfg.labels.length} bp window (centre {half} bp), {cfg.genome}",
            chrom_order=order, value_col="prob", pos_col="start", end_col="end",
        )
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_regulatory(cfg: RegulatoryConfig, steps: list[str] | None = None) -> dict:
    """Run the selected steps (default all, in order ``labels, train, evaluate, overfit, genome``).

    Returns
    -------
    dict
        ``metrics`` and ``overfit`` tables (when run) and the bedGraph paths.

    Raises
    ------
    MethrayError
        Unknown step, bad config or input, missing outputs of an earlier step.
    """
    steps = list(steps or STEPS)
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise MethrayError(f"unknown step(s) {bad}; expected some of {', '.join(STEPS)}")
    t0 = time.perf_counter()
    start_run(cfg, with_ray=False)
    stride = cfg.labels.stride
    header = [f"methray regulatory {cfg.run_name}: {cfg.genome}, window {cfg.labels.length} bp, classes {cfg.labels.classes or 'all'}",
              budget_line(cfg)]
    log.info(header[1])
    result: dict = {}
    over_models = cfg.overfit.models or cfg.models
    strides = sorted({stride} | (set(cfg.overfit.strides) if "overfit" in steps else set()))
    if "labels" in steps:
        for s in strides:
            t = time.perf_counter()
            info = make_labels(cfg, s)
            log.info(f"labels stride {s}:\n  " + info["summary"].format().replace("\n", "\n  ")
                 + f"\n  split {info['split']}, inside block {info['inside']} windows ({time.perf_counter() - t:.0f} s)")
    if any(s in steps for s in ("train", "evaluate", "overfit", "genome")):
        start_ray(cfg)
    n_train: dict[tuple[str, int], int] = {}
    jobs = [(m, stride) for m in cfg.models]
    if "overfit" in steps:
        jobs += [(m, s) for s in strides for m in over_models if (m, s) not in jobs]
    if "train" in steps:
        for m, s in jobs:
            r = train_model(cfg, m, s)
            n_train[(m, s)] = r["n_train"]
            log.info(f"train {m} stride {s}: {r['n_train']:,} train / {r['n_val']:,} val windows; best val BCE {r['best_val_loss']:.4f} ({r['seconds']:.0f} s)")
    for m, s in jobs:
        if (m, s) not in n_train and storage.exists(storage.join(cfg.model_dir(m, s), "checkpoint", "meta.json")):
            n_train[(m, s)] = ckpt.read_meta(storage.join(cfg.model_dir(m, s), "checkpoint")).n_train_windows or -1
    evaluated: list[pd.DataFrame] = []
    if "evaluate" in steps or "overfit" in steps:
        for m, s in jobs if "overfit" in steps else [(m, stride) for m in cfg.models]:
            t = time.perf_counter()
            evaluated.append(evaluate_model(cfg, m, s))
            log.info(f"evaluate {m} stride {s} ({time.perf_counter() - t:.0f} s)")
        allm = pd.concat(evaluated, ignore_index=True)
    if "evaluate" in steps:
        main = allm[(allm["stride"] == stride) & allm["model"].isin(cfg.models)].reset_index(drop=True)
        write_table(main, cfg.path("metrics"), header)
        result["metrics"] = main
        log.info(metrics_summary(main))
    if "overfit" in steps:
        sel = allm[allm["model"].isin(over_models) & allm["stride"].isin(strides)]
        table = overfit_table(sel, n_train)
        write_table(table, cfg.path("overfit"), header + ["DeepGMAP Table 2: inside = a block of the training windows; held_out = the test block"])
        result["overfit"] = table
        log.info("overfitting check (mean over classes):\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "genome" in steps:
        t = time.perf_counter()
        gm = cfg.genome_scan.model or cfg.models[0]
        gs = cfg.genome_scan.stride or stride
        ck = storage.join(cfg.model_dir(gm, stride), "checkpoint")
        classes = ckpt.read_meta(ck).classes
        wins, dropped = scan_windows(cfg, gs)
        wins, prob, _ = predict_windows(cfg, ck, wins, None, rc_average=cfg.genome_scan.rc_average)
        result["tracks"] = write_tracks(cfg, gm, gs, wins, prob, classes)
        log.info(f"genome {gm}: {len(wins):,} windows scored ({dropped:,} dropped for N) -> {len(result['tracks'])} bedGraphs in "
             f"{cfg.path('tracks')} ({time.perf_counter() - t:.0f} s)")
    log.info(f"regulatory: outputs in {cfg.out_dir} ({time.perf_counter() - t0:.0f} s)")
    return result


def metrics_summary(table: pd.DataFrame) -> str:
    """Per-class and mean AUROC / AUPRC, one line per (model, region, class)."""
    lines = [f"  {'model':<12}{'stride':>7} {'region':<9}{'class':<10}{'n':>7}{'n_pos':>7}{'AUROC':>8}{'AUPRC':>8}"]
    for r in table.itertuples():
        lines.append(f"  {r.model:<12}{r.stride:>7} {r.region:<9}{r._4:<10}{r.n:>7,}{r.n_pos:>7,}{r.auroc:>8.3f}{r.auprc:>8.3f}")
    return "regulatory metrics (AUPRC primary):\n" + "\n".join(lines)
