"""CpG enumeration: hand-checked toy genome, real hg19 chr22, layout, atomicity, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methray import cpgs as cpgs_mod
from methray.cpgs import enumerate_cpgs, find_cpgs, load_summary, read_cpgs, window_n_counts
from methray.encoding import WindowSpec, gather_windows, pad_codes, sequence_to_codes, window_content
from methray.errors import MethrayError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hg19_chr22"

# Toy genome, 10 bases per FASTA line. 0-based coordinates under each contig:
# chrA  CGtaNNNNcg | atcgNNNNNc | gTtaCG        (26 bp)
#       0123456789   0123456789   012345
# CpGs: 0 (contig start), 8 (lower case), 12, 19 (c ends line 2, g starts line 3), 24 (contig end)
# chrB  NNRNCGNNNN | acgt                       (14 bp; R is an IUPAC code: counts as N)
# CpGs: 4, 11
# chrC  AATTGGCC                                (no CpG: GC is not CG)
CHR_A = "CGtaNNNNcg" "atcgNNNNNc" "gTtaCG"
CHR_B = "NNRNCGNNNN" "acgt"
CHR_C = "AATTGGCC"


def write_fasta(path: Path, contigs: dict[str, str], width: int = 10) -> Path:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")
    return path


@pytest.fixture
def toy(tmp_path):
    fasta = write_fasta(tmp_path / "toy.fa", {"chrA": CHR_A, "chrB": CHR_B, "chrC": CHR_C})
    islands = tmp_path / "islands.bed"
    # chrA [0, 9) holds CpGs 0 and 8; [24, 25) holds 24; chrB [11, 12) holds 11; chrZ is unknown: ignored.
    islands.write_text("chrA\t0\t9\tCpG: 2\nchrA\t24\t25\tCpG: 1\nchrB\t11\t12\tCpG: 1\nchrZ\t0\t100\tx\n")
    return fasta, islands


def test_toy_genome_hand_checked(toy, tmp_path):
    fasta, islands = toy
    out = tmp_path / "cpgs"
    # Window of 7 centred on the C: [pos - 3, pos + 4); bases outside the contig are N.
    summary = enumerate_cpgs(str(fasta), str(out), cpg_islands=str(islands), window=7, max_n_fraction=0.4)
    df = read_cpgs(str(out))

    assert df["chrom"].tolist() == ["chrA"] * 5 + ["chrB"] * 2
    assert df["pos"].tolist() == [0, 8, 12, 19, 24, 4, 11]
    assert df["in_cpg_island"].tolist() == [True, True, False, False, True, False, True]
    # chrA 0: [-3,4) = NNN CGta -> 3/7;   8: [5,12) = NNN cgat -> 3/7;  12: [9,16) = gatcg NN -> 2/7
    #     19: [16,23) = NNN cgTt -> 3/7; 24: [21,28) = Tta CG NN (past the end) -> 2/7
    # chrB 4: [1,8) = N R N CG NN -> 5/7; 11: [8,15) = NN acgt N (past the end) -> 3/7
    expected = np.array([3, 3, 2, 3, 2, 5, 3], dtype=np.float32) / np.float32(7)
    np.testing.assert_allclose(df["n_fraction"].to_numpy(), expected, rtol=1e-6)
    assert df["excluded"].tolist() == [True, True, False, True, False, True, True]  # 3/7 > 0.4 >= 2/7

    assert pd.api.types.is_string_dtype(df["chrom"])
    assert df.dtypes.drop("chrom").to_dict() == {
        "pos": np.dtype("int64"),
        "in_cpg_island": np.dtype(bool),
        "n_fraction": np.dtype("float32"),
        "excluded": np.dtype(bool),
    }
    assert summary.chroms == ["chrA", "chrB", "chrC"]
    assert (summary.per_chrom["chrA"].cpgs, summary.per_chrom["chrA"].in_islands, summary.per_chrom["chrA"].excluded) == (5, 3, 3)
    assert (summary.per_chrom["chrB"].cpgs, summary.per_chrom["chrB"].in_islands, summary.per_chrom["chrB"].excluded) == (2, 1, 2)
    assert summary.per_chrom["chrC"].cpgs == 0 and summary.per_chrom["chrC"].files == 0
    assert (summary.total, summary.in_islands, summary.excluded) == (7, 4, 5)
    assert load_summary(str(out)).to_dict() == summary.to_dict()

    only_b = read_cpgs(str(out), chrom="chrB")
    assert only_b["pos"].tolist() == [4, 11] and set(only_b["chrom"]) == {"chrB"}
    assert read_cpgs(str(out), chrom="chrC").empty


def test_default_window_is_1001_centred(toy, tmp_path):
    fasta, _ = toy
    out = tmp_path / "cpgs"
    summary = enumerate_cpgs(str(fasta), str(out), chroms=["chrB", "chrA"])  # given order does not matter
    assert summary.chroms == ["chrA", "chrB"]
    assert (summary.window_length, summary.window_exclude_cpg, summary.max_n_fraction) == (1001, False, 0.5)
    df = read_cpgs(str(out))
    # Every window covers its whole (short) contig: chrA has 17 A/C/G/T bases, chrB 6.
    expected = np.where(df["chrom"] == "chrA", (1001 - 17) / 1001, (1001 - 6) / 1001).astype(np.float32)
    np.testing.assert_array_equal(df["n_fraction"].to_numpy(), expected)
    assert df["excluded"].all() and summary.excluded == 7
    assert not df["in_cpg_island"].any()  # no island BED given


@pytest.mark.parametrize("spec", [WindowSpec(7), WindowSpec(400, exclude_cpg=True), WindowSpec(1001), WindowSpec(6, True)])
def test_n_counts_match_gathered_windows(spec):
    rng = np.random.default_rng(0)
    # Random sequence with N runs of random length, including at both ends.
    codes = rng.integers(0, 4, 5000).astype(np.uint8)
    for start in rng.integers(0, 5000, 10):
        codes[start : start + rng.integers(1, 300)] = 4
    codes[:5] = 4
    codes[-3:] = 4
    padded = pad_codes(codes)
    pos = find_cpgs(codes)
    assert pos.size > 50
    got = window_n_counts(padded, pos, spec)
    brute = window_content(gather_windows(padded, pos, spec))["n_fraction"] * spec.length
    np.testing.assert_array_equal(got, np.round(brute).astype(np.int64))


def test_find_cpgs_case_and_edges():
    codes = sequence_to_codes("cGxCGNCgcg")
    assert find_cpgs(codes).tolist() == [0, 3, 6, 8]
    assert find_cpgs(sequence_to_codes("C")).tolist() == []
    assert find_cpgs(sequence_to_codes("")).tolist() == []


def test_partition_layout_several_files_per_chrom(toy, tmp_path):
    fasta, _ = toy
    out = tmp_path / "cpgs"
    summary = enumerate_cpgs(str(fasta), str(out), max_rows_per_file=2, window=7)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "_summary.json",
        "chrom=chrA/part-00000.parquet",
        "chrom=chrA/part-00001.parquet",
        "chrom=chrA/part-00002.parquet",
        "chrom=chrB/part-00000.parquet",
    ]
    assert summary.per_chrom["chrA"].files == 3
    assert json.loads((out / "_summary.json").read_text())["total"] == 7
    # Readable as a hive dataset (chrom from the directory, typed as a string).
    import pyarrow as pa
    import pyarrow.dataset as ds

    part = ds.partitioning(pa.schema([("chrom", pa.string())]), flavor="hive")
    table = ds.dataset(str(out), format="parquet", partitioning=part).to_table()
    assert table.num_rows == 7
    assert table.schema.field("pos").type == pa.int64()
    assert sorted(zip(table["chrom"].to_pylist(), table["pos"].to_pylist())) == sorted(
        zip(read_cpgs(str(out))["chrom"], read_cpgs(str(out))["pos"])
    )
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left behind


def test_failing_write_leaves_nothing(toy, tmp_path, monkeypatch):
    fasta, _ = toy
    out = tmp_path / "cpgs"
    real = cpgs_mod._write_part
    calls = []

    def flaky(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(table, path)

    monkeypatch.setattr(cpgs_mod, "_write_part", flaky)
    with pytest.raises(OSError, match="disk full"):
        enumerate_cpgs(str(fasta), str(out), max_rows_per_file=2)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp dir removed


def test_existing_output_needs_overwrite(toy, tmp_path):
    fasta, _ = toy
    out = tmp_path / "cpgs"
    enumerate_cpgs(str(fasta), str(out), chroms=["chrA"])
    with pytest.raises(MethrayError, match="already exists"):
        enumerate_cpgs(str(fasta), str(out))
    summary = enumerate_cpgs(str(fasta), str(out), chroms=["chrB"], overwrite=True)
    assert summary.chroms == ["chrB"]
    assert sorted(p.name for p in out.iterdir()) == ["_summary.json", "chrom=chrB"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_input_errors(toy, tmp_path):
    fasta, _ = toy
    with pytest.raises(MethrayError, match="not found"):
        enumerate_cpgs(str(tmp_path / "missing.fa"), str(tmp_path / "o1"))
    with pytest.raises(MethrayError, match="chr9"):
        enumerate_cpgs(str(fasta), str(tmp_path / "o2"), chroms=["chr9"])
    with pytest.raises(MethrayError, match="max_n_fraction"):
        enumerate_cpgs(str(fasta), str(tmp_path / "o3"), max_n_fraction=1.5)
    with pytest.raises(MethrayError, match="window"):
        enumerate_cpgs(str(fasta), str(tmp_path / "o4"), window=0)
    with pytest.raises(MethrayError, match="island"):
        enumerate_cpgs(str(fasta), str(tmp_path / "o5"), cpg_islands=str(tmp_path / "none.bed"))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    with pytest.raises(MethrayError, match="not a complete CpG table"):
        read_cpgs(str(tmp_path))
    out = tmp_path / "ok"
    enumerate_cpgs(str(fasta), str(out))
    with pytest.raises(MethrayError, match="chrQ"):
        read_cpgs(str(out), chrom="chrQ")


@pytest.mark.skipif(not (DATA / "chr22.fa").exists(), reason="shared hg19 chr22 data not available")
def test_real_chr22(tmp_path):
    import pyfaidx

    out = tmp_path / "cpgs"
    summary = enumerate_cpgs(str(DATA / "chr22.fa"), str(out), cpg_islands=str(DATA / "cpg_islands.bed"))
    seq = pyfaidx.Fasta(str(DATA / "chr22.fa"), rebuild=False)["chr22"][:].seq.upper()

    # Independent count: "CG" cannot overlap itself, so str.count finds every CpG.
    assert summary.total == seq.count("CG") == 336_904
    assert summary.per_chrom["chr22"].files >= 2  # > DEFAULT_MAX_ROWS_PER_FILE rows
    df = read_cpgs(str(out))
    pos = df["pos"].to_numpy()
    assert np.all(np.diff(pos) > 0)
    raw = np.frombuffer(seq.encode(), dtype=np.uint8)
    assert np.all(raw[pos] == ord("C")) and np.all(raw[pos + 1] == ord("G"))

    # Islands: CpGs whose C lies in [start, end), counted on the text (UCSC islands do not overlap).
    islands = pd.read_csv(DATA / "cpg_islands.bed", sep="\t", header=None, usecols=[0, 1, 2], names=["c", "s", "e"])
    expected_in = sum(seq[s : e + 1].count("CG") for s, e in zip(islands["s"], islands["e"]))
    assert summary.in_islands == int(df["in_cpg_island"].sum()) == expected_in

    # N fraction against gathered windows on a sample of sites.
    from methray.genome import Reference

    ref = Reference(str(DATA / "chr22.fa"))
    sample = np.random.default_rng(1).choice(len(df), 3000, replace=False)
    brute = window_content(ref.windows("chr22", pos[sample], WindowSpec(1001)))["n_fraction"]
    np.testing.assert_allclose(df["n_fraction"].to_numpy()[sample], brute, atol=1e-6)
    assert summary.excluded == int((df["n_fraction"] > 0.5).sum()) == int(df["excluded"].sum())
    assert 0 < summary.excluded < summary.total
