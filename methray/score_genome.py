"""Genome-wide scoring of a tissue set: every CpG, every (tissue, model) pair, resumable.

The job (``methray score-genome --config tissue_set.yaml [--date D]``):

1. **CpGs**: the CpG table of the reference (:mod:`methray.cpgs`), enumerated into
   ``<prefix>/cpgs`` unless ``cpg_table`` names one. Sites whose window is mostly N
   (``excluded``) are skipped and counted.
2. **Shards**: the contigs (or ``chroms`` / ``regions``) are cut into ``shard_bp`` chunks
   (:func:`methray.shards.plan_shards`); the :class:`~methray.shards.ShardLedger` in
   ``<prefix>/_shards/`` records finished ones, so a rerun scores only the missing shards.
3. **Score**: one Ray Data pipeline over the missing shards: a task reads each shard's CpGs
   from the table, an actor pool of :class:`SetPredictor` (every checkpoint loaded once per
   actor; windows encoded inside the actor, no one-hot table is materialised) predicts them.
   Each actor call gets one shard's block and runs the models on fixed sub-batches counted
   from the shard's first CpG, so a prediction does not depend on how a run was interrupted.
4. **Per shard**, once all its CpGs are back: one Parquet file per tissue,
   ``predictions/tissue=<t>/chrom=<c>/<shard id>.parquet`` (``pos`` int64 0-based C,
   ``beta_pred`` float32, ``in_cpg_island`` bool), then its ledger marker.
5. **Assemble** (all shards done): per tissue ``<t>.<model>.bedGraph`` (track line; rows
   ``chrom, pos, pos+1, beta`` with 4 decimals; reference order then position) and
   ``<t>.<model>.bw`` (the same values), streamed shard by shard.
6. **Evaluate and plot** (:mod:`methray.genome_eval`, :mod:`methray.plots`), then
   ``_summary.json`` is written last: a prefix with it is complete and a rerun only reports it.

Every file is written under a temporary name and renamed when complete
(:func:`methray.storage.atomic_path`). ``<prefix>`` is ``<out_dir>/<run_name>[/<date>]``.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import checkpoint as ckpt
from . import storage, tracks
from .cpgs import enumerate_cpgs, load_summary, partition_dir, read_cpgs
from .errors import MethrayError
from .genome import Reference
from .predictor import Predictor
from .run import start_ray, start_run
from .shards import Shard, ShardLedger, plan_shards
from .tissue_set import TissueSetConfig

log = logging.getLogger(__name__)

JOB_NAME = "job.json"
SUMMARY_NAME = "_summary.json"
DIGITS = 4
SHARD_SCHEMA = pa.schema([("pos", pa.int64()), ("beta_pred", pa.float32()), ("in_cpg_island", pa.bool_())])


@dataclass
class ShardCounts:
    """CpGs of one shard: all, excluded (mostly-N window, not scored), scored."""

    cpgs: int = 0
    excluded: int = 0

    @property
    def scored(self) -> int:
        return self.cpgs - self.excluded


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


# ---------------------------------------------------------------- plan


def plan(cfg: TissueSetConfig, ref: Reference) -> list[Shard]:
    """The shard plan: ``chroms`` (default all) cut into ``shard_bp``, clipped to ``regions``.

    Returns
    -------
    list[Shard]
        In reference order then start, ``index`` 0..n-1.

    Raises
    ------
    MethrayError
        Unknown contig, or a region past a contig end.
    """
    regions = cfg.parsed_regions()
    chroms = cfg.chroms
    if regions:
        for c, _, e in regions:
            ref.check_chrom(c, source="regions")
            if e > ref.sizes[c]:
                raise MethrayError(f"regions: {c}:{e} is past the end of {c} ({ref.sizes[c]} bp)")
        chroms = sorted({c for c, _, _ in regions}, key=ref.chroms.index)
    shards = plan_shards(ref, cfg.shard_bp, chroms)
    if not regions:
        return shards
    clipped = []
    for s in shards:
        for c, a, b in regions:
            lo, hi = max(s.start, a), min(s.end, b)
            if c == s.chrom and lo < hi:
                clipped.append(Shard(s.chrom, lo, hi, len(clipped)))
    return clipped


def shard_counts(table: str, shards: list[Shard]) -> list[ShardCounts]:
    """CpGs and excluded CpGs in each shard (C position in ``[start, end)``)."""
    out = []
    by_chrom: dict[str, pd.DataFrame] = {}
    known = set(load_summary(table).per_chrom)
    for s in shards:
        if s.chrom not in by_chrom:
            by_chrom.clear()  # one contig in memory at a time
            by_chrom[s.chrom] = (
                read_cpgs(table, s.chrom, ["pos", "excluded"]) if s.chrom in known else pd.DataFrame({"pos": [], "excluded": []})
            )
        df = by_chrom[s.chrom]
        pos = df["pos"].to_numpy(np.int64)
        lo, hi = np.searchsorted(pos, [s.start, s.end])
        out.append(ShardCounts(int(hi - lo), int(df["excluded"].to_numpy(bool)[lo:hi].sum())))
    return out


# ---------------------------------------------------------------- Ray Data pieces


@functools.lru_cache(maxsize=1)
def _contig_sites(table: str, chrom: str) -> pd.DataFrame:
    # Consecutive shards of one contig usually land in the same worker: read the contig once.
    return read_cpgs(table, chrom, ["pos", "in_cpg_island", "excluded"])


def load_shard_sites(batch: dict[str, np.ndarray], table: str) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: shard rows -> the shards' scorable CpGs.

    Parameters
    ----------
    batch
        Shard rows: ``chrom`` (str), ``start``, ``end`` (0-based half-open), ``shard`` (plan index).
    table
        The CpG table (:mod:`methray.cpgs`).

    Returns
    -------
    dict
        ``chrom`` (str), ``pos`` (int64, 0-based C), ``in_cpg_island`` (bool), ``shard``
        (int64), ``row`` (int64, rank within the shard); excluded sites left out.
    """
    parts = []
    for chrom, start, end, shard in zip(batch["chrom"], batch["start"], batch["end"], batch["shard"]):
        df = _contig_sites(table, str(chrom))
        pos = df["pos"].to_numpy(np.int64)
        lo, hi = np.searchsorted(pos, [int(start), int(end)])
        sub = df.iloc[lo:hi]
        sub = sub[~sub["excluded"].to_numpy(bool)]
        parts.append(
            pd.DataFrame(
                {
                    "chrom": str(chrom),
                    "pos": sub["pos"].to_numpy(np.int64),
                    "in_cpg_island": sub["in_cpg_island"].to_numpy(bool),
                    "shard": np.int64(shard),
                    "row": np.arange(len(sub), dtype=np.int64),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    return {k: df[k].to_numpy() for k in df.columns}


class SetPredictor:
    """Ray Data callable class: every model of the set on a batch of CpGs.

    Wraps one :class:`methray.score.Predictor` per distinct checkpoint (loaded once per
    actor). Rows are predicted in sub-batches of ``batch_size`` keyed by ``(shard, row //
    batch_size)``, so a CpG is always computed together with the same neighbours whatever
    else the batch holds: outputs are reproducible to the bit across interrupted runs.

    Parameters
    ----------
    checkpoints
        Tissue name -> checkpoint directory.
    reference
        FASTA path.
    batch_size
        Sub-batch size (CpGs per forward pass).
    threads
        torch CPU threads per actor.

    ``__call__`` takes ``chrom, pos, in_cpg_island, shard, row`` ``(B,)`` and returns
    ``shard, pos, in_cpg_island`` and ``pred.<tissue>`` ``(B,) float32`` per tissue.
    """

    def __init__(self, checkpoints: dict[str, str], reference: str, batch_size: int, threads: int = 1):
        loaded: dict[str, Predictor] = {}
        self.predictors = {}
        for tissue, path in checkpoints.items():
            if path not in loaded:
                loaded[path] = Predictor(path, reference, threads)
            self.predictors[tissue] = loaded[path]
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["pos"])
        key = np.asarray(batch["shard"], np.int64) * (1 << 40) + np.asarray(batch["row"], np.int64) // self.batch_size
        _, group = np.unique(key, return_inverse=True)
        out = {k: np.asarray(batch[k]) for k in ("shard", "pos", "in_cpg_island")}
        cache: dict[int, np.ndarray] = {}
        for tissue, predictor in self.predictors.items():
            if id(predictor) not in cache:
                pred = np.empty(n, np.float32)
                for g in range(group.max() + 1 if n else 0):
                    sel = np.flatnonzero(group == g)
                    pred[sel] = predictor({"chrom": batch["chrom"][sel], "pos": batch["pos"][sel]})["beta_pred"]
                cache[id(predictor)] = pred
            out[f"pred.{tissue}"] = cache[id(predictor)]
        return out


# ---------------------------------------------------------------- outputs


def shard_path(prefix: str, tissue: str, shard: Shard) -> str:
    """``<prefix>/predictions/tissue=<t>/chrom=<c>/<shard id>.parquet``."""
    return storage.join(prefix, "predictions", f"tissue={tissue}", partition_dir(shard.chrom), f"{shard.id}.parquet")


def track_path(prefix: str, tissue: str, model: str, suffix: str) -> str:
    """``<prefix>/<tissue>.<model>.<suffix>`` (bedGraph / bw)."""
    return storage.join(prefix, f"{tissue}.{model}.{suffix}")


def write_shard(prefix: str, shard: Shard, df: pd.DataFrame, tissues: list[str]) -> None:
    """Write one finished shard's predictions: a Parquet file per tissue, atomically."""
    df = df.sort_values("pos", kind="stable")
    for t in tissues:
        table = pa.table(
            {"pos": df["pos"].to_numpy(np.int64), "beta_pred": df[f"pred.{t}"].to_numpy(np.float32), "in_cpg_island": df["in_cpg_island"].to_numpy(bool)},
            schema=SHARD_SCHEMA,
        )
        with storage.atomic_path(shard_path(prefix, t, shard)) as tmp:
            pq.write_table(table, tmp)


def read_shard(prefix: str, tissue: str, shard: Shard) -> pd.DataFrame:
    """One shard's predictions of a tissue: ``chrom, pos, beta_pred, in_cpg_island``."""
    fs, p = storage.filesystem(shard_path(prefix, tissue, shard))
    with fs.open(p, "rb") as fh:
        df = pq.read_table(fh).to_pandas()
    df.insert(0, "chrom", shard.chrom)
    return df


def read_predictions(prefix: str, tissue: str, shards: list[Shard], counts: list[ShardCounts]) -> pd.DataFrame:
    """A tissue's genome-wide predictions (shards with CpGs, plan order)."""
    frames = [read_shard(prefix, tissue, s) for s, c in zip(shards, counts) if c.scored]
    if not frames:
        return pd.DataFrame({"chrom": [], "pos": [], "beta_pred": [], "in_cpg_island": []})
    return pd.concat(frames, ignore_index=True)


def assemble_tracks(prefix: str, tissue: str, model: str, description: str, shards, counts, chrom_sizes) -> dict[str, str]:
    """Stream a tissue's shards into one sorted bedGraph and one bigWig (same 4-decimal values).

    Returns
    -------
    dict
        ``{"bedGraph": path, "bigWig": path}``.
    """
    with_data = [(s, c) for s, c in zip(shards, counts) if c.scored]
    bg = track_path(prefix, tissue, model, "bedGraph")
    with storage.atomic_write(bg) as fh:
        fh.write(tracks.track_line(f"{tissue} {model}", description))
        for s, _ in with_data:
            fh.write(tracks.bedgraph_lines(read_shard(prefix, tissue, s), "beta_pred", digits=DIGITS))

    def records():
        for s, _ in with_data:
            yield from tracks.site_records(read_shard(prefix, tissue, s), chrom=s.chrom, digits=DIGITS)

    bw = track_path(prefix, tissue, model, "bw")
    present = {s.chrom for s, _ in with_data}
    tracks.write_bigwig(bw, {c: n for c, n in chrom_sizes.items() if c in present}, records())
    return {"bedGraph": bg, "bigWig": bw}


# ---------------------------------------------------------------- the job


def check_checkpoints(cfg: TissueSetConfig) -> dict[str, dict]:
    """Load every checkpoint once in the driver (fail here, not in retried actors); tissue -> meta."""
    metas = {}
    for t in cfg.tissues:
        try:
            _, metas[t.name] = ckpt.load(t.checkpoint, "cpu")
        except MethrayError:
            raise
        except Exception as exc:  # torch raises many kinds for a damaged model.pt
            raise MethrayError(f"{t.checkpoint}: cannot load the checkpoint of tissue {t.name!r} ({type(exc).__name__}: {exc})") from exc
    return metas


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


def cpg_table_for(cfg: TissueSetConfig, prefix: str, ref: Reference) -> str:
    """The configured CpG table, or ``<prefix>/cpgs`` (enumerated on first use)."""
    if cfg.cpg_table:
        load_summary(cfg.cpg_table)  # complete?
        return cfg.cpg_table
    table = storage.join(prefix, "cpgs")
    if not storage.exists(storage.join(table, "_summary.json")):
        chroms = sorted({c for c, _, _ in cfg.parsed_regions()}, key=ref.chroms.index) if cfg.regions else cfg.chroms
        s = enumerate_cpgs(ref, table, cpg_islands=cfg.cpg_islands, max_n_fraction=cfg.max_n_fraction, chroms=chroms, overwrite=True)
        log.info(f"cpgs: {s.total:,} CpGs ({s.in_islands:,} in CpG islands, {s.excluded:,} excluded) -> {table} ({s.seconds:.1f} s)")
    return table


def run_shards(cfg: TissueSetConfig, prefix: str, table: str, todo: list[Shard], counts: dict[int, ShardCounts], ledger: ShardLedger) -> int:
    """Score the ``todo`` shards with one Ray Data pipeline; write each shard and its marker.

    Returns
    -------
    int
        CpGs scored.
    """
    import ray
    from tqdm import tqdm

    tissues = [t.name for t in cfg.tissues]
    for s in [s for s in todo if counts[s.index].scored == 0]:  # nothing to score: done at once
        ledger.mark_done(s, n_sites=0, seconds=0.0, cpgs=counts[s.index].cpgs, excluded=counts[s.index].excluded)
    todo = [s for s in todo if counts[s.index].scored > 0]
    if not todo:
        return 0
    items = [{"chrom": s.chrom, "start": s.start, "end": s.end, "shard": s.index} for s in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(load_shard_sites, fn_kwargs={"table": table}, batch_size=1, batch_format="numpy")
    ds = ds.map_batches(
        SetPredictor,
        fn_constructor_kwargs={
            "checkpoints": {t.name: t.checkpoint for t in cfg.tissues},
            "reference": cfg.reference,
            "batch_size": cfg.score.batch_size,
            "threads": max(1, int(cfg.score.cpus_per_actor)),
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.score.actors),
        batch_size=None,  # one call per shard block: sub-batches are cut inside, from the shard start
        num_cpus=cfg.score.cpus_per_actor,
        num_gpus=cfg.score.gpus_per_actor,
        batch_format="numpy",
    )
    by_index = {s.index: s for s in todo}
    pending: dict[int, list[pd.DataFrame]] = {}
    received: dict[int, int] = {}
    total = sum(counts[s.index].scored for s in todo)
    started = {s.index: time.perf_counter() for s in todo}
    n_done = 0
    bar = tqdm(total=total, unit="CpG", unit_scale=True, desc="score-genome", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    bar.set_postfix_str(f"shards 0/{len(todo)}")
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for idx, part in batch.groupby("shard", sort=False):
                idx = int(idx)
                pending.setdefault(idx, []).append(part)
                received[idx] = received.get(idx, 0) + len(part)
                bar.update(len(part))
                expected = counts[idx].scored
                if received[idx] > expected:
                    raise MethrayError(f"shard {by_index[idx].id}: got {received[idx]} predictions for {expected} CpGs")
                if received[idx] == expected:
                    shard = by_index[idx]
                    write_shard(prefix, shard, pd.concat(pending.pop(idx), ignore_index=True), tissues)
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
        The tissue set (:class:`methray.tissue_set.TissueSetConfig`).
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
    from .genome import open_reference

    t0 = time.perf_counter()
    storage.configure_s3(cfg.s3.endpoint_url, cfg.s3.region)
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
    start_run(cfg, with_ray=False, run_dir=prefix)
    table = cpg_table_for(cfg, prefix, ref)
    _bind_job(prefix, _job_record(cfg, metas, table))
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
        scored_now = run_shards(cfg, prefix, table, todo, counts, ledger)
    score_s = time.perf_counter() - t_score
    missing = ledger.missing(shards)
    if missing:
        raise MethrayError(f"score-genome: {len(missing)} shard(s) not finished (first {missing[0].id}); rerun to finish them")

    outputs = {}
    for t in cfg.tissues:
        meta = metas[t.name]
        desc = f"methray {meta.model} (trained on {meta.tissue or '?'}) predicted beta, {t.name}, {cfg.genome}, all CpGs"
        outputs[t.name] = assemble_tracks(prefix, t.name, meta.model, desc, shards, counts_list, ref.sizes)
        outputs[t.name]["predictions"] = storage.join(prefix, "predictions", f"tissue={t.name}")

    from .genome_eval import evaluate_set

    tables = evaluate_set(cfg, prefix, metas, lambda tissue: read_predictions(prefix, tissue, shards, counts_list), ref)
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
    if not r.already_complete:
        lines.append(f"  this run: {r.scored_this_run:,} CpGs x {len(r.models)} model(s) in {r.seconds:.1f} s ({r.cpgs_per_second:,.0f} CpGs/s)")
    for tissue, out in r.outputs.items():
        lines.append(f"  {tissue}: {out['bedGraph']}, {out['bigWig']}")
    for name, path in r.tables.items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)
