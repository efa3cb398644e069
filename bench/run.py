"""Measure methray's throughput and memory, stage by stage, against baselines.

Usage (from the repository root)::

    python bench/run.py [--quick] [--out bench/results]

writes ``<out>/<date>-<machine>.md`` and ``.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script: import this checkout's packages, not bench/ siblings
    sys.path[0] = str(ROOT)

DATA = ROOT.parent / "shared" / "data" / "hg19_chr22"

FULL = {
    "naive_sites": 2000,
    "repeats": 3,
    "rows": None,  # all IMR90 rows
    # Per-model training budget (samples, batch): big models are slow on CPU.
    "train": {"mrcnn": (8192, 128), "deepcpg_dna": (768, 64), "deepsea": (128, 32), "danq": (128, 32)},
    "val_samples": 64,
    "baseline_samples": 8192,
    "gpu_samples": 16384,
}
QUICK = {
    "naive_sites": 100,
    "repeats": 1,
    "rows": 1500,
    "train": {"mrcnn": (256, 64)},
    "val_samples": 64,
    "baseline_samples": 512,
    "gpu_samples": 256,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few hundred CpGs and tiny budgets (a smoke test, ~1 min); figures are not meaningful")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the results (.md + .json)")
    p.add_argument("--data", default=str(DATA), help="the hg19_chr22 data folder (chr22.fa, imr90_wgbs.bismark.cov.gz, cpg_islands.bed)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray sessions for training and scoring (the pipeline runs with 1 and 2)")
    p.add_argument("--sections", default="encoding,pipeline,training,scoring", help="comma-separated subset to run")
    return p.parse_args(argv)


def prepare_table(data: Path, work: Path, rows: int | None) -> tuple:
    """Run ``methray.prepare.prepare`` on the real IMR90 file (or its first ``rows`` lines)."""
    from methray.config import load_config
    from methray.prepare import prepare

    cov = data / "imr90_wgbs.bismark.cov.gz"
    if rows:
        with gzip.open(cov, "rt") as src, gzip.open(work / "imr90_head.cov.gz", "wt") as dst:
            for i, line in zip(range(rows), src):
                dst.write(line)
        cov = work / "imr90_head.cov.gz"
    cfg = load_config(data={
        "run_name": "bench", "data_dir": str(data), "out_dir": str(work / "run"), "reference": "chr22.fa",
        "cpg_islands": "cpg_islands.bed", "tissues": [{"name": "imr90", "path": str(cov), "format": "bismark_cov"}],
        "split": {"n_blocks": 5, "val_fraction": 0.2, "test_fraction": 0.2},
    })
    start = time.perf_counter()
    reports = prepare(cfg)
    return cfg, reports[0].kept, time.perf_counter() - start, str(cov)


def main(argv=None) -> Path:
    args = parse_args(argv)
    budget = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))

    import numpy as np
    import torch

    from bench import data_pipeline, encode, machine, projection, report, scoring, training
    from bench.raytools import ray_session
    from methray.config import ScoreConfig
    from methray.sites import read_sites

    t0 = time.perf_counter()
    info = machine.describe()
    res = {
        "date": dt.date.today().isoformat(), "machine": info, "machine_slug": machine.machine_slug(info),
        "command": "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv), "quick": args.quick,
        "params": {k: v for k, v in budget.items()}, "loadavg_start": list(os.getloadavg()), "notes": [],
    }
    fasta = str(Path(args.data) / "chr22.fa")
    with tempfile.TemporaryDirectory(prefix="methray-bench-") as tmp:
        work = Path(tmp)
        print("prepare ...", flush=True)
        with machine.MemorySampler() as mem:
            cfg, n_sites, prepare_s, cov = prepare_table(Path(args.data), work, budget["rows"])
        res["data"] = {"input": os.path.relpath(cov, ROOT) if not args.quick else f"first {budget['rows']} lines of imr90_wgbs.bismark.cov.gz", "sites": n_sites, "prepare_s": round(prepare_s, 2), "memory": mem.peak}
        sites = read_sites(cfg.sites_table, columns=["chrom", "pos"])
        chrom = sites["chrom"].iloc[0]
        positions = sites.loc[sites["chrom"] == chrom, "pos"].to_numpy(np.int64)
        mrcnn_spec = training.model_spec("mrcnn")

        if "encoding" in sections:
            print("1. encoding ...", flush=True)
            with machine.MemorySampler() as mem:
                res["encoding"] = encode.run(fasta, chrom, positions, mrcnn_spec, naive_sites=budget["naive_sites"], repeats=budget["repeats"])
            res["encoding"]["memory"] = mem.peak

        if "training" in sections:
            print("3. training: plain torch baseline ...", flush=True)
            y_all = torch.from_numpy(read_sites(cfg.sites_table, columns=["beta"])["beta"].to_numpy(np.float32))
            take = lambda n: positions[np.arange(n) % len(positions)]  # noqa: E731  (wraps around on tiny inputs)
            n_base = budget["baseline_samples"]
            x = training.encoded_windows(fasta, chrom, take(n_base), mrcnn_spec)
            y = y_all[np.arange(n_base) % len(y_all)]
            res["training"] = {"torch_baseline": {"model": "mrcnn", "samples": n_base, "batch_size": 128, **training.torch_baseline("mrcnn", x, y, batch_size=128)}}
            windows = {name: (training.encoded_windows(fasta, chrom, take(min(n, budget["gpu_samples"])), training.model_spec(name)), y_all[np.arange(min(n, budget["gpu_samples"])) % len(y_all)]) for name, (n, _) in budget["train"].items()} if torch.cuda.is_available() else {}
            infer_x = training.encoded_windows(fasta, chrom, positions, mrcnn_spec) if torch.cuda.is_available() else None
            res["training"]["gpu"] = training.gpu(list(windows), windows, infer_x, batch_size=256, infer_batch_size=4096)

        if "pipeline" in sections and not args.quick:
            print("2. Ray Data pipeline (1 and 2 CPUs) ...", flush=True)
            res["pipeline"] = data_pipeline.run(cfg.sites_table, fasta, mrcnn_spec, cpus=(1, 2))

        if sections & {"training", "scoring"} or args.quick:
            with ray_session(args.cpus):
                if "pipeline" in sections and args.quick:  # one Ray start-up only
                    print(f"2. Ray Data pipeline ({args.cpus} CPUs, quick) ...", flush=True)
                    res["pipeline"] = data_pipeline.run(cfg.sites_table, fasta, mrcnn_spec, cpus=(args.cpus,), fresh=False)
                if "training" in sections:
                    res["training"]["ray_train"] = {}
                    for name, (n, batch) in budget["train"].items():
                        row = {"batch_size": batch}
                        rows = training.window_rows(cfg.sites_table, samples=n, val_samples=budget["val_samples"])
                        for workers in (1, 2):
                            print(f"3. training: {name} with {workers} Ray Train worker(s), {n} samples ...", flush=True)
                            row[str(workers)] = training.ray_train(rows, fasta, name, batch_size=batch, workers=workers, work_dir=str(work))
                        row["scaling_2_vs_1"] = round(row["2"]["samples_per_s"] / row["1"]["samples_per_s"], 2)
                        res["training"]["ray_train"][name] = row
                if "scoring" in sections:
                    print("4. scoring: Ray Data vs single-process loop ...", flush=True)
                    gpus = 0.5 if torch.cuda.is_available() else 0
                    configs = {"2 actors": ScoreConfig(actors=2, cpus_per_actor=0.5, gpus_per_actor=gpus, batch_size=1024)}
                    res["scoring"] = scoring.run(cfg, str(work), configs=configs, threads=args.cpus)

    if "scoring" in res:
        gpu_inf = res.get("training", {}).get("gpu", {}).get("inference", {})
        res["projection"] = projection.project(
            cpu_cpgs_per_s=res["scoring"]["ray"]["2 actors"]["cpgs_per_s"], cpu_cores=args.cpus,
            gpu_cpgs_per_s=max((v["samples_per_s"] for v in gpu_inf.values()), default=None),
            encode_windows_per_s_per_core=res["encoding"]["encoders"]["methray_encode_batch"]["windows_per_s"] if "encoding" in res else 3e5,
        )
    res["targets"] = report.targets(res)
    res["loadavg_end"] = list(os.getloadavg())
    res["total_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{res['date']}-{res['machine_slug']}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    stem.with_suffix(".md").write_text(report.markdown(res))
    print(f"wrote {stem}.md ({res['total_s']:.0f} s)", flush=True)
    return stem.with_suffix(".md")


if __name__ == "__main__":
    main()
