"""Every caller's format on real IMR90 rows; contexts, contig names, duplicates, scales; bad input.

The IMR90 Bismark rows (real WGBS, hg19 chr22) are written in each format by
``tests/methylation_writers.py`` (+ strand calls at the C, - strand calls at the G, or the
counts split over both), prepared, and compared with the table prepared from the Bismark
rows themselves. No Ray: prepare only.
"""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from methray.cli import main
from methray.config import load_config
from methray.errors import MethrayError
from methray.io import text as text_io
from methray.io.methylation import MethylationReader, ReadOptions, detect_format, read_methylation
from methray.prepare import prepare
from methray.sites import read_sites

import methylation_writers as mw
from conftest import FASTA, IMR90, slice_config, write_gz

N_ROWS = 1500
COLS = ["chrom", "pos", "n_meth", "n_total", "beta", "in_cpg_island", "split"]
DETECTED = {"bedmethyl_encode": "bedmethyl"}


@pytest.fixture(scope="module")
def rows():
    return mw.imr90_rows(N_ROWS)


@pytest.fixture(scope="module")
def extra(rows):
    """Real CHG / CHH C's of chr22.fa inside the rows' span, on both strands."""
    return mw.non_cpg_calls(str(FASTA), "chr22", rows[0][1] - 1, rows[-1][1], 1000)


def _prepare(tmp_path, path, name="run", **tissue):
    cfg = slice_config(tmp_path / name, path, prepare={"min_coverage": 1})
    cfg["tissues"] = [{"name": "imr90", "path": str(path), **tissue}]
    cfg = load_config(data=cfg)
    (report,) = prepare(cfg)
    return read_sites(cfg.sites_table)[COLS].sort_values("pos", ignore_index=True), report


@pytest.fixture(scope="module")
def expected(rows, tmp_path_factory):
    """The table prepared from the IMR90 rows as Bismark wrote them."""
    tmp = tmp_path_factory.mktemp("bismark")
    path = write_gz(tmp / "imr90.cov.gz", [f"{c}\t{s}\t{s}\t{100 * m / (m + u):g}\t{m}\t{u}\n" for c, s, m, u in rows])
    table, report = _prepare(tmp, path)
    assert report.cpgs == N_ROWS and report.non_cpg_dropped == 0
    return table


@pytest.mark.parametrize("fmt", mw.FORMATS)
def test_every_format_gives_the_bismark_table(fmt, rows, extra, expected, tmp_path):
    contexts = fmt in ("bismark_report", "cgmap", "allc", "bsmap")
    calls = mw.cpg_calls(rows, both_strands=True)
    if fmt == "bedgraph":  # no counts: a CpG split over two strands would get the mean of two betas
        calls = [mw.Call(c, s - 1 if i % 2 == 0 else s, "+" if i % 2 == 0 else "-", m, u, "CG") for i, (c, s, m, u) in enumerate(rows)]
    path = mw.write(fmt, calls + (extra if contexts else []), tmp_path / f"in.{fmt}.gz", str(FASTA), hmc=1 if fmt == "bedmethyl" else 0)
    assert detect_format(str(path)) == DETECTED.get(fmt, fmt)
    tissue = {"modkit_5hmc": "add"} if fmt == "bedmethyl" else {}
    table, report = _prepare(tmp_path, path, **tissue)
    assert report.format == DETECTED.get(fmt, fmt) and report.format_detected
    assert report.other_context_dropped == (len(extra) if contexts else 0)
    assert report.other_modification_dropped == (len(calls) if fmt == "bedmethyl" else 0)
    assert report.non_cpg_dropped == 0 and report.cpgs == N_ROWS
    assert report.cpgs_both_strands == (sum(1 for i, r in enumerate(rows) if i % 3 == 2 and r[2] // 2 + r[3] // 2) if fmt != "bedgraph" else 0)
    pd.testing.assert_frame_equal(table[["chrom", "pos", "in_cpg_island", "split"]], expected[["chrom", "pos", "in_cpg_island", "split"]])
    if fmt == "bedgraph":
        assert table["n_total"].isna().all()
        np.testing.assert_allclose(table["beta"], expected["beta"], atol=1e-6)
    elif fmt == "bedmethyl_encode":  # % is an integer: counts come back exactly below 100 reads
        exact = expected["n_total"] < 100
        assert (~exact).sum() <= 2
        pd.testing.assert_frame_equal(table[exact], expected[exact])
        np.testing.assert_allclose(table["beta"], expected["beta"], atol=0.005)
    else:
        pd.testing.assert_frame_equal(table, expected)


def test_allc_without_header_and_uncompressed(rows, tmp_path):
    path = mw.write("allc", mw.cpg_calls(rows[:50]), tmp_path / "allc_no_header.tsv", str(FASTA), header=False)
    assert detect_format(str(path)) == "allc"
    assert len(read_methylation(str(path))) == len(mw.cpg_calls(rows[:50]))


def test_cx_report_keeps_only_cg_rows(rows, extra, tmp_path):
    calls = mw.cpg_calls(rows[:300])
    path = mw.write("bismark_report", calls + extra, tmp_path / "CX_report.txt.gz", str(FASTA))
    df = read_methylation(str(path))
    assert len(df) == len(calls)
    assert {c.context for c in extra} == {"CHG", "CHH"}
    # the same rows without a context column are not CpGs of the reference: refused, with the right hint
    cov = mw.write("bismark_cov", calls + extra, tmp_path / "cx.cov.gz", str(FASTA))
    with pytest.raises(MethrayError, match=r"are not CpGs.*100% of them are C/G of the reference outside a CpG: non-CpG calls"):
        _prepare(tmp_path, cov)


def test_modkit_5hmc_is_dropped_or_added(rows, tmp_path):
    calls = mw.cpg_calls(rows[:200], both_strands=False)
    path = mw.write("bedmethyl", calls, tmp_path / "modkit.bed", str(FASTA), hmc=1)
    dropped = read_methylation(str(path))
    added = MethylationReader(str(path), options=ReadOptions(modkit_5hmc="add")).read()
    m = np.array([c.m for c in calls], float)
    np.testing.assert_array_equal(added["n_meth"], m)
    np.testing.assert_array_equal(dropped["n_meth"], np.maximum(m - 1, 0))
    assert (dropped["n_total"] == added["n_total"]).all()


@pytest.mark.parametrize("tabs", [9, 10])
def test_modkit_space_separated_counts(rows, tmp_path, tabs):
    """modkit pileup without --only-tabs: tabs for the first fields, spaces thereafter."""
    path = mw.write("bedmethyl", mw.cpg_calls(rows[:20], both_strands=False), tmp_path / "old.bed", str(FASTA))
    lines = [l.split("\t") for l in path.read_text().splitlines()]
    path.write_text("".join("\t".join(f[:tabs]) + "\t" + " ".join(f[tabs:]) + "\n" for f in lines))
    assert detect_format(str(path)) == "bedmethyl"
    df = read_methylation(str(path))
    assert df["n_total"].tolist() == [m + u for _, _, m, u in rows[:20]]


def test_contig_names_mapped_and_reported(rows, expected, tmp_path):
    lines = [f"22\t{s}\t{s}\t{100 * m / (m + u):g}\t{m}\t{u}\n" for _c, s, m, u in rows]
    path = write_gz(tmp_path / "ensembl.cov.gz", lines)
    table, report = _prepare(tmp_path, path)
    assert report.contigs_renamed == {"22": "chr22"}
    pd.testing.assert_frame_equal(table, expected)
    _, report = _prepare(tmp_path, path, "explicit", contig_map={"22": "chr22"}, match_contig_names=False)
    assert report.contigs_renamed == {"22": "chr22"}
    with pytest.raises(MethrayError, match=r"ensembl\.cov\.gz:1: chromosome '22' is not in"):
        _prepare(tmp_path, path, "off", match_contig_names=False)


def test_duplicates_error_names_both_lines_or_are_summed(rows, tmp_path):
    lines = [f"{c}\t{s}\t{s}\t{100 * m / (m + u):g}\t{m}\t{u}\n" for c, s, m, u in rows[:400]]
    lines.insert(10, lines[3])  # line 11 repeats line 4: the same + strand C
    path = write_gz(tmp_path / "dup.cov.gz", lines)
    with pytest.raises(MethrayError, match=r"dup\.cov\.gz:11: expected one row per site and strand; line 4 has the same \+ strand C"):
        _prepare(tmp_path, path)
    table, report = _prepare(tmp_path, path, "sum", duplicates="sum")
    assert report.duplicates_summed == 1 and report.cpgs_both_strands == 0
    c, s, m, u = rows[3]
    row = table.set_index("pos").loc[s - 1]
    assert (row["n_meth"], row["n_total"]) == (2 * m, 2 * (m + u))


def test_percent_column_holding_fractions_is_refused_with_the_hint(rows, expected, tmp_path):
    lines = ["track type=bedGraph\n"] + [f"{c}\t{s - 1}\t{s}\t{m / (m + u):.6f}\n" for c, s, m, u in rows]
    path = write_gz(tmp_path / "fraction.bedGraph.gz", lines)
    with pytest.raises(MethrayError, match=r"fraction\.bedGraph\.gz: every value of the percent column lies in 0\.\.1.*set value_scale: fraction"):
        _prepare(tmp_path, path)
    table, _ = _prepare(tmp_path, path, "fraction", value_scale="fraction")
    np.testing.assert_allclose(table["beta"], expected["beta"], atol=1e-6)


def test_positions_past_the_contig_end_count_as_not_cpg(rows, tmp_path):
    lines = [f"{c}\t{s}\t{s}\t{100 * m / (m + u):g}\t{m}\t{u}\n" for c, s, m, u in rows[:999]]
    lines.append("chr22\t51304567\t51304567\t50\t1\t1\n")  # one past the last base of chr22
    _, report = _prepare(tmp_path, write_gz(tmp_path / "end.cov.gz", lines))
    assert report.past_contig_end == 1 and report.non_cpg_dropped == 1 and report.cpgs == 999


def test_streamed_in_chunks_gives_the_same_table(rows, expected, tmp_path, monkeypatch):
    path = mw.write("cgmap", mw.cpg_calls(rows), tmp_path / "x.CGmap.gz", str(FASTA))
    monkeypatch.setattr(text_io, "CHUNK_ROWS", 97)
    reader = MethylationReader(str(path))
    sizes = [len(c) for c in reader.chunks()]
    assert max(sizes) <= 97 and sum(sizes) == len(mw.cpg_calls(rows))
    table, _ = _prepare(tmp_path, path)
    pd.testing.assert_frame_equal(table, expected)


def test_bgzip_reference_works_and_plain_gzip_is_refused(rows, expected, tmp_path):
    from Bio import bgzf

    from methray.genome import Reference

    cov = write_gz(tmp_path / "in.cov.gz", [f"{c}\t{s}\t{s}\t{100 * m / (m + u):g}\t{m}\t{u}\n" for c, s, m, u in rows])
    ref = tmp_path / "chr22_head.fa.gz"  # an excerpt of chr22 (its first 25 Mb) holds the rows
    with open(FASTA, "rb") as src, bgzf.BgzfWriter(str(ref), "wb", compresslevel=1) as dst:
        dst.write(src.read(7 + 25_000_000 // 60 * 61))
    cfg = slice_config(tmp_path / "bgz", cov, prepare={"min_coverage": 1})
    cfg["reference"] = str(ref)
    cfg = load_config(data=cfg)
    prepare(cfg)
    table = read_sites(cfg.sites_table)[COLS].sort_values("pos", ignore_index=True)
    pd.testing.assert_frame_equal(table.drop(columns="split"), expected.drop(columns="split"))
    assert (tmp_path / "chr22_head.fa.gz.gzi").exists()
    plain = tmp_path / "plain.fa.gz"
    with gzip.open(plain, "wb") as fh:
        fh.write(b">chr22\nACGT\n")
    with pytest.raises(MethrayError, match=r"plain\.fa\.gz: expected an uncompressed or bgzip-compressed FASTA, found plain gzip; recompress it: .*bgzip"):
        Reference(str(plain))


# --- bad input: one line, exit 2, nothing under out_dir ------------------------------------

def _cli(tmp_path, capsys, data_path, argv=None):
    out = tmp_path / "run"
    cfg = slice_config(out, data_path)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(SystemExit) as exit_:
        main(argv or ["prepare", "--config", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("methray: error: ") and err.count("\n") == 1, err
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    return err.strip()


def _good(n=5):
    with gzip.open(IMR90, "rt") as fh:
        return [next(fh) for _ in range(n)]


BAD_INPUTS = {
    "truncated_gzip": (lambda p: p.write_bytes(gzip.compress("".join(_good(4000)).encode())[:20_000]), r"\.gz: truncated gzip stream: the file is incomplete"),
    "gz_not_gzip": (lambda p: p.write_text("".join(_good())), r"expected gzip data \(the name ends in \.gz\)"),
    "empty": (lambda p: p.write_bytes(b""), r"\.gz: no data rows"),
    "empty_gzip": (lambda p: p.write_bytes(gzip.compress(b"")), r"\.gz: no data rows"),
    "track_line_only": (lambda p: p.write_bytes(gzip.compress(b"track type=bedGraph\n")), r"\.gz: no data rows \(only header lines\)"),
    "count_past_int64": (lambda p: write_gz(p, _good(2) + ["chr22\t24080628\t24080628\t50\t99999999999999999999\t1\n"]), r"\.gz:3: expected a count that fits in int64"),
    "counts_sum_past_int64": (lambda p: write_gz(p, _good(2) + ["chr22\t24080628\t24080628\t50\t9223372036854775000\t9000\n"]), r"\.gz:3: expected counts whose sum fits in int64"),
    "nan": (lambda p: write_gz(p, _good(2) + ["chr22\t24080628\t24080628\tnan\t1\t1\n"]), r"\.gz:3: expected a finite number in column 'percent', got 'nan'"),
    "inf": (lambda p: write_gz(p, _good(2) + ["chr22\t24080628\t24080628\tinf\t1\t1\n"]), r"\.gz:3: expected a finite number in column 'percent', got 'inf'"),
    "nan_count": (lambda p: write_gz(p, _good(2) + ["chr22\t24080628\t24080628\t50\tNaN\t1\n"]), r"\.gz:3: expected an integer in column 'n_meth', got 'NaN'"),
    "header_amid_data": (lambda p: write_gz(p, _good(3) + ["chrom\tstart\tend\tpercent\tmeth\tunmeth\n"] + _good(2)), r"\.gz:4: expected a data row, found a header line"),
    "header_on_top": (lambda p: write_gz(p, ["chrom\tstart\tend\tpercent\tmeth\tunmeth\n"] + _good(3)), r"\.gz:1: expected a data row \(bismark_cov has no header\), found a header line"),
    "binary": (lambda p: p.write_bytes(gzip.compress(bytes(range(256)) * 40)), r"\.gz:1: expected a text table, found binary data"),
    "binary_early": (lambda p: p.write_bytes(gzip.compress("".join(_good(3)).encode() + b"chr22\t\xff\xfe\x80\t1\t1\t1\t1\n")), r"\.gz:4: expected a text table, found binary or non-ASCII data"),
    "binary_later": (lambda p: p.write_bytes(gzip.compress("".join(_good(4000)).encode() + b"chr22\t\xff\xfe\x80\t1\t1\t1\t1\n")), r"\.gz:4001: expected a text table, found binary or non-ASCII data"),
    "binary_chrom_later": (lambda p: p.write_bytes(gzip.compress("".join(_good(4000)).encode() + b"\x80\x81\t24080628\t24080628\t50\t1\t1\n")), r"\.gz:4001: expected a text table, found binary or non-ASCII data"),
    "too_many_columns": (lambda p: write_gz(p, _good(3) + ["chr22\t24080628\t24080628\t50\t1\t1\t7\n"]), r"\.gz:4: expected 6 columns like the first data line, found 7"),
    "unrecognised": (lambda p: write_gz(p, ["chr22\t24080628\tx\n"]), r"\.gz:1: cannot tell the methylation format from the content \(3 columns"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, message = BAD_INPUTS[case]
    path = tmp_path / f"{case}.cov.gz"
    make(path)
    err = _cli(tmp_path, capsys, path)
    assert f"{case}.cov.gz" in err
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "--bogus"], r"^methray: error: methray prepare: No such option: --bogus"),
        (["prepare"], r"^methray: error: methray prepare: Missing option '--config'"),
        (["cpgs", "--reference", "x.fa", "--out", "o", "--max-n-fraction", "abc"], r"^methray: error: methray cpgs: Invalid value for '--max-n-fraction'"),
        (["no-such-command"], r"^methray: error: methray: No such command 'no-such-command'"),
    ],
)
def test_cli_usage_errors_one_line_exit_2(argv, message, tmp_path, capsys):
    err = _cli(tmp_path, capsys, IMR90, argv)
    assert re.search(message, err), err


def test_config_yaml_removed_when_the_input_is_bad(tmp_path, capsys):
    """The run directory existed already: the failed prepare leaves it as it was."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    out = tmp_path / "run"
    cfg = slice_config(out, tmp_path / "missing.cov.gz")
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit):
        main(["prepare", "--config", str(tmp_path / "c.json")])
    assert "missing.cov.gz: file not found" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
