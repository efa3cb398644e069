"""Genome-scale benchmark: an hg38-sized reference and a whole-genome Bismark file, stage by stage.

Usage (from the repository root)::

    python bench/scale.py [--fraction 1.0] [--stages ...] [--out bench/results]

Generates into a temporary folder (deleted afterwards; nothing generated is committed):

- ``genome.fa`` (+ ``.fai``): the 25 GRCh38 primary contigs (chr1-22, X, Y, M) with their
  real sizes times ``--fraction``; the sequence tiles the real hg19 chr22
  (``../shared/data/hg19_chr22/chr22.fa``) with its N runs removed, case kept, so CpG density
  is realistic (about 48M CpGs at full size);
- ``wgbs.cov``: a Bismark coverage file of ``28M x fraction`` + strand CpGs drawn uniformly
  from the genome's CpGs, each given the (methylated, unmethylated) counts of a random real
  IMR90 row (``imr90_wgbs.bismark.cov.gz``), i.e. the real joint beta / coverage distribution.

Each stage runs in its own child process, sampled every 0.5 s with psutil: seconds, items/s,
peak RSS of the stage's driver, the largest descendant (Ray worker) by USS and RSS, and the
summed PSS of the tree. Results: ``<out>/<date>-<machine>-scale[-f<fraction>].md`` / ``.json``.
See ``bench/README.md`` (section "Scale bench").
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path[0] = str(ROOT)

DATA = ROOT.parent / "shared" / "data" / "hg19_chr22"

GRCH38 = {  # primary assembly contig lengths (bp), GRCh38.p14
    "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555, "chr5": 181538259,
    "chr6": 170805979, "chr7": 159345973, "chr8": 145138636, "chr9": 138394717, "chr10": 133797422,
    "chr11": 135086622, "chr12": 133275309, "chr13": 114364328, "chr14": 107043718, "chr15": 101991189,
    "chr16": 90338345, "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
    "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415, "chrM": 16569,
}
WGBS_SITES = 28_000_000
LINE = 60
STAGES = ("genome_cache", "cpgs", "prepare", "shared_genome", "private_genome", "train_small", "train_large", "torch_loop",
          "shards", "assembly", "score_genome", "noop_pipeline", "train_workers")
TRAIN = {"small": 1_000_000, "large": 10_000_000, "steps": 60, "batch": 128, "val": 2048}
SCORE = {"cpgs": 2_000_000, "batch": 1024, "actors": 2, "noop_repeats": 3}
"""score_genome / noop_pipeline: whole contigs holding >= ``cpgs`` CpGs, the job's default actor pool on 2 CPUs."""
WORKERS = {"steps": 60, "repeats": 3}
"""train_workers: training steps per fit (batch ``TRAIN["batch"]``), rounds of (plain loop, 1 worker, 1 worker at Ray's
default niceness, 2 workers)."""


# ------------------------------------------------------------------ generation


def _tile_source(fasta: Path) -> bytes:
    """The real chr22 sequence with its N runs removed (case kept)."""
    import pyfaidx

    seq = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=False)["chr22"][:]
    arr = np.frombuffer(seq.encode("ascii"), np.uint8)
    return arr[(arr != ord("N")) & (arr != ord("n"))].tobytes()


def generate(work: Path, fraction: float, data: Path, seed: int = 0) -> dict:
    """Write ``genome.fa`` (+ ``.fai``) and ``wgbs.cov`` into ``work``; returns their sizes."""
    rng = np.random.default_rng(seed)
    src = np.frombuffer(_tile_source(data / "chr22.fa"), np.uint8)
    upper = src & 0xDF  # upper-case view for the CpG search
    fa, fai = work / "genome.fa", []
    cpgs_per_contig, offset, total_bp = {}, 0, 0
    with open(fa, "wb") as fh:
        for name, size in GRCH38.items():
            n = max(LINE, int(size * fraction))
            start = offset % len(src)  # each contig starts where the previous one stopped
            idx = (start + np.arange(n, dtype=np.int64)) % len(src)
            seq = src[idx]
            fh.write(f">{name}\n".encode())
            fai.append(f"{name}\t{n}\t{fh.tell()}\t{LINE}\t{LINE + 1}\n")
            full = n // LINE * LINE
            body = np.hstack([seq[:full].reshape(-1, LINE), np.full((full // LINE, 1), ord("\n"), np.uint8)]).tobytes()
            fh.write(body)
            if n > full:
                fh.write(seq[full:].tobytes() + b"\n")
            up = upper[idx]
            cpgs_per_contig[name] = np.flatnonzero((up[:-1] == ord("C")) & (up[1:] == ord("G")))
            offset += n
            total_bp += n
            del seq, up, idx, body
    Path(f"{fa}.fai").write_text("".join(fai))
    n_cpgs = sum(len(v) for v in cpgs_per_contig.values())
    # Site rows: real IMR90 (methylated, unmethylated) pairs on random CpGs of the genome.
    counts = []
    with gzip.open(data / "imr90_wgbs.bismark.cov.gz", "rt") as src_cov:
        for line in src_cov:
            f = line.split("\t")
            counts.append((int(f[4]), int(f[5])))
    counts = np.array(counts, np.int64)
    n_sites = min(int(WGBS_SITES * fraction), n_cpgs)
    chosen = np.sort(rng.choice(n_cpgs, n_sites, replace=False))
    bounds = np.cumsum([0] + [len(v) for v in cpgs_per_contig.values()])
    with open(work / "wgbs.cov", "w") as out:
        for (name, pos), a, b in zip(cpgs_per_contig.items(), bounds[:-1], bounds[1:]):
            lo, hi = np.searchsorted(chosen, [a, b])
            p = pos[chosen[lo:hi] - a] + 1  # Bismark: 1-based
            mu = counts[rng.integers(0, len(counts), len(p))]
            pct = 100.0 * mu[:, 0] / np.maximum(mu.sum(1), 1)
            for i in range(0, len(p), 1_000_000):  # chunks: bounded memory while formatting
                sl = slice(i, i + 1_000_000)
                rows = np.char.add(np.char.add(f"{name}\t", p[sl].astype(str)), "\t")
                text = "\n".join(f"{r}{q}\t{c:g}\t{m}\t{u}" for r, q, c, m, u in zip(rows, p[sl], pct[sl], mu[sl, 0], mu[sl, 1]))
                out.write(text + "\n")
    np.savez(work / "cpgs.npz", **{k: v.astype(np.int64) for k, v in cpgs_per_contig.items()})
    return {"contigs": len(GRCH38), "genome_bp": int(total_bp), "cpgs": int(n_cpgs), "wgbs_sites": int(n_sites),
            "fasta_mb": round(fa.stat().st_size / 2**20, 1), "cov_mb": round((work / "wgbs.cov").stat().st_size / 2**20, 1)}


# ------------------------------------------------------------------ stages (child processes)


def _random_sites(work: Path, n: int, seed: int):
    """``n`` site rows on random CpGs of the generated genome (with replacement), random betas."""
    from methray.windows import WindowRows

    cpgs = np.load(work / "cpgs.npz")
    names = list(cpgs.files)
    sizes = np.array([len(cpgs[k]) for k in names])
    rng = np.random.default_rng(seed)
    contig = rng.choice(len(names), n, p=sizes / sizes.sum()).astype(np.int32)
    pos = np.empty(n, np.int64)
    for c in range(len(names)):
        sel = contig == c
        pos[sel] = cpgs[names[c]][rng.integers(0, sizes[c], int(sel.sum()))]
    return WindowRows(contig, pos, rng.random(n, dtype=np.float32), names)


def _regions(work: Path, width: int = 400_000) -> list[str]:
    """24 regions of ``width`` bp, one in each of chr1-22, X, Y (the issue's 24-region run)."""
    fai = [line.split("\t") for line in (work / "genome.fa.fai").read_text().splitlines()]
    return [f"{c}:{int(n) // 2 - width // 2}-{int(n) // 2 + width // 2}" for c, n, *_ in fai if c != "chrM" and int(n) > width]


def stage(name: str, work: Path) -> dict:
    """Run one stage in this (child) process; returns its counts."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    fasta = str(work / "genome.fa")
    if name == "genome_cache":
        from methray.genome import Reference

        ref = Reference(fasta)
        for c in ref.chroms:
            ref.contig_path(c)
        return {"items": sum(ref.sizes.values()), "unit": "bp encoded"}
    if name == "cpgs":
        from methray.cpgs import enumerate_cpgs

        s = enumerate_cpgs(fasta, str(work / "cpg_catalogue"), overwrite=True)
        return {"items": int(s.total), "unit": "CpGs"}
    if name == "prepare":
        return _prepare(work)
    if name == "shards":
        return _write_shards(work)
    if name == "assembly":
        return _assembly(work)
    if name in ("shared_genome", "private_genome"):
        return _genome_readers(work, private=name == "private_genome")
    if name in ("train_small", "train_large"):
        return _train(work, TRAIN[name.split("_")[1]])
    if name == "torch_loop":
        return _torch_loop(work)
    if name == "score_genome":
        return _score_genome(work)
    if name == "noop_pipeline":
        return _noop_pipeline(work)
    if name == "train_workers":
        return _train_workers(work)
    raise SystemExit(f"unknown stage {name}")


def _prepare(work: Path) -> dict:
    """``methray prepare`` of the whole-genome ``.cov`` (one tissue: streamed in this process)."""
    from methray.config import load_config
    from methray.prepare import prepare

    cfg = load_config(data={"run_name": "scale", "data_dir": str(work), "out_dir": str(work / "run"), "reference": "genome.fa",
                            "tissues": [{"name": "wgbs", "path": "wgbs.cov", "format": "bismark_cov"}],
                            "split": {"val_chroms": ["chr21"], "test_chroms": ["chr22"]}})
    t = time.perf_counter()
    (r,) = prepare(cfg)
    s = time.perf_counter() - t
    return {"items": r.rows_read, "unit": "sites (rows read)", "kept": r.kept, "prepare_s": round(s, 1),
            "sites_per_s": round(r.rows_read / s), "split": r.split}


SHARD = {"tissue": "scale", "model": "mrcnn", "shard_bp": 5_000_000}


def _write_shards(work: Path) -> dict:
    """Input of ``assembly``: score-genome's shard files for every CpG of the catalogue (``cpgs`` stage).

    One Parquet file per 5 Mb shard in the prediction schema (``genome_scoring.outputs.write_shard``),
    ``beta_pred`` drawn from a bimodal mixture like real methylation (seeded). Not a methray stage.
    """
    import pandas as pd

    from methray.cpgs import read_cpgs
    from methray.genome import Reference
    from methray.genome_scoring.outputs import write_shard
    from methray.shards import plan_shards

    catalogue = work / "cpg_catalogue"
    if not (catalogue / "_summary.json").exists():
        raise SystemExit("stage shards needs the cpgs stage first (--stages cpgs,shards,assembly)")
    prefix, rng, n = str(work / "genome_run"), np.random.default_rng(7), 0
    shards = plan_shards(Reference(str(work / "genome.fa")), SHARD["shard_bp"])
    counts = {}
    for chrom in dict.fromkeys(s.chrom for s in shards):
        cpgs = read_cpgs(str(catalogue), chrom, ["pos", "in_cpg_island"])  # one contig at a time
        pos = cpgs["pos"].to_numpy()
        for s in (s for s in shards if s.chrom == chrom):
            lo, hi = np.searchsorted(pos, [s.start, s.end])
            high = rng.random(hi - lo) < 0.7
            pred = np.where(high, rng.beta(8, 2, hi - lo), rng.beta(1, 8, hi - lo)).astype(np.float32)
            df = pd.DataFrame({"pos": pos[lo:hi], "in_cpg_island": cpgs["in_cpg_island"].to_numpy()[lo:hi], f"pred.{SHARD['tissue']}": pred})
            write_shard(prefix, s, df, {SHARD["tissue"]: SHARD["model"]})
            counts[s.index] = int(hi - lo)
            n += int(hi - lo)
    (work / "shards.json").write_text(json.dumps({"prefix": prefix, "counts": counts}))
    return {"items": n, "unit": "rows written (assembly input, not a methray stage)", "shards": len(shards)}


def _assembly(work: Path) -> dict:
    """score-genome's track assembly: every shard streamed into one sorted bedGraph and one bigWig.

    A thread samples this process's RSS every 0.2 s until the bedGraph appears under its final
    name, i.e. until the last shard has been read, just before the bigWig is closed (its
    indexes written, its spilled zoom levels copied into place): ``streaming_rss_mib``. The
    process's peak (``peak_rss_mib``: the kernel's high-water mark ``VmHWM`` of this process's
    memory; not ``ru_maxrss``, which keeps the parent's RSS from before the ``exec``) less that,
    per row, is what the close adds (``close_bytes_per_row``; ~46 with libBigWig's writer,
    which built every zoom level in memory there).
    """
    import resource
    import threading

    import psutil

    from methray.genome import Reference
    from methray.genome_scoring.outputs import assemble_tracks, track_path
    from methray.genome_scoring.plan import ShardCounts
    from methray.shards import plan_shards

    meta = json.loads((work / "shards.json").read_text())
    ref = Reference(str(work / "genome.fa"))
    shards = plan_shards(ref, SHARD["shard_bp"])
    counts = [ShardCounts(cpgs=int(meta["counts"].get(str(s.index), 0))) for s in shards]
    bedgraph = Path(track_path(meta["prefix"], SHARD["tissue"], SHARD["model"], "bedGraph"))
    bedgraph.unlink(missing_ok=True)
    streaming = [0.0]
    done = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.is_set() and not bedgraph.exists():
            streaming[0] = max(streaming[0], me.memory_info().rss / 2**20)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    out = assemble_tracks(meta["prefix"], SHARD["tissue"], SHARD["model"], "scale bench", shards, counts, ref.sizes, "sorted")
    s = time.perf_counter() - t
    done.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 2**10  # kB
    n = sum(c.cpgs for c in counts)
    # CPU seconds of the whole stage process (imports and planning included): on a machine
    # shared with other jobs, a steadier figure than the wall time.
    return {"items": n, "unit": "rows (bedGraph + bigWig)", "assembly_s": round(s, 1), "rows_per_s": round(n / s),
            "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "bedgraph_mb": round(Path(out["bedGraph"]).stat().st_size / 2**20, 1), "bigwig_mb": round(Path(out["bigWig"]).stat().st_size / 2**20, 1),
            "streaming_rss_mib": round(streaming[0], 1), "peak_rss_mib": round(peak, 1),
            "close_bytes_per_row": round((peak - streaming[0]) * 2**20 / n, 1)}


def _genome_readers(work: Path, private: bool) -> dict:
    """2 Ray actors each encode MRCNN windows of every CpG in 400 kb of each of 24 contigs.

    ``private=False``: methray's memory-mapped genome. ``private=True``: the previous design,
    each actor holding its own in-memory copy of every contig it touches (the baseline).
    """
    import ray

    from methray.encoding import WindowSpec, one_hot
    from methray.genome import open_reference

    @ray.remote(num_cpus=0.5)
    class Reader:
        def run(self, fasta: str, regions: list[str], cpgs_file: str, private: bool) -> int:
            ref = open_reference(fasta)
            cpgs = np.load(cpgs_file)
            held, n = {}, 0
            for r in regions:
                c, span = r.split(":")
                a, b = map(int, span.split("-"))
                codes = ref.codes(c)
                if private:  # as the old Reference: the whole contig copied into this process
                    codes = held.setdefault(c, np.array(codes))
                pos = cpgs[c][(cpgs[c] >= a) & (cpgs[c] < b)]
                from methray.encoding import gather_windows

                x = one_hot(gather_windows(codes, pos, WindowSpec(400, True)))
                n += len(x)
            time.sleep(2.0)  # hold the memory for the sampler
            return n

    _ray_init()
    try:
        readers = [Reader.remote() for _ in range(2)]
        n = sum(ray.get([a.run.remote(str(work / "genome.fa"), _regions(work), str(work / "cpgs.npz"), private) for a in readers]))
    finally:
        ray.shutdown()
    return {"items": n, "unit": "windows (2 actors)"}


def _ray_init() -> None:
    """An embedded 2-CPU Ray; retried, since start-up can time out on an overloaded machine."""
    import ray

    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            return
        except Exception:
            if attempt == 2:
                raise
            time.sleep(10)


def _train(work: Path, n_sites: int) -> dict:
    from methray.checkpoint import CheckpointMeta
    from methray.config import TrainConfig
    from methray.train import fit

    import ray

    _ray_init()
    try:
        sites, val = _random_sites(work, n_sites, 1), _random_sites(work, TRAIN["val"], 2)
        meta = CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1)
        cfg = TrainConfig(epochs=1, batch_size=TRAIN["batch"], num_workers=1, cpus_per_worker=1, use_gpu=False, patience=1)
        res = fit(sites, val, reference=str(work / "genome.fa"), meta=meta, train_cfg=cfg, name=f"scale-{n_sites}",
                  storage_path=str(work / "ray_train"), checkpoint_dir=str(work / f"ckpt-{n_sites}"), progress=False, steps_per_epoch=TRAIN["steps"])
    finally:
        ray.shutdown()
    h = res.history[-1]
    return {"items": h["samples"], "unit": f"samples ({n_sites:,} sites available)", "epoch_s": round(h["seconds"], 2),
            "samples_per_s": round(h["samples"] / h["seconds"], 1), "worker_peak_mib": h["worker_peak_mib"], "worker_shm_mib": h["worker_shm_mib"], "fit_s": round(res.seconds, 1),
            "site_rows_mib": round(sites.nbytes / 2**20, 1)}


def _torch_loop(work: Path) -> dict:
    """The same training steps in one plain process, 1 thread, windows encoded the same way."""
    import torch

    from methray import models, tasks
    from methray.encoding import WindowSpec
    from methray.runtime import keep_freed_buffers
    from methray.windows import encode_rows

    torch.set_num_threads(1)
    torch.manual_seed(0)
    keep_freed_buffers()  # as the training workers do (runtime.keep_freed_buffers)
    sites = _random_sites(work, TRAIN["small"], 1)
    model = models.build("mrcnn", n_outputs=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    spec, b = WindowSpec(400, True), TRAIN["batch"]
    order = np.random.default_rng(1).permutation(len(sites))[: TRAIN["steps"] * b]
    start = time.perf_counter()
    for i in range(0, len(order), b):
        x = torch.from_numpy(encode_rows(sites, order[i : i + b], str(work / "genome.fa"), spec)).float()
        opt.zero_grad(set_to_none=True)
        loss = tasks.loss("methylation", model(x), torch.from_numpy(sites.y[order[i : i + b]]))
        loss.backward()
        opt.step()
    s = time.perf_counter() - start
    # the encoder alone: windows/s of encode_rows on random sites across the genome, one core
    idx = np.random.default_rng(3).integers(0, len(sites), 200_000)
    t = time.perf_counter()
    for i in range(0, len(idx), 4096):
        encode_rows(sites, idx[i : i + 4096], str(work / "genome.fa"), spec)
    enc = len(idx) / (time.perf_counter() - t)
    return {"items": len(order), "unit": "samples", "samples_per_s": round(len(order) / s, 1), "encoder_windows_per_s": round(enc)}


# ------------------------------------------------------------------ Ray overhead: score-genome, no-op pipeline, Ray Train workers


def _score_contigs(work: Path, min_cpgs: int) -> list[str]:
    """The smallest whole contigs that hold ``min_cpgs`` CpGs together (all contigs if the genome has fewer), reference order."""
    cpgs = np.load(work / "cpgs.npz")
    chosen, n = [], 0
    for name in sorted(cpgs.files, key=lambda k: len(cpgs[k])):
        if n >= min_cpgs:
            break
        chosen.append(name)
        n += len(cpgs[name])
    return [c for c in cpgs.files if c in chosen]


def _score_inputs(work: Path) -> tuple[list[str], str, str]:
    """(contigs, CpG table, checkpoint) of the scoring stages: a seeded random-weight MRCNN (throughput does not depend on the weights)."""
    from bench.scoring import random_checkpoint
    from methray.cpgs import enumerate_cpgs, load_summary

    chroms = _score_contigs(work, int(os.environ.get("METHRAY_BENCH_SCORE_CPGS", SCORE["cpgs"])))
    table, ckpt = work / "score_cpgs", work / "score_ckpt"
    if not (table / "_summary.json").exists():
        enumerate_cpgs(str(work / "genome.fa"), str(table), chroms=chroms, overwrite=True)
    if not (ckpt / "meta.json").exists():
        random_checkpoint(str(ckpt))
    load_summary(str(table))
    return chroms, str(table), str(ckpt)


def _score_config(work: Path, chroms: list[str], table: str, ckpt: str, out: Path):
    """The tissue set of the scoring stages: one MRCNN, ``chroms`` whole, the job's 2-actor pool on 2 CPUs."""
    from methray.genome_scoring.config import load_tissue_set

    return load_tissue_set(data={
        "run_name": "scale", "data_dir": str(work), "out_dir": str(out), "reference": "genome.fa", "cpg_table": table, "chroms": chroms,
        "tissues": [{"name": "t", "checkpoint": ckpt}], "ray": {"num_cpus": 2},
        "score": {"actors": SCORE["actors"], "cpus_per_actor": 0.5, "batch_size": SCORE["batch"]},
    })


def _score_job(work: Path, chroms: list[str], table: str, ckpt: str, out: Path):
    """``methray score-genome`` (the whole job, Ray embedded) of ``chroms``; its GenomeResult."""
    from methray.genome_scoring import job

    return job.score_genome(_score_config(work, chroms, table, ckpt, out))


def _score_step(work: Path, chroms: list[str], table: str, ckpt: str, out: Path) -> tuple[int, float]:
    """(CpGs, seconds) of score-genome's Ray Data step alone (:func:`methray.genome_scoring.job.run_shards`: actor
    start-up, read, encode, predict, shard files; Ray already started; no tracks, tables or figure)."""
    from methray import storage
    from methray.genome import open_reference
    from methray.genome_scoring import job
    from methray.genome_scoring.plan import plan, shard_counts
    from methray.shards import ShardLedger

    cfg = _score_config(work, chroms, table, ckpt, out)
    prefix = cfg.prefix()
    storage.makedirs(prefix)
    shards = plan(cfg, open_reference(cfg.reference))
    ledger = ShardLedger(prefix)
    ledger.bind_plan(shards, shard_bp=cfg.shard_bp)
    counts = dict(zip((s.index for s in shards), shard_counts(table, shards)))
    t = time.perf_counter()
    n = job.run_shards(cfg, prefix, table, shards, counts, ledger, {"t": "mrcnn"})
    return n, time.perf_counter() - t


def _score_loop(chroms: list[str], table: str, ckpt: str, fasta: str, out: Path, threads: int) -> tuple[int, float]:
    """(CpGs, seconds): score-genome's scoring step in one process, no Ray: the same shards, sub-batches and shard files.

    Per contig: read its CpGs from the table, drop the excluded ones; per shard: windows encoded
    with :func:`methray.windows.encode_batch` in sub-batches of ``SCORE["batch"]`` from the shard's
    first CpG, MRCNN with ``threads`` torch threads, the shard's Parquet file written by
    :func:`methray.genome_scoring.outputs.write_shard`.
    """
    import pandas as pd
    import torch

    from methray.cpgs import read_cpgs
    from methray.genome import open_reference
    from methray.genome_scoring.outputs import write_shard
    from methray.predictor import Predictor
    from methray.shards import DEFAULT_SHARD_BP, plan_shards
    from methray.windows import encode_batch

    start = time.perf_counter()
    torch.set_num_threads(threads)
    predictor = Predictor(ckpt, fasta, threads)  # its predict only: the model, both strands averaged as in the job
    meta = predictor.meta
    ref, b, n = open_reference(fasta), SCORE["batch"], 0
    shards = plan_shards(ref, DEFAULT_SHARD_BP, chroms)
    for chrom in chroms:
        df = read_cpgs(table, chrom, ["pos", "in_cpg_island", "excluded"])
        df = df[~df["excluded"].to_numpy(bool)]
        pos_all = df["pos"].to_numpy(np.int64)
        for s in (s for s in shards if s.chrom == chrom):
            lo, hi = np.searchsorted(pos_all, [s.start, s.end])
            pos, pred = pos_all[lo:hi], np.empty(hi - lo, np.float32)
            for i in range(0, len(pos), b):
                x = encode_batch({"chrom": np.full(len(pos[i : i + b]), chrom, dtype=object), "pos": pos[i : i + b]}, fasta, meta.window_length, meta.exclude_cpg)["x"]
                pred[i : i + b] = predictor.predict(x)[:, 0]
            if len(pos):
                write_shard(str(out), s, pd.DataFrame({"pos": pos, "in_cpg_island": df["in_cpg_island"].to_numpy(bool)[lo:hi], "pred.t": pred}), {"t": meta.model})
            n += len(pos)
    return n, time.perf_counter() - start


def _compare_predictions(a: Path, b: Path) -> float:
    """Largest |difference| of ``beta_pred`` between two folders of shard files (same file names and rows)."""
    import pyarrow.parquet as pq

    fa, fb = sorted(p.name for p in a.glob("*.parquet")), sorted(p.name for p in b.glob("*.parquet"))
    if fa != fb or not fa:
        raise RuntimeError(f"different shard files: {len(fa)} vs {len(fb)}")
    worst = 0.0
    for name in fa:
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        if ta.column("pos") != tb.column("pos"):
            raise RuntimeError(f"{name}: different CpGs")
        d = np.abs(ta.column("beta_pred").to_numpy() - tb.column("beta_pred").to_numpy())
        worst = max(worst, float(d.max()) if len(d) else 0.0)
    return worst


def _score_genome(work: Path) -> dict:
    """score-genome (Ray Data, 2 actors x 1 thread) vs the single-process loop (2 threads) over the same CpGs."""
    import ray

    chroms, table, ckpt = _score_inputs(work)
    load0 = os.getloadavg()[0]
    res = _score_job(work, chroms, table, ckpt, work / "sg_ray")
    ray.shutdown()
    load1 = os.getloadavg()[0]
    n_loop, s_loop = _score_loop(chroms, table, ckpt, str(work / "genome.fa"), work / "sg_loop", threads=2)
    load2 = os.getloadavg()[0]
    diff = _compare_predictions(Path(res.outputs["t"]["predictions"]), work / "sg_loop" / "predictions" / "t.mrcnn")
    if n_loop != res.scored_this_run:
        raise RuntimeError(f"loop scored {n_loop} CpGs, score-genome {res.scored_this_run}")
    return {"items": res.scored_this_run, "unit": f"CpGs ({len(chroms)} whole contigs, MRCNN)", "contigs": chroms,
            "ray_s": res.seconds, "ray_cpgs_per_s": round(res.cpgs_per_second, 1), "loop_s": round(s_loop, 1),
            "loop_cpgs_per_s": round(n_loop / s_loop, 1), "max_abs_diff": diff, "loadavg_1min": [load0, load1, load2]}


def _noop_pipeline(work: Path) -> dict:
    """score-genome's Ray Data path with a no-op model (zeros; windows still encoded), ``noop_repeats`` runs in one Ray session.

    Per run: the rate of the job's Ray Data step (:func:`_score_step`: actor start-up included) and the
    steady rate (CpGs of the shards written after the first one / time from the first shard file
    to the last).
    """
    import ray

    from methray.genome_scoring import actors, job
    from methray.predictor import Predictor
    from methray.runtime import configure_ray_data
    from methray.windows import encode_batch

    class NoopPredictor(Predictor):
        def predict(self, x: np.ndarray, *extra: np.ndarray) -> np.ndarray:
            return np.zeros((len(x), self.meta.n_outputs), np.float32)

    class NoopSetPredictor(actors.SetPredictor):
        predictor_class = NoopPredictor

    chroms, table, ckpt = _score_inputs(work)
    written: list[tuple[float, int]] = []
    real_write = job.write_shard

    def timed_write(prefix, shard, df, models):
        real_write(prefix, shard, df, models)
        written.append((time.perf_counter(), len(df)))

    job.SetPredictor, job.write_shard = NoopSetPredictor, timed_write
    _ray_init()
    configure_ray_data()  # as the job's own Ray start does
    runs = []
    try:
        for r in range(SCORE["noop_repeats"]):
            written.clear()
            n, secs = _score_step(work, chroms, table, ckpt, work / f"noop_{r}")
            (t0, _), (t1, _) = written[0], written[-1]
            runs.append({"cpgs": n, "seconds": round(secs, 2), "per_s": round(n / secs), "load_1min": os.getloadavg()[0],
                         "steady_per_s": round(sum(k for _, k in written[1:]) / (t1 - t0))})
    finally:
        ray.shutdown()
    # the encoder alone, one core, no Ray: the same CpGs in blocks of a pipeline piece
    from methray.cpgs import read_cpgs

    df = read_cpgs(table, chroms[0], ["pos"])
    pos, piece = df["pos"].to_numpy(np.int64), 16 * SCORE["batch"]
    t = time.perf_counter()
    for i in range(0, len(pos), SCORE["batch"]):
        encode_batch({"chrom": np.full(len(pos[i : i + SCORE["batch"]]), chroms[0], dtype=object), "pos": pos[i : i + SCORE["batch"]]}, str(work / "genome.fa"), 400, True)
    enc = len(pos) / (time.perf_counter() - t)
    med = lambda k: float(np.median([x[k] for x in runs]))  # noqa: E731
    return {"items": runs[0]["cpgs"], "unit": f"windows x {len(runs)} runs (no-op model)", "runs": runs, "cpus": 2,
            "windows_per_s": round(med("per_s")), "steady_windows_per_s": round(med("steady_per_s")),
            "encoder_windows_per_s_1core": round(enc), "piece_rows": piece}


def _plain_steps(sites, val, fasta: str, steps: int) -> tuple[float, float]:
    """Samples/s after warm-up of ``steps`` MRCNN training steps in this process, 1 thread: the loop of
    :func:`methray.train.train_loop_per_worker` without Ray (same batches, encoder thread, optimiser, malloc settings),
    and the share of that time the loop's thread ran on a core (as the worker's ``steady_cpu_share``)."""
    import math

    import torch

    from methray import models, tasks
    from methray.encoding import WindowSpec
    from methray.runtime import keep_freed_buffers
    from methray.train import WARMUP_STEPS, _batches, epoch_order

    torch.set_num_threads(1)
    keep_freed_buffers()  # as the worker does
    torch.manual_seed(0)
    model = models.build("mrcnn", n_outputs=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    b = TRAIN["batch"]
    rows = epoch_order(len(sites), 0, 1, 0, 1)
    n, warm_t, warm_n, warm_cpu = 0, math.nan, 0, math.nan
    for step, (x, y) in enumerate(_batches(sites, rows, steps * b, b, fasta, WindowSpec(400, True), "cpu")):
        if step == WARMUP_STEPS:
            warm_t, warm_n, warm_cpu = time.perf_counter(), n, time.thread_time()
        opt.zero_grad(set_to_none=True)
        loss = tasks.loss("methylation", model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        n += len(y)
    seconds = time.perf_counter() - warm_t
    return (n - warm_n) / seconds, (time.thread_time() - warm_cpu) / seconds


def _train_workers(work: Path) -> dict:
    """Rounds of (plain loop, Ray Train 1 worker, 1 worker at Ray's default niceness, 2 workers), the same steps each;
    samples/s after warm-up and the training thread's share of a core, medians.

    ``w1`` runs as :func:`methray.train.fit` does (workers at the driver's priority, ``train.WORKER_NICENESS``);
    ``w1_ray_nice`` at Ray's default worker niceness (15 below the driver), in alternating order with ``w1``.
    """
    import ray

    from methray import train
    from methray.checkpoint import CheckpointMeta
    from methray.config import TrainConfig

    fasta = str(work / "genome.fa")
    sites, val = _random_sites(work, TRAIN["small"], 1), _random_sites(work, TRAIN["val"], 2)
    meta = CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1)
    default_niceness = train.WORKER_NICENESS

    def run_fit(label: str, workers: int, niceness, r: int, row: dict) -> None:
        cfg = TrainConfig(epochs=1, batch_size=TRAIN["batch"], num_workers=workers, cpus_per_worker=1, use_gpu=False, patience=1)
        train.WORKER_NICENESS = niceness
        t = time.perf_counter()
        try:
            res = train.fit(sites, val, reference=fasta, meta=meta, train_cfg=cfg, name=f"{label}-{r}", storage_path=str(work / "ray_train_w"),
                            checkpoint_dir=str(work / f"ckpt-{label}-{r}"), progress=False, steps_per_epoch=WORKERS["steps"])
        finally:
            train.WORKER_NICENESS = default_niceness
        h = res.history[-1]
        row[label], row[f"{label}_cpu_share"], row[f"{label}_niceness"] = h["steady_samples_per_s"], round(h["steady_cpu_share"], 3), h["worker_niceness"]
        row[f"{label}_fit_s"] = round(time.perf_counter() - t, 1)

    _ray_init()
    rounds = []
    try:
        for r in range(int(os.environ.get("METHRAY_BENCH_ROUNDS", WORKERS["repeats"]))):
            row = {"load_1min": os.getloadavg()[0], "driver_niceness": os.getpriority(os.PRIO_PROCESS, 0)}
            row["plain"], row["plain_cpu_share"] = _plain_steps(sites, val, fasta, WORKERS["steps"])
            row["plain_cpu_share"] = round(row["plain_cpu_share"], 3)
            ones = [("w1", default_niceness), ("w1_ray_nice", None)]
            for label, niceness in ones if r % 2 == 0 else ones[::-1]:
                run_fit(label, 1, niceness, r, row)
            run_fit("w2", 2, default_niceness, r, row)
            rounds.append(row)
            print(f"  round {r}: {row}", flush=True)
    finally:
        ray.shutdown()
    keys = ("plain", "w1", "w1_ray_nice", "w2")
    med = {k: float(np.median([x[k] for x in rounds])) for k in keys}
    return {"items": len(keys) * len(rounds) * WORKERS["steps"] * TRAIN["batch"],
            "unit": f"samples/worker ({len(rounds)} rounds x plain, 1 worker, 1 worker at Ray's niceness, 2 workers)",
            "rounds": rounds, **{f"{k}_samples_per_s": round(v, 1) for k, v in med.items()},
            "w1_over_plain": [round(x["w1"] / x["plain"], 3) for x in rounds],
            "w1_ray_nice_over_plain": [round(x["w1_ray_nice"] / x["plain"], 3) for x in rounds],
            "w2_over_w1": [round(x["w2"] / x["w1"], 3) for x in rounds]}


# ------------------------------------------------------------------ parent: measure children


def measure(name: str, work: Path, env: dict) -> dict:
    """Run ``stage(name)`` in a child process, sampling its process tree's memory."""
    import psutil

    out = work / f"stage-{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--work", str(work)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    root = psutil.Process(proc.pid)
    peak = {"driver_rss_mb": 0.0, "largest_worker_uss_mb": 0.0, "largest_worker_rss_mb": 0.0, "total_pss_mb": 0.0}
    mb = 2.0**20
    while proc.poll() is None:
        total = 0.0
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            procs = []
        for q in procs:
            try:
                m = q.memory_full_info()
            except psutil.Error:
                continue
            total += m.pss
            if q.pid == root.pid:
                peak["driver_rss_mb"] = max(peak["driver_rss_mb"], m.rss / mb)
            else:
                peak["largest_worker_uss_mb"] = max(peak["largest_worker_uss_mb"], m.uss / mb)
                peak["largest_worker_rss_mb"] = max(peak["largest_worker_rss_mb"], m.rss / mb)
        peak["total_pss_mb"] = max(peak["total_pss_mb"], total / mb)
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"stage": name, "error": f"exit {proc.returncode}", "seconds": round(seconds, 1)}
    res = json.loads(out.read_text())
    res.update({k: round(v, 1) for k, v in peak.items()}, stage=name, seconds=round(seconds, 1))
    res["items_per_s"] = round(res["items"] / seconds, 1) if seconds else None
    return res


def markdown(res: dict) -> str:
    from bench.report import _table  # the one table formatter of the bench

    m = res["machine"]
    lines = [f"# methray scale benchmark, {res['date']} on {res['machine_slug']}", "",
             f"Command: `{res['command']}`, total {res['total_s']:.0f} s, git {res.get('code_commit') or m.get('git_commit', '?')}.", "",
             f"Machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM, GPU: {m.get('gpu') or 'none'}. "
             f"Load average at start {' / '.join(f'{x:.1f}' for x in res['loadavg_start'])}, at end {' / '.join(f'{x:.1f}' for x in res['loadavg_end'])} "
             f"(1/5/15 min; above {m.get('cores', '?')} = other jobs shared the cores: times are pessimistic and noisy).", "",
             f"Inputs (generated, fraction {res['fraction']} of hg38 size): " + ", ".join(f"{k} {v:,}" for k, v in res["inputs"].items()) +
             f"; generation {res['generate_s']:.0f} s (not a methray stage).", "",
             "Each stage ran in its own process; memory sampled every 0.5 s (MiB): the stage's driver RSS, the largest descendant "
             "(Ray worker) USS and RSS, and the summed PSS of the process tree.", ""]
    rows = [[s["stage"], s.get("seconds"), f"{s.get('items', 0):,}", s.get("unit", ""), f"{s.get('items_per_s') or 0:,.0f}",
             f"{s['samples_per_s']:,.0f}" if "samples_per_s" in s else "", s.get("driver_rss_mb"),
             s.get("largest_worker_uss_mb"), s.get("largest_worker_rss_mb"), s.get("total_pss_mb"), s.get("error", "")] for s in res["stages"].values()]
    lines.append(_table(["stage", "s (process)", "items", "unit", "items/s (process)", "samples/s (loop)", "driver RSS", "largest worker USS",
                         "largest worker RSS", "total PSS", "error"], rows))
    lines += ["", "`s (process)` and `items/s (process)` include the stage process's start-up (imports, Ray start, generating "
              "the training rows); `samples/s (loop)` is the training loop's own rate (the epoch's samples / seconds)."]
    train = {k: v for k, v in res["stages"].items() if k in ("train_small", "train_large") and "error" not in v}
    if train:
        lines += ["", "Training worker memory (MiB, from the worker itself): " + "; ".join(
            f"{k}: private peak {v['worker_peak_mib']}" + (f" (base {v['worker_base_mib']})" if "worker_base_mib" in v else "")
            + f", object store mapped {v['worker_shm_mib']} (site rows {v['site_rows_mib']})" for k, v in train.items()) + "."]
    lines += ["", "## Ratios (same run)", ""]
    lines.append(_table(["ratio", "value", "goal"], [[k, v["value"], v["goal"]] for k, v in res["ratios"].items()]))
    lines += ["", "## Not measured in this run", ""] + [f"- {x}" for x in res["not_measured"]]
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {x}" for x in res["notes"]]
    return "\n".join(lines) + "\n"


def ratios(st: dict) -> dict:
    out = {}

    def ok(*names):
        return all(n in st and "error" not in st[n] for n in names)

    if ok("shared_genome", "private_genome"):
        out["24 regions x 2 actors, largest actor USS: memory-mapped / private copy"] = {
            "value": round(st["shared_genome"]["largest_worker_uss_mb"] / st["private_genome"]["largest_worker_uss_mb"], 3), "goal": "< 1 (target < 0.8 GiB absolute)"}
        out["24 regions x 2 actors, total PSS: memory-mapped / private copy"] = {
            "value": round(st["shared_genome"]["total_pss_mb"] / st["private_genome"]["total_pss_mb"], 3), "goal": "< 1 (target < 3.5 GiB absolute)"}
    if ok("train_small", "train_large"):
        out["training worker private memory peak (RssAnon): 10M sites / 1M sites"] = {
            "value": round(st["train_large"]["worker_peak_mib"] / st["train_small"]["worker_peak_mib"], 3), "goal": "< 1.2"}
        out["training largest worker USS: 10M / 1M sites"] = {
            "value": round(st["train_large"]["largest_worker_uss_mb"] / st["train_small"]["largest_worker_uss_mb"], 3), "goal": "< 1.2"}
        if "worker_base_mib" in st["train_small"]:
            out["training epoch's own private growth (peak - base), MiB: 10M / 1M sites"] = {
                "value": f"{st['train_large']['worker_peak_mib'] - st['train_large']['worker_base_mib']:.0f} / {st['train_small']['worker_peak_mib'] - st['train_small']['worker_base_mib']:.0f}",
                "goal": "equal within noise"}
        out["object store (site rows) mapped by the worker, MiB: 10M / 1M sites"] = {
            "value": f"{st['train_large']['worker_shm_mib']:.0f} / {st['train_small']['worker_shm_mib']:.0f}",
            "goal": f"site rows only ({st['train_large']['site_rows_mib']:.0f} / {st['train_small']['site_rows_mib']:.0f} MiB), no windows"}
    if ok("train_small", "torch_loop"):
        out["Ray Train 1 worker / plain torch loop (samples/s, 1 thread, same steps)"] = {
            "value": round(st["train_small"]["samples_per_s"] / st["torch_loop"]["samples_per_s"], 3), "goal": ">= 0.9"}
        out["encoder windows/s per core (random sites across the genome, memory-mapped)"] = {
            "value": st["torch_loop"]["encoder_windows_per_s"], "goal": ">= 200,000"}
    if ok("score_genome"):
        sg = st["score_genome"]
        out["score-genome (Ray Data, 2 actors x 1 thread) / single-process loop (2 threads), CpGs/s, same CpGs"] = {
            "value": round(sg["ray_cpgs_per_s"] / sg["loop_cpgs_per_s"], 3), "goal": ">= 0.9"}
    if ok("noop_pipeline"):
        np_ = st["noop_pipeline"]
        out["no-op model pipeline (score-genome's Ray Data path), windows/s per core, steady (median of runs)"] = {
            "value": round(np_["steady_windows_per_s"] / np_["cpus"]), "goal": ">= 200,000"}
        out["no-op model pipeline, windows/s per core, the Ray Data step's whole time (actor start-up included)"] = {
            "value": round(np_["windows_per_s"] / np_["cpus"]), "goal": "(reported)"}
    if ok("train_workers"):
        tw = st["train_workers"]
        out["Ray Train 1 worker / plain loop, samples/s after warm-up (median of rounds; per round)"] = {
            "value": f"{np.median(tw['w1_over_plain']):.3f} ({', '.join(f'{x:.2f}' for x in tw['w1_over_plain'])})", "goal": ">= 0.9"}
        if "w1_ray_nice_over_plain" in tw:
            out["Ray Train 1 worker at Ray's default worker niceness (15) / plain loop, samples/s after warm-up (median; per round)"] = {
                "value": f"{np.median(tw['w1_ray_nice_over_plain']):.3f} ({', '.join(f'{x:.2f}' for x in tw['w1_ray_nice_over_plain'])})", "goal": "(reported: before)"}
        out["Ray Train 2 workers / 1 worker, samples/s after warm-up (median of rounds; per round)"] = {
            "value": f"{np.median(tw['w2_over_w1']):.3f} ({', '.join(f'{x:.2f}' for x in tw['w2_over_w1'])})", "goal": "reported (2 cores)"}
    return out


def main(argv=None) -> Path | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fraction", type=float, default=1.0, help="contig sizes and site count as a fraction of hg38 / 28M (default 1: full size)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--work", default=None, help="working folder (default: a temporary folder, deleted afterwards)")
    p.add_argument("--rounds", type=int, default=WORKERS["repeats"], help="train_workers: rounds of (plain loop, 1 worker, 1 worker at Ray's niceness, 2 workers)")
    p.add_argument("--score-cpgs", type=int, default=SCORE["cpgs"], help="score_genome / noop_pipeline: whole contigs holding at least this many CpGs")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage (child process)
    args = p.parse_args(argv)
    if args.stage:
        work = Path(args.work)
        (work / f"stage-{args.stage}.json").write_text(json.dumps(stage(args.stage, work)))
        return None

    from bench import machine

    t0 = time.perf_counter()
    info = machine.describe()
    res = {"date": dt.date.today().isoformat(), "machine": info, "machine_slug": machine.machine_slug(info), "fraction": args.fraction,
           "command": "python bench/scale.py " + shlex.join(sys.argv[1:] if argv is None else argv), "loadavg_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="methray-scale-", dir=args.work) as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "METHRAY_CACHE": str(work / "cache"), "RAY_TMPDIR": tempfile.mkdtemp(prefix="mrs", dir="/tmp")}
        env.pop("RAY_ADDRESS", None)
        env["METHRAY_BENCH_SCORE_CPGS"] = str(args.score_cpgs)
        env["METHRAY_BENCH_ROUNDS"] = str(args.rounds)
        print(f"generating inputs (fraction {args.fraction}) in {work} ...", flush=True)
        t = time.perf_counter()
        res["inputs"] = generate(work, args.fraction, Path(args.data))
        res["generate_s"] = round(time.perf_counter() - t, 1)
        res["stages"] = {}
        for name in args.stages.split(","):
            print(f"stage {name} ...", flush=True)
            res["stages"][name] = measure(name, work, env)
            print(f"  {res['stages'][name]}", flush=True)
    res["ratios"] = ratios(res["stages"])
    res["not_measured"] = [
        x for k, x in (
            ("score_genome", "score-genome over whole contigs holding >= 2M CpGs with MRCNN"),
            ("prepare", "prepare of the 28M-site file"),
            ("assembly", "assembly of whole-genome bedGraph + bigWig from shards (48M rows)"),
        )
        if k not in res["stages"]
    ] + [
        "GPU figures (no GPU on this machine)",
    ] + (["full hg38 size: this run used fraction " + str(args.fraction)] if args.fraction < 1 else [])
    res["loadavg_end"] = list(os.getloadavg())
    res["total_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{res['date']}-{res['machine_slug']}-scale{'' if args.fraction == 1 else f'-f{args.fraction:g}'}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(res))
    print(f"wrote {out / stem}.md ({res['total_s']:.0f} s)", flush=True)
    return out / f"{stem}.md"


if __name__ == "__main__":
    main()
