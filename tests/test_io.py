"""Readers and the prepare stage on real rows of the shared files, and bad input."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from methray.config import load_config
from methray.errors import MethrayError
from methray.io.bed import load_islands, read_bed
from methray.io.methylation import detect_format, read_methylation
from methray.prepare import prepare
from methray.sites import read_sites

from conftest import DATA, IMR90, ISLANDS, SALIVA, head_lines, slice_config, write_gz


def test_bismark_cov_rows_become_0_based():
    df = read_methylation(str(IMR90))
    assert len(df) == 130_054
    first = df.iloc[0]  # chr22 24080628 24080628 83.3333 5 1
    assert (first["chrom"], first["pos"], first["n_meth"], first["n_total"]) == ("chr22", 24080627, 5, 6)
    assert first["beta"] == pytest.approx(5 / 6)
    assert first["line"] == 1


def test_bedgraph_track_line_and_percent():
    df = read_methylation(str(SALIVA))
    assert len(df) == 16_820
    assert df.iloc[0]["pos"] == 17443633 and df.iloc[0]["beta"] == pytest.approx(0.8434)
    assert df.iloc[0]["line"] == 2  # line 1 is the track line
    assert df["n_total"].isna().all()


def test_format_detection_by_content(tmp_path):
    assert detect_format(str(IMR90)) == "bismark_cov"
    assert detect_format(str(SALIVA)) == "bedgraph"
    renamed = tmp_path / "calls.txt.gz"  # the name says nothing; the content does
    renamed.write_bytes(IMR90.read_bytes()[:100_000])
    assert detect_format(str(renamed)) == "bismark_cov"
    odd = tmp_path / "odd.txt"
    odd.write_text("chr22\t1\t2\t3\t4\n")
    with pytest.raises(MethrayError, match=r"odd\.txt:1: cannot tell the methylation format.*5 columns.*expected one of: bismark_cov"):
        detect_format(str(odd))


def test_islands_flag_half_open():
    islands = read_bed(str(ISLANDS), names=["name"])
    assert len(islands) == 719
    s, e = int(islands.iloc[0]["start"]), int(islands.iloc[0]["end"])
    flags = load_islands(str(ISLANDS)).contains("chr22", np.array([s - 1, s, e - 1, e]))
    assert flags.tolist() == [False, True, True, False]


def _run(tmp_path, lines, name="in.cov.gz", **sections):
    cov = write_gz(tmp_path / name, lines)
    cfg = load_config(data=slice_config(tmp_path / "run", cov, **sections))
    return cfg, prepare(cfg)


def test_strand_merge_on_real_cpgs(tmp_path):
    plus = head_lines(IMR90, 50)
    minus = []
    for line in plus:  # the - strand C of each CpG is the + strand G: 1-based start + 1
        chrom, start, _, _, m, u = line.split("\t")
        s = int(start) + 1
        minus.append(f"{chrom}\t{s}\t{s}\t50.0\t2\t2\n")
    extra = head_lines(IMR90, 200, skip=50)
    cfg, (report,) = _run(tmp_path, plus + minus + extra, prepare={"min_coverage": 1})
    assert report.rows_read == 300 and report.non_cpg_dropped == 0
    assert report.cpgs == 250 and report.cpgs_both_strands == 50
    table = read_sites(cfg.sites_table).set_index("pos")
    chrom, start, _, _, m, u = plus[0].split("\t")
    row = table.loc[int(start) - 1]
    assert row["n_meth"] == int(m) + 2 and row["n_total"] == int(m) + int(u) + 4
    assert row["beta"] == pytest.approx((int(m) + 2) / (int(m) + int(u) + 4))


def test_coverage_filter_counts_what_it_drops(tmp_path):
    lines = head_lines(IMR90, 400)
    low = sum(int(l.split("\t")[4]) + int(l.split("\t")[5]) < 5 for l in lines)
    cfg, (report,) = _run(tmp_path, lines)
    assert low > 0 and report.low_coverage_dropped == low
    assert report.kept == 400 - low
    assert sum(report.split.values()) == report.kept


def test_bedgraph_read_as_bismark_fails_as_wrong_coordinate_base(tmp_path):
    # 0-based bedGraph starts declared as 1-based Bismark coordinates land one base before the C.
    lines = [f"{c}\t{s}\t{s}\t80.0\t4\t1\n" for c, s, _e, _v in (l.split("\t") for l in head_lines(SALIVA, 300, skip=1))]
    with pytest.raises(MethrayError, match=r"not CpGs.*coordinate base"):
        _run(tmp_path, lines)
    assert not (tmp_path / "run" / "cpg_table").exists()


def test_a_few_non_cpg_sites_are_dropped_and_counted(tmp_path):
    lines = head_lines(IMR90, 500)
    c, s, e, *rest = lines[10].split("\t")
    lines[10] = "\t".join([c, str(int(s) - 1), str(int(e) - 1), *rest])  # one shifted row: 0.2%
    _, (report,) = _run(tmp_path, lines)
    assert report.non_cpg_dropped == 1 and report.cpgs == 499


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr99\t100\t100\t50.0\t1\t1\n", r"in\.cov\.gz:3: chromosome 'chr99' is not in"),
        ("chr22\t99999999\t99999999\t50.0\t1\t1\n", r"in\.cov\.gz: 1 of 8 sites .* not CpGs .*1 past a contig end; first at line 3: chr22:99999998"),
        ("chr22\t24080628\t24080628\tfifty\t1\t1\n", r"in\.cov\.gz:3: expected a finite number in column 'percent', got 'fifty'"),
        ("chr22\t24080628\t24080628\t150\t1\t1\n", r"in\.cov\.gz:3: expected a methylation percent in 0\.\.100"),
        ("chr22\t24080628\t24080628\t50.0\n", r"in\.cov\.gz:3: expected 6 non-empty columns for bismark_cov"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    lines = head_lines(IMR90, 2) + [line] + head_lines(IMR90, 5, skip=2)
    with pytest.raises(MethrayError, match=message):
        _run(tmp_path, lines)
    assert not (tmp_path / "run" / "cpg_table").exists()


def test_cli_bad_input_one_line_error_nonzero_exit_no_outputs(tmp_path):
    cfg = slice_config(tmp_path / "run", tmp_path / "missing.cov.gz")
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    proc = subprocess.run([sys.executable, "-m", "methray.cli", "prepare", "--config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("methray: error:") and "missing.cov.gz: file not found" in proc.stderr
    assert not (tmp_path / "run" / "cpg_table").exists() and not (tmp_path / "run" / "prepare_report.json").exists()


def test_config_rejects_unknown_keys(tmp_path):
    cfg = slice_config(tmp_path, IMR90)
    cfg["train"]["epochz"] = 3
    with pytest.raises(MethrayError, match="train.epochz"):
        load_config(data=cfg)


def test_saliva_bedgraph_prepares_with_unknown_coverage(tmp_path):
    lines = head_lines(SALIVA, 3000)
    with gzip.open(tmp_path / "s.bedGraph.gz", "wt") as fh:
        fh.writelines(lines)
    cfg = load_config(data=slice_config(tmp_path / "run", tmp_path / "s.bedGraph.gz", tissues=[{"name": "saliva", "path": str(tmp_path / "s.bedGraph.gz")}]))
    (report,) = prepare(cfg)
    assert report.rows_read == 2999 and report.non_cpg_dropped == 0
    assert report.coverage_unknown == report.cpgs == report.kept
    table = read_sites(cfg.sites_table)
    assert set(table["tissue"]) == {"saliva"} and table["n_total"].isna().all()
    assert pd.api.types.is_bool_dtype(table["in_cpg_island"]) and table["in_cpg_island"].any()
