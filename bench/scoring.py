"""Section 4: scoring end to end (CpGs/s), methray on Ray Data against a tight torch loop.

- ``ray``: :func:`methray.sites.sites_dataset` (read Parquet) ->
  :func:`methray.score.predict_dataset` (encode + predict in an actor pool) -> ``to_pandas``
  -> :func:`methray.tracks.write_bedgraph`; the wall time includes the actors' start and
  model load, as a user pays it;
- ``loop``: the same CpGs in one process: read the table with pyarrow, encode batches with
  :func:`methray.windows.encode_batch`, predict with torch (all cores as intra-op threads; `Predictor.predict`, both strands averaged as in the actors),
  write the same bedGraph.

The overhead ratio is ``ray seconds / loop seconds - 1``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from methray import checkpoint as ckpt
from methray import models, tracks
from methray.config import RunConfig, ScoreConfig
from methray.genome import open_reference
from methray.sites import read_sites
from methray.predictor import Predictor
from methray.score import predict_dataset
from methray.sites import sites_dataset
from methray.windows import encode_batch

from .machine import MemorySampler


def random_checkpoint(directory: str, name: str = "mrcnn") -> str:
    """A checkpoint of ``name`` with seeded random weights (throughput does not depend on them)."""
    torch.manual_seed(0)
    info = models.get(name)
    model = models.build(name, n_outputs=1)
    ckpt.save(directory, model, ckpt.CheckpointMeta(model=name, task="methylation", window_length=info.window.length, exclude_cpg=info.window.exclude_cpg, n_outputs=1))
    return directory


def ray_scoring(cfg: RunConfig, checkpoint_dir: str, out_path: str) -> tuple[int, float]:
    """(CpGs scored, seconds) for the Ray Data path (needs Ray)."""
    start = time.perf_counter()
    df = predict_dataset(sites_dataset(cfg.sites_table), cfg, checkpoint_dir).to_pandas()
    n = tracks.write_bedgraph(df, out_path, name="bench", description="methray bench", chrom_order=open_reference(cfg.reference).chroms)
    return n, time.perf_counter() - start


def loop_scoring(table: str, fasta: str, checkpoint_dir: str, out_path: str, *, batch_size: int, threads: int) -> tuple[int, float]:
    """(CpGs scored, seconds) for a single-process torch loop over the same table."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        df = read_sites(table, columns=["chrom", "pos", "tissue", "in_cpg_island", "split", "beta"])
        predictor = Predictor(checkpoint_dir, fasta, threads)  # its predict only: both strands averaged, as the Ray path
        meta = predictor.meta
        chroms, pos = df["chrom"].to_numpy(), df["pos"].to_numpy(np.int64)
        preds = np.empty(len(df), np.float32)
        for i in range(0, len(df), batch_size):
            enc = encode_batch({"chrom": chroms[i : i + batch_size], "pos": pos[i : i + batch_size]}, fasta, meta.window_length, meta.exclude_cpg)
            preds[i : i + batch_size] = predictor.predict(enc["x"])[:, 0]
        df["beta_pred"] = preds
        n = tracks.write_bedgraph(df, out_path, name="bench", description="methray bench", chrom_order=open_reference(fasta).chroms)
        return n, time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def bedgraph_diff(a: str, b: str) -> float:
    """Largest absolute difference of the values of two bedGraphs over the same sites."""
    import pandas as pd

    ta, tb = (pd.read_csv(p, sep="\t", skiprows=1, header=None) for p in (a, b))
    if len(ta) != len(tb) or not ta[[0, 1, 2]].equals(tb[[0, 1, 2]]):
        raise AssertionError(f"{a} and {b} list different sites")
    return float((ta[3] - tb[3]).abs().max())


def run(cfg: RunConfig, work_dir: str, *, configs: dict[str, ScoreConfig], threads: int) -> dict:
    """Score the whole CpG table once per Ray actor configuration and once with the loop.

    Parameters
    ----------
    configs
        Label -> ``score`` section (actors, CPUs per actor, batch size) for the Ray path.
    threads
        torch threads of the loop (the cores Ray has).
    """
    checkpoint_dir = random_checkpoint(os.path.join(work_dir, "score-ckpt"))
    out = {"model": "mrcnn", "ray": {}}
    first = next(iter(configs.values()))
    with MemorySampler() as mem:
        n, seconds = loop_scoring(cfg.sites_table, cfg.reference, checkpoint_dir, os.path.join(work_dir, "loop.bedGraph"), batch_size=first.batch_size, threads=threads)
    out["loop"] = {"threads": threads, "batch_size": first.batch_size, "cpgs": n, "seconds": round(seconds, 2), "cpgs_per_s": round(n / seconds), "memory": mem.peak}
    for label, score_cfg in configs.items():
        run_cfg = cfg.model_copy(update={"score": score_cfg})
        with MemorySampler() as mem:
            n, seconds = ray_scoring(run_cfg, checkpoint_dir, os.path.join(work_dir, f"ray-{label}.bedGraph"))
        out["ray"][label] = {
            **score_cfg.model_dump(), "cpgs": n, "seconds": round(seconds, 2), "cpgs_per_s": round(n / seconds),
            "overhead_vs_loop": round(seconds / out["loop"]["seconds"] - 1, 3), "memory": mem.peak,
        }
    out["bedgraph_max_abs_diff"] = max(bedgraph_diff(os.path.join(work_dir, "loop.bedGraph"), os.path.join(work_dir, f"ray-{k}.bedGraph")) for k in configs)
    return out
