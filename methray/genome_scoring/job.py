"""``methray score-genome``: plan, score the missing shards, assemble, evaluate; resumable.

See :mod:`methray.genome_scoring` for the steps and the outputs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import checkpoint as ckpt
from .. import storage
from ..errors import MethrayError
from ..genome import open_reference
from ..run import start_ray, start_run
from ..predictor import map_checkpoints
from ..shards import Shard, ShardLedger
from .actors import SetPredictor, load_shard_sites
from .config import TissueSetConfig
from .evaluate import evaluate_set
from .outputs import assemble_tracks, predictions_dir, read_tissue_predictions, write_shard
from .plan import ShardCounts, cpg_table_for, plan, shard_counts

log = logging.getLogger(__name__)

JOB_NAME = "job.json"
PIECE_BATCHES = 16
"""Sub-batches (``score.batch_size`` CpGs each) per actor call: a shard is scored in pieces."""
SUMMARY_NAME = "_summary.json"


@dataclass
class GenomeResult:
    """What :func:`score_genome` did and wrote (also in ``<prefix>/_summary.json``)."""

    prefix: str
    n_shards: int
    shards_done_before: int
    cpgs: int
    excluded: int
    scored: int
    scored_this_run: int
    seconds: float
    outputs: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    already_complete: bool = False

    @property
    def cpgs_per_second(self) -> float:
        return self.scored_this_run / self.seconds if self.seconds else float("nan")


def check_checkpoints(cfg: TissueSetConfig) -> dict[str, ckpt.CheckpointMeta]:
    """Load every checkpoint once in the driver (fail here, not in retried actors); tissue -> meta."""
    return {t.name: ckpt.check_loads(t.checkpoint) for t in cfg.tissues}


def _job_record(cfg: TissueSetConfig, metas: dict, table: str) -> dict:
    return {
        "reference": cfg.reference,
        "cpg_table": table,
        "max_n_fraction": cfg.max_n_fraction,
        "tissues": [{"name": t.name, "checkpoint": t.checkpoint, "model": metas[t.name].model} for t in cfg.tissues],
    }


def _bind_job(prefix: str, record: dict) -> None:
    """Record what this prefix scores; a rerun with other models or inputs is refused."""
    path = storage.join(prefix, JOB_NAME)
    if storage.exists(path):
        fs, p = storage.filesystem(path)
        with fs.open(p, "r") as fh:
            old = json.load(fh)
        if old != record:
            raise MethrayError(f"{path}: this output was started with other tissues, checkpoints or inputs; use a new out_dir/run_name/date")
        return
    with storage.atomic_write(path) as fh:
        json.dump(record, fh, indent=1)


def run_shards(
    cfg: TissueSetConfig, prefix: str, table: str, todo: list[Shard], counts: dict[int, ShardCounts], ledger: ShardLedger, models: dict[str, str]
) -> int:
    """Score the ``todo`` shards with one Ray Data pipeline; write each shard and its marker.

    ``models`` maps each tissue to its model's name (prediction file names and rows).

    Returns
    -------
    int
        CpGs scored.
    """
    import ray
    from tqdm import tqdm

    for s in [s for s in todo if counts[s.index].scored == 0]:  # nothing to score: done at once
        ledger.mark_done(s, n_sites=0, seconds=0.0, cpgs=counts[s.index].cpgs, excluded=counts[s.index].excluded)
    todo = [s for s in todo if counts[s.index].scored > 0]
    if not todo:
        return 0
    # Pieces of PIECE_BATCHES sub-batches (cut at sub-batch boundaries, so every CpG keeps its
    # neighbours): blocks small enough to balance the actors, large enough to amortise a call.
    piece = PIECE_BATCHES * cfg.score.batch_size
    items = [
        {"chrom": s.chrom, "start": s.start, "end": s.end, "shard": s.index, "lo": lo, "hi": min(lo + piece, counts[s.index].scored)}
        for s in todo
        for lo in range(0, counts[s.index].scored, piece)
    ]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # The same resources as the actors: Ray Data fuses the read into the actor stage (no
    # separate read tasks competing for the cores, no intermediate blocks).
    ds = ds.map_batches(
        load_shard_sites, fn_kwargs={"table": table}, batch_size=1, batch_format="numpy",
        num_cpus=cfg.score.cpus_per_actor, num_gpus=cfg.score.gpus_per_actor,
    )
    ds = map_checkpoints(ds, SetPredictor, {t.name: t.checkpoint for t in cfg.tissues}, cfg.reference, cfg.score, rc_average=True)  # one call per piece: sub-batches are cut inside, from the shard start
    by_index = {s.index: s for s in todo}
    pending: dict[int, list[dict[str, np.ndarray]]] = {}
    received: dict[int, int] = {}
    total = sum(counts[s.index].scored for s in todo)
    started = {s.index: time.perf_counter() for s in todo}
    n_done = 0
    bar = tqdm(total=total, unit="CpG", unit_scale=True, desc="score-genome", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    bar.set_postfix_str(f"shards 0/{len(todo)}")
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            shard_of = batch["shard"]
            for idx in np.unique(shard_of):
                sel = shard_of == idx
                part = {k: v[sel] for k, v in batch.items() if k != "shard"}
                idx, n_part = int(idx), int(sel.sum())
                pending.setdefault(idx, []).append(part)
                received[idx] = received.get(idx, 0) + n_part
                bar.update(n_part)
                expected = counts[idx].scored
                if received[idx] > expected:
                    raise MethrayError(f"shard {by_index[idx].id}: got {received[idx]} predictions for {expected} CpGs")
                if received[idx] == expected:
                    shard = by_index[idx]
                    parts = pending.pop(idx)
                    write_shard(prefix, shard, pd.DataFrame({k: np.concatenate([q[k] for q in parts]) for k in parts[0]}), models)
                    ledger.mark_done(
                        shard, n_sites=expected, seconds=time.perf_counter() - started[idx],
                        cpgs=counts[idx].cpgs, excluded=counts[idx].excluded,
                    )
                    n_done += 1
                    bar.set_postfix_str(f"shards {n_done}/{len(todo)}")
    finally:
        bar.close()
    if pending or n_done != len(todo):
        raise MethrayError(f"score-genome: {len(todo) - n_done} shard(s) came back incomplete; rerun to finish them")
    return total


def score_genome(cfg: TissueSetConfig, date: str | None = None) -> GenomeResult:
    """Run the genome-wide scoring job (see the module docstring); resumes a killed run.

    Parameters
    ----------
    cfg
        The tissue set (:class:`methray.genome_scoring.config.TissueSetConfig`).
    date
        ``YYYY-MM-DD``: outputs go under ``<out_dir>/<run_name>/<date>/``.

    Returns
    -------
    GenomeResult
        Counts, timings and output paths.

    Raises
    ------
    MethrayError
        Bad inputs (reference, checkpoint, regions, measured files), or a prefix started with
        another plan / tissue set. Finished shards stay recorded; outputs not yet complete do
        not appear under their final names.
    """
    t0 = time.perf_counter()
    storage.configure_s3(cfg.s3.endpoint_url, cfg.s3.region, cfg.storage)
    prefix = cfg.prefix(date)
    summary_path = storage.join(prefix, SUMMARY_NAME)
    if storage.exists(summary_path):
        fs, p = storage.filesystem(summary_path)
        with fs.open(p, "r") as fh:
            done = json.load(fh)
        log.info(f"score-genome: {prefix} is already complete (remove it to score again)")
        return GenomeResult(**{**done, "already_complete": True})

    ref = open_reference(cfg.reference)
    metas = check_checkpoints(cfg)
    models = {t.name: metas[t.name].model for t in cfg.tissues}
    storage.makedirs(prefix)
    table = cpg_table_for(cfg, prefix, ref)
    _bind_job(prefix, _job_record(cfg, metas, table))
    start_run(cfg, with_ray=False, run_dir=prefix)  # after _bind_job: a refused rerun leaves config.yaml alone
    shards = plan(cfg, ref)
    if not shards:
        raise MethrayError("score-genome: nothing to score (no contig / region selected)")
    ledger = ShardLedger(prefix)
    ledger.bind_plan(shards, shard_bp=cfg.shard_bp)
    counts_list = shard_counts(table, shards)
    counts = {s.index: c for s, c in zip(shards, counts_list)}
    todo = ledger.missing(shards)
    n_cpgs = sum(c.cpgs for c in counts_list)
    n_excl = sum(c.excluded for c in counts_list)
    todo_sites = sum(counts[s.index].scored for s in todo)
    log.info(
        f"score-genome: {prefix}: {len(shards)} shards of {cfg.shard_bp:,} bp ({len(shards) - len(todo)} done earlier); "
        f"{n_cpgs:,} CpGs, {n_excl:,} excluded (window > {cfg.max_n_fraction:g} N); {todo_sites:,} to score x {len(cfg.tissues)} model(s)"
    )
    t_score = time.perf_counter()
    scored_now = 0
    if todo:
        log.info(f"score-genome: {start_ray(cfg)}; {cfg.score.actors} actor(s)")
        scored_now = run_shards(cfg, prefix, table, todo, counts, ledger, models)
    score_s = time.perf_counter() - t_score
    missing = ledger.missing(shards)
    if missing:
        raise MethrayError(f"score-genome: {len(missing)} shard(s) not finished (first {missing[0].id}); rerun to finish them")

    outputs = {}
    for t in cfg.tissues:
        meta = metas[t.name]
        desc = f"methray {meta.model} (trained on {meta.tissue or '?'}) predicted beta, {t.name}, {cfg.genome}, all CpGs"
        outputs[t.name] = assemble_tracks(prefix, t.name, meta.model, desc, shards, counts_list, ref.sizes, cfg.score.track_order)
        outputs[t.name]["predictions"] = predictions_dir(prefix, t.name, meta.model)

    tables = evaluate_set(cfg, prefix, metas, lambda tissue: read_tissue_predictions(prefix, tissue, models[tissue], shards, counts_list), ref)
    result = GenomeResult(
        prefix=prefix,
        n_shards=len(shards),
        shards_done_before=len(shards) - len(todo),
        cpgs=n_cpgs,
        excluded=n_excl,
        scored=n_cpgs - n_excl,
        scored_this_run=scored_now,
        seconds=round(score_s, 3),
        outputs=outputs,
        models={t.name: {"model": metas[t.name].model, "trained_on": metas[t.name].tissue, "checkpoint": t.checkpoint} for t in cfg.tissues},
        tables=tables,
    )
    with storage.atomic_write(summary_path) as fh:
        json.dump({k: v for k, v in result.__dict__.items() if k != "already_complete"}, fh, indent=1)
    log.info(f"score-genome: total {time.perf_counter() - t0:.1f} s")
    return result


def summary_text(r: GenomeResult) -> str:
    """A human-readable summary of a run."""
    lines = [
        f"score-genome: {r.prefix}",
        f"  shards: {r.n_shards} ({r.shards_done_before} done before this run)",
        f"  CpGs: {r.cpgs:,}; excluded (mostly-N window): {r.excluded:,}; scored: {r.scored:,} per model",
    ]
    if not r.already_complete and r.scored_this_run and r.seconds > 0:
        lines.append(f"  this run: {r.scored_this_run:,} CpGs x {len(r.models)} model(s) in {r.seconds:.1f} s ({r.cpgs_per_second:,.0f} CpGs/s)")
    elif not r.already_complete:  # a resumed run whose shards were all scored before: no rate to give
        lines.append("  this run: no CpG left to score (every shard was scored by an earlier run); tracks and tables built")
    for tissue, out in r.outputs.items():
        lines.append(f"  {tissue}: {out['bedGraph']}, {out['bigWig']}")
    for name, path in r.tables.items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)
