"""Many-model training on Ray: every (gene, fold, model) unit, resumable through a ledger.

A unit is one model fitted on the training part of one fold of one gene and scored on the held
out part; a gene listed in ``final_models`` adds one more fit on all samples (saved for
``expression-predict``). Units are independent; to keep Ray's per-task overhead (~ms) small
next to the work, one Ray task runs ``compute.genes_per_task`` genes x all folds x one model,
with ``compute.cpus_per_task`` CPUs (fractions allowed) and one torch / BLAS thread per CPU.
DeepMethyGene tasks are submitted first (the longest), and take ``compute.gpus_per_task`` of a
GPU when the cluster has GPUs.

Ledger (``<out_dir>/ledger/<model>-<settings hash>/<gene_id>.json``): written by the driver,
atomically, as each task returns: the gene's out-of-fold predictions, the seeds, the epochs and
the seconds, plus a hash of the gene's inputs and folds. A rerun skips every gene whose record
exists with the same input hash; changing a model's settings changes its directory, so only
that model is redone. Final models go to ``<out_dir>/models/<model>/<gene_id>.pkl`` (pickle of
:class:`methray.expression.models.GeneModel`) before their record is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np

from .. import storage
from ..errors import MethrayError
from .config import ExpressionConfig
from .data import ExpressionData
from .models import GeneModel, make_estimator

log = logging.getLogger(__name__)


def unit_seed(base: int, gene_id: str, fold: int) -> int:
    """The seed of one unit: stable across runs, processes and Python hash randomisation."""
    return zlib.crc32(f"{base}:{gene_id}:{fold}".encode()) & 0x7FFFFFFF


def fit_gene(
    model: str,
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    cfg: ExpressionConfig,
    gene_id: str,
    probes: list[str],
    *,
    final: bool = False,
    device: str = "cpu",
) -> tuple[dict, GeneModel | None]:
    """All folds of one gene and one model (the work of the gene's units).

    Parameters
    ----------
    model
        A model name of :data:`methray.expression.config.MODELS`.
    X, y
        ``(n_samples, n_cpgs) float32`` M-values (NaN = missing) and ``(n_samples,)`` log2 expression.
    folds, groups
        ``(n_samples,) int64`` fold index and group label per sample.
    final
        Also fit on all samples and return that model.

    Returns
    -------
    record : dict
        ``pred`` (out-of-fold prediction per sample), ``seeds``, ``epochs`` (per fold;
        deepmethygene only, else None) and ``seconds`` (per fold).
    final_model : GeneModel or None
    """
    pred = np.full(len(y), np.nan)
    seeds, epochs, seconds = [], [], []
    for k in range(int(folds.max()) + 1):
        train = folds != k
        seed = unit_seed(cfg.seed, gene_id, k)
        t = time.perf_counter()
        m = GeneModel(make_estimator(model, cfg, seed, groups[train], device), probes).fit(X[train], y[train], groups[train])
        pred[~train] = m.predict(X[~train])
        seeds.append(seed)
        epochs.append(m.epochs)
        seconds.append(round(time.perf_counter() - t, 4))
    record = {"pred": pred.tolist(), "seeds": seeds, "epochs": epochs, "seconds": seconds}
    final_model = None
    if final:
        seed = unit_seed(cfg.seed, gene_id, -1)
        final_model = GeneModel(make_estimator(model, cfg, seed, groups, device), probes).fit(X, y, groups)
        record.update(final_seed=seed, final_epochs=final_model.epochs)
    return record, final_model


def _fit_chunk(model: str, items: list[dict], shared: dict, cfg: ExpressionConfig, threads: int) -> list[tuple[dict, bytes | None]]:
    """Body of one Ray task: ``items`` genes x all folds x ``model``; returns (record, pickled final model)."""
    import ray
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    device = "cuda" if model == "deepmethygene" and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    out = []
    with threadpool_limits(threads):
        for it in items:
            X = np.ascontiguousarray(shared["mvalues"][it["rows"]].T)
            y = shared["expression"][it["row"]]
            record, final = fit_gene(model, X, y, shared["folds"], shared["groups"], cfg, it["gene_id"], it["probes"],
                                     final=model in cfg.final_models, device=device)
            record.update(gene_id=it["gene_id"], model=model, data_hash=it["data_hash"], device=device)
            out.append((record, pickle.dumps(final) if final is not None else None))
    return out


def data_hash(X: np.ndarray, y: np.ndarray, folds: np.ndarray, groups: np.ndarray) -> str:
    """Hash of one gene's inputs and the folds (a ledger record is reused only when it matches)."""
    h = hashlib.sha1()
    for a in (X, y, folds, groups):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class UnitLedger:
    """Finished (gene, model) records of an output directory (see the module docstring).

    Holds no state besides paths: a new ledger (a new process after a kill) sees what earlier
    ones recorded.
    """

    def __init__(self, cfg: ExpressionConfig):
        self.cfg = cfg

    def settings_hash(self, model: str) -> str:
        return hashlib.sha1(json.dumps(self.cfg.model_settings(model), sort_keys=True).encode()).hexdigest()[:10]

    def record_path(self, model: str, gene_id: str) -> str:
        return self.cfg.path("ledger", f"{model}-{self.settings_hash(model)}", f"{gene_id}.json")

    def model_path(self, model: str, gene_id: str) -> str:
        return self.cfg.path("models", model, f"{gene_id}.pkl")

    def load(self, model: str, gene_id: str, expect_hash: str) -> dict | None:
        """The record of (model, gene), or None if absent or made from other inputs."""
        path = self.record_path(model, gene_id)
        if not storage.exists(path):
            return None
        fs, p = storage.filesystem(path)
        with fs.open(p, "r") as fh:
            record = json.load(fh)
        if record.get("data_hash") != expect_hash:
            return None
        if model in self.cfg.final_models and not storage.exists(self.model_path(model, gene_id)):
            return None
        return record

    def save(self, record: dict, final_model: bytes | None) -> None:
        """Write the final model (if any), then the record: a record means the unit group is complete."""
        model, gene_id = record["model"], record["gene_id"]
        if final_model is not None:
            with storage.atomic_write(self.model_path(model, gene_id), "wb") as fh:
                fh.write(final_model)
        with storage.atomic_write(self.record_path(model, gene_id)) as fh:
            json.dump(record, fh)


@dataclass
class TrainStats:
    """What :func:`train_units` did: units (gene x fold x model) in total, done before, run now."""

    units_total: int
    units_before: int
    units_run: int
    tasks: int
    seconds: float
    cpus: float
    gpus: float

    @property
    def units_per_second(self) -> float:
        return self.units_run / self.seconds if self.seconds > 0 else float("nan")


def train_units(cfg: ExpressionConfig, data: ExpressionData, folds: np.ndarray, groups: np.ndarray) -> tuple[dict, TrainStats]:
    """Run every missing (gene, fold, model) unit on Ray; return all records.

    Parameters
    ----------
    cfg, data
        The job config and its inputs (:func:`methray.expression.data.load_data`).
    folds, groups
        ``(n_samples,)`` from :func:`methray.expression.data.data_folds`.

    Returns
    -------
    records : dict
        ``{(model, gene_id): record}`` for every model and gene (from the ledger or run now).
    stats : TrainStats

    Raises
    ------
    MethrayError
        If tasks failed (the others' records are kept: a rerun finishes the rest).
    """
    import ray

    ledger = UnitLedger(cfg)
    k = cfg.cv.n_folds
    mv = data.mvalues.to_numpy(np.float32)
    ex = data.expression.to_numpy(np.float64)
    row_of = {p: i for i, p in enumerate(data.mvalues.index)}
    items, records = {}, {}
    for j, g in enumerate(data.genes):
        rows = [row_of[p] for p in g.probes]
        items[g.gene_id] = {"gene_id": g.gene_id, "probes": g.probes, "rows": rows, "row": j,
                            "data_hash": data_hash(mv[rows], ex[j], folds, groups)}
    todo: dict[str, list[dict]] = {}
    for model in cfg.models:
        for g in data.genes:
            rec = ledger.load(model, g.gene_id, items[g.gene_id]["data_hash"])
            if rec is None:
                todo.setdefault(model, []).append(items[g.gene_id])
            else:
                records[(model, g.gene_id)] = rec
    units_total = len(cfg.models) * len(data.genes) * k
    units_before = len(records) * k
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    stats = TrainStats(units_total, units_before, 0, 0, 0.0, cpus, gpus)
    if not todo:
        log.info("expression: all %d units done earlier", units_total)
        return records, stats

    use_gpu = gpus > 0 if cfg.compute.use_gpu == "auto" else bool(cfg.compute.use_gpu)
    if use_gpu and gpus == 0:
        raise MethrayError("compute.use_gpu=true but the Ray cluster has no GPU")
    threads = max(1, int(cfg.compute.cpus_per_task))
    shared = ray.put({"mvalues": mv, "expression": ex, "folds": folds, "groups": groups})
    remote = ray.remote(_fit_chunk)
    pending = {}
    for model in sorted(todo, key=lambda m: m != "deepmethygene"):  # longest first
        opts = {"num_cpus": cfg.compute.cpus_per_task, "max_retries": 1}
        if use_gpu and model == "deepmethygene":
            opts["num_gpus"] = cfg.compute.gpus_per_task
        genes = todo[model]
        for i in range(0, len(genes), cfg.compute.genes_per_task):
            chunk = genes[i : i + cfg.compute.genes_per_task]
            pending[remote.options(**opts).remote(model, chunk, shared, cfg, threads)] = (model, chunk)
    stats.tasks = len(pending)
    n_run_units = sum(len(v) for v in todo.values()) * k
    genes_left = {g.gene_id: sum((m, g.gene_id) not in records for m in cfg.models) for g in data.genes}
    genes_done = sum(v == 0 for v in genes_left.values())
    log.info("expression: %d units to run (%d done earlier) in %d Ray tasks on %g CPU / %g GPU",
             n_run_units, units_before, len(pending), cpus, gpus)

    from tqdm import tqdm

    errors = []
    t0 = time.perf_counter()
    bar = tqdm(total=n_run_units, unit="unit", desc="expression", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    try:
        refs = list(pending)
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            model, chunk = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001  a failed task: keep the others, report at the end
                errors.append(f"{model} {chunk[0]['gene_id']}..: {type(exc).__name__}: {str(exc).splitlines()[-1]}")
                continue
            for record, final in results:
                ledger.save(record, final)
                records[(model, record["gene_id"])] = record
                genes_left[record["gene_id"]] -= 1
                genes_done += genes_left[record["gene_id"]] == 0
                bar.update(k)
                stats.units_run += k
            rate = stats.units_run / (time.perf_counter() - t0)
            bar.set_postfix_str(f"genes done {genes_done}/{len(data.genes)}")
            log.info("expression: genes done %d/%d, %d/%d units, %.2f units/s, ETA %.0f s", genes_done, len(data.genes),
                     stats.units_run, n_run_units, rate, (n_run_units - stats.units_run) / rate if rate else float("nan"))
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref)
    stats.seconds = time.perf_counter() - t0
    if errors:
        raise MethrayError(f"expression: {len(errors)} task(s) failed (finished units are kept; rerun to finish): {errors[0]}")
    return records, stats
