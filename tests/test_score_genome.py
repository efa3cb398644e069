"""Genome-wide scoring of a tissue set on a slice of the real hg19 chr22 (untrained models)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from methray import checkpoint, models
from methray.genome_scoring import job as sg
from methray.errors import MethrayError
from methray.genome import Reference
from methray.shards import ShardLedger
from methray.genome_scoring.config import check_date, load_tissue_set

from conftest import DATA, FASTA, ROOT

REGION = "chr22:24,080,000-25,080,000"  # 1 Mb with IMR90 and saliva measurements
TEST_REGIONS = "chrom\tstart\tend\tsplit\nchr22\t0\t24500000\ttrain\nchr22\t24500000\t25000000\ttest\nchr22\t25000000\t51304566\ttrain\n"


def _checkpoint(root: Path, tissue: str, seed: int) -> Path:
    torch.manual_seed(seed)
    model = models.build("mrcnn", window_length=400, n_outputs=1)
    meta = checkpoint.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1, tissue=tissue)
    checkpoint.save(root / "checkpoint", model, meta)
    (root / "split_regions.tsv").write_text(TEST_REGIONS)
    return root / "checkpoint"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {"imr90": _checkpoint(root / "imr90", "imr90", 0), "saliva": _checkpoint(root / "saliva", "saliva", 1)}


def _config(out: Path, ckpts, *, shard_bp=100_000, region=REGION, donors=True, **extra) -> dict:
    saliva = {"name": "saliva", "checkpoint": str(ckpts["saliva"]), "measured": "saliva_bisulfite_mean.bedGraph.gz"}
    if donors:
        saliva["donors"] = "saliva_bisulfite_beta.tsv.gz"
    return {
        "run_name": "t",
        "data_dir": str(DATA),
        "out_dir": str(out),
        "reference": "chr22.fa",
        "cpg_islands": "cpg_islands.bed",
        "regions": [region],
        "shard_bp": shard_bp,
        "tissues": [
            {"name": "imr90", "checkpoint": str(ckpts["imr90"]), "measured": "imr90_wgbs.bismark.cov.gz", "format": "bismark_cov"},
            saliva,
        ],
        "score": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 256},
        **extra,
    }


def _bedgraph(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", skiprows=1, names=["chrom", "start", "end", "value"])


@pytest.fixture(scope="module")
def full_run(ray_session, ckpts, tmp_path_factory):
    cfg = load_tissue_set(data=_config(tmp_path_factory.mktemp("full"), ckpts))
    return cfg, sg.score_genome(cfg, date="2025-01-02")


def test_outputs_sorted_tracks_tables(full_run):
    cfg, res = full_run
    prefix = Path(cfg.out_dir) / "t" / "2025-01-02"
    assert res.prefix == str(prefix) and res.n_shards == 11 and res.scored == res.cpgs - res.excluded > 5000
    beds = {}
    for tissue in ("imr90", "saliva"):
        bg = prefix / f"{tissue}.mrcnn.bedGraph"
        assert bg.read_text().startswith(f'track type=bedGraph name="{tissue} mrcnn"')
        df = _bedgraph(bg)
        beds[tissue] = df
        assert len(df) == res.scored
        assert (df["chrom"] == "chr22").all() and (np.diff(df["start"]) > 0).all() and (df["end"] == df["start"] + 1).all()
        assert df["start"].min() >= 24_080_000 and df["start"].max() < 25_080_000
        assert df["value"].between(0, 1).all()
        # Every listed site is a CpG of the reference.
        seq = Reference(str(FASTA)).fetch("chr22", 24_080_000, 25_080_001).upper()
        assert all(seq[p - 24_080_000 : p - 24_080_000 + 2] == "CG" for p in df["start"].to_numpy()[::97])
        import pybigtools
        import pyBigWig

        bw = pybigtools.open(str(prefix / f"{tissue}.mrcnn.bw"))
        ivals = list(bw.records("chr22"))
        assert [s for s, _, _ in ivals] == df["start"].tolist()
        assert np.array_equal(np.array([v for _, _, v in ivals], np.float32), df["value"].to_numpy(np.float32))
        with pyBigWig.open(str(prefix / f"{tissue}.mrcnn.bw")) as pbw:
            s = int(df["start"].iloc[5])
            assert pbw.values("chr22", s, s + 1)[0] == pytest.approx(df["value"].iloc[5], abs=1e-6)
            assert pbw.header()["nLevels"] >= 4
            # Zoom summaries: over the whole scored region no partial bin needs prorating.
            region = (0, 51_304_566)
            # (mean: 0.005 for libBigWig's lost last zoom sum, see methray.tracks)
            assert pbw.stats("chr22", *region, type="mean")[0] == pytest.approx(df["value"].mean(), abs=5e-3)
            assert pbw.stats("chr22", *region, type="max")[0] == pytest.approx(df["value"].max(), abs=1e-6)
            assert pbw.stats("chr22", *region, type="coverage")[0] == pytest.approx(len(df) / region[1], rel=1e-3)
    assert not np.allclose(beds["imr90"]["value"], beds["saliva"]["value"])  # two different models
    # Predictions: one schema (methray.predictions), one table over the whole folder.
    import duckdb

    from methray import predictions

    table = duckdb.sql(f"select * from read_parquet('{prefix}/predictions/*/*.parquet')").df()
    assert list(table.columns) == predictions.COLUMNS
    assert set(table["tissue"]) == {"imr90", "saliva"} and set(table["model"]) == {"mrcnn"} and set(table["chrom"]) == {"chr22"}
    assert table["split"].isna().all() and table["beta"].isna().all()
    imr = table[table["tissue"] == "imr90"].sort_values("pos")
    assert np.array_equal(imr["pos"].to_numpy(), beds["imr90"]["start"].to_numpy())
    # Metric tables.
    from methray.metrics import COLUMNS

    cross = pd.read_csv(prefix / "cross_tissue.tsv", sep="\t")
    assert list(cross.columns) == COLUMNS + ["trained_on", "model_of", "restriction"]
    assert len(cross) == 2 * 2 * 3  # models x measured tissues x subsets
    assert cross["restriction"].str.contains("test regions of the").all()
    assert (cross.loc[cross["subset"] == "all", "n"] > 0).all()
    metrics = pd.read_csv(prefix / "metrics.tsv", sep="\t")
    assert list(metrics.columns) == COLUMNS + ["region", "measured_not_scored"]
    assert set(metrics["tissue"]) == {"imr90", "saliva"} and len(metrics) == 2 * 2 * 3
    assert (metrics["n_hyper"] + metrics["n_mid"] + metrics["n_hypo"] <= metrics["n"]).all() and metrics["n_hyper"].sum() > 0
    assert pd.read_parquet(prefix / "metrics.parquet").shape == metrics.shape
    donors = pd.read_csv(prefix / "donors.tsv", sep="\t")
    assert donors["donor"].nunique() == 100 and (donors["n"] > 0).all()
    summary = pd.read_csv(prefix / "donors_summary.tsv", sep="\t")
    assert set(summary["metric"]) == {"auroc", "rmse", "n"} and (summary["donors"] == 100).all()
    assert (prefix / "figure.png").stat().st_size > 20_000
    assert not list(prefix.rglob("*.tmp-*"))


def test_rerun_of_complete_date_only_reports(full_run):
    cfg, res = full_run
    again = sg.score_genome(cfg, date="2025-01-02")
    assert again.already_complete and again.scored == res.scored


def test_killed_run_resumes_byte_identical(full_run, ckpts, tmp_path):
    cfg_full, _ = full_run
    reference = Path(cfg_full.prefix("2025-01-02")) / "imr90.mrcnn.bedGraph"
    conf = _config(tmp_path / "out", ckpts, donors=False, ray={"address": "local"})
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, "-m", "methray.cli", "score-genome", "--config", str(path), "--date", "2025-01-02"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    prefix = tmp_path / "out" / "t" / "2025-01-02"
    markers = prefix / "_shards"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (markers.exists() and list(markers.glob("*.done"))):
            assert proc.poll() is None, "the job ended before its first shard"
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    finally:
        proc.wait()
    ledger = ShardLedger(str(prefix))
    shards = sg.plan(load_tissue_set(str(path)), Reference(str(FASTA)))
    n_done = len(ledger.done(shards))
    assert 0 < n_done < len(shards), f"kill left {n_done}/{len(shards)} shards done"
    assert not (prefix / "imr90.mrcnn.bedGraph").exists()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"({n_done} done before this run)" in out.stdout
    assert (prefix / "imr90.mrcnn.bedGraph").read_bytes() == reference.read_bytes()
    assert (prefix / "saliva.mrcnn.bedGraph").read_bytes() == (reference.parent / "saliva.mrcnn.bedGraph").read_bytes()


def test_shards_scored_in_pieces_give_the_same_predictions(full_run, ckpts, tmp_path, monkeypatch):
    # pieces of one sub-batch (256 CpGs): each shard goes to the actors in several blocks
    monkeypatch.setattr(sg, "PIECE_BATCHES", 1)
    cfg = load_tissue_set(data=_config(tmp_path, ckpts, donors=False, region="chr22:24,080,000-24,400,000"))
    res = sg.score_genome(cfg)
    ledger = ShardLedger(res.prefix)
    sizes = [ledger.record(s)["n_sites"] for s in ledger.done(sg.plan(cfg, Reference(str(FASTA))))]
    assert len(sizes) == 4 and max(sizes) > 3 * 256, sizes
    full_prefix = Path(full_run[0].prefix("2025-01-02"))
    for tissue in ("imr90", "saliva"):
        files = sorted((Path(res.prefix) / "predictions" / f"{tissue}.mrcnn").glob("*.parquet"))
        assert len(files) == 4
        for f in files:
            got, want = pd.read_parquet(f), pd.read_parquet(full_prefix / "predictions" / f"{tissue}.mrcnn" / f.name)
            pd.testing.assert_frame_equal(got, want)  # same CpGs, same bits


def test_failing_shard_leaves_no_final_file(ray_session, ckpts, tmp_path, monkeypatch):
    calls = []
    real = sg.write_shard

    def flaky(prefix, shard, df, models):
        calls.append(shard.id)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        real(prefix, shard, df, models)

    monkeypatch.setattr(sg, "write_shard", flaky)
    cfg = load_tissue_set(data=_config(tmp_path, ckpts, shard_bp=200_000, region="chr22:24,100,000-24,700,000", donors=False))
    with pytest.raises(OSError, match="injected"):
        sg.score_genome(cfg)
    prefix = Path(cfg.prefix())
    finals = [p.name for p in prefix.iterdir() if p.suffix in (".bedGraph", ".bw", ".tsv", ".png")]
    assert finals == [] and not (prefix / "_summary.json").exists()
    assert not list(prefix.rglob("*.tmp-*"))
    assert len(ShardLedger(str(prefix)).done_ids()) == 1
    assert len(list((prefix / "predictions").rglob("*.parquet"))) == 2  # the finished shard, both tissues


def test_corrupt_checkpoint_fails_in_the_driver(ckpts, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text((ckpts["imr90"] / "meta.json").read_text())
    (bad / "model.pt").write_bytes(b"not a torch file")
    conf = _config(tmp_path / "out", ckpts)
    conf["tissues"][0]["checkpoint"] = str(bad)
    with pytest.raises(MethrayError, match="cannot load the checkpoint"):
        sg.score_genome(load_tissue_set(data=conf))
    assert not (tmp_path / "out" / "t" / "_summary.json").exists()


def test_plan_clips_shards_to_regions(ckpts, tmp_path):
    cfg = load_tissue_set(data=_config(tmp_path, ckpts, shard_bp=300_000, region="chr22:100,000-1,000,000"))
    shards = sg.plan(cfg, Reference(str(FASTA)))
    assert [(s.start, s.end, s.index) for s in shards] == [(100_000, 300_000, 0), (300_000, 600_000, 1), (600_000, 900_000, 2), (900_000, 1_000_000, 3)]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"shard_size": 5}, "shard_size"),
        ({"regions": ["chr22:5-1"]}, "regions"),
        ({"tissues": []}, "tissues"),
    ],
)
def test_config_errors(ckpts, tmp_path, change, message):
    with pytest.raises(MethrayError, match=message):
        load_tissue_set(data={**_config(tmp_path, ckpts), **change})


def test_bad_date_and_shipped_configs():
    with pytest.raises(MethrayError, match="YYYY-MM-DD"):
        check_date("21-11-2026")
    cfg = load_tissue_set(str(ROOT / "methray" / "configs" / "tissue_set.yaml"))
    assert [t.name for t in cfg.tissues] == ["imr90", "saliva"] and cfg.tissues[1].donors.endswith("saliva_bisulfite_beta.tsv.gz")
    from methray.config import load_config

    assert load_config(str(ROOT / "methray" / "configs" / "saliva.yaml")).tissues[0].format == "bedgraph"


@pytest.fixture(scope="module")
def two_contigs(tmp_path_factory) -> Path:
    """A 2-contig FASTA cut from the real chr22, named so that FASTA order (chr9, chr10) is not byte order."""
    root = tmp_path_factory.mktemp("two")
    ref = Reference(str(FASTA))
    fasta = root / "two.fa"
    with open(fasta, "w") as fh:
        for name, start in (("chr9", 24_080_000), ("chr10", 24_500_000)):
            seq = ref.fetch("chr22", start, start + 300_000)
            fh.write(f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    return fasta


def test_two_contigs_sorted_tracks_and_predictions_figure(ray_session, ckpts, two_contigs, tmp_path):
    import duckdb
    import pyBigWig

    conf = {
        "run_name": "two", "data_dir": str(two_contigs.parent), "out_dir": str(tmp_path), "reference": two_contigs.name, "genome": "hg19-slices",
        "shard_bp": 100_000, "tissues": [{"name": "imr90", "checkpoint": str(ckpts["imr90"])}],
        "score": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 256},
    }
    cfg = load_tissue_set(data=conf)
    res = sg.score_genome(cfg)
    prefix = Path(res.prefix)
    bg = prefix / "imr90.mrcnn.bedGraph"
    rows = "".join(bg.read_text().splitlines(keepends=True)[1:])
    check = subprocess.run(["sort", "-c", "-k1,1", "-k2,2n"], input=rows, text=True, capture_output=True, env={"LC_ALL": "C"})
    assert check.returncode == 0, check.stderr
    df = _bedgraph(bg)
    assert df["chrom"].unique().tolist() == ["chr10", "chr9"] and len(df) == res.scored
    with pyBigWig.open(str(prefix / "imr90.mrcnn.bw")) as bw:
        assert list(bw.chroms()) == ["chr10", "chr9"]
        for chrom, sub in df.groupby("chrom"):
            # Zoom summaries of each contig agree with its rows (the multi-contig
            # output counted 31,300 CpGs on a contig with 2,554).
            assert bw.stats(chrom, type="coverage")[0] * bw.chroms(chrom) == pytest.approx(len(sub), rel=1e-3)
            assert bw.stats(chrom, type="mean")[0] == pytest.approx(sub["value"].mean(), abs=5e-3)
            assert bw.stats(chrom, type="max")[0] == pytest.approx(sub["value"].max(), abs=1e-6)
    # No measured data: no metric tables, the figure of predictions alone.
    assert res.tables == {"figure": str(prefix / "figure.png")} and not (prefix / "metrics.tsv").exists()
    assert (prefix / "figure.png").stat().st_size > 20_000
    got = duckdb.sql(f"select chrom, count(*) n from read_parquet('{prefix}/predictions/*/*.parquet') group by chrom order by chrom").fetchall()
    assert got == [("chr10", int((df["chrom"] == "chr10").sum())), ("chr9", int((df["chrom"] == "chr9").sum()))]
    # Reference order on request (the bigWig stays sorted: its chromosome index is keyed by name).
    shards = sg.plan(cfg, Reference(str(two_contigs)))
    sorted_bw = (prefix / "imr90.mrcnn.bw").read_bytes()
    sg.assemble_tracks(str(prefix), "imr90", "mrcnn", "d", shards, sg.shard_counts(str(prefix / "cpgs"), shards),
                       Reference(str(two_contigs)).sizes, order="reference")
    ref_order = _bedgraph(bg)
    assert ref_order["chrom"].unique().tolist() == ["chr9", "chr10"]
    # The same rows, and (second pass over the shards, in sorted order) the same bigWig bytes.
    assert ref_order.sort_values(["chrom", "start"], ignore_index=True).equals(df.sort_values(["chrom", "start"], ignore_index=True))
    assert (prefix / "imr90.mrcnn.bw").read_bytes() == sorted_bw
