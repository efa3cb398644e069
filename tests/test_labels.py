import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methray.errors import MethrayError
from methray.genome import Reference
from methray.io.bed import covered_bp, merge_intervals, read_bed
from methray.regulatory.labels import (
    LabelSpec,
    build_labels,
    point_windows,
    read_labels,
    window_starts,
)
from methray.regulatory.split import split_windows

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hg19_chr22"


def _fasta(tmp_path, contigs: dict[str, str]) -> Reference:
    path = tmp_path / "ref.fa"
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i:i + 60] + "\n")
    return Reference(str(path))


def _acgt(n: int, seed: int = 0) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGTacgt"), size=n))


def _write(path, rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _np_row(chrom, start, end, summit_offset):
    return (chrom, start, end, "p", 100, ".", 5.0, 3.0, 2.0, summit_offset)


@pytest.fixture
def tiny(tmp_path):
    # chrA: 3000 bp -> windows (1000/300) start 0, 300, ..., 1800 (7 windows; last 200 bp off-grid)
    # chrB: 2000 bp with N at [1000, 1100) and [1850, 1900) -> windows 0, 300, 600, 900 with
    #       0, 100, 100, 150 N: only [900, 1900) exceeds 10 % N.
    b = _acgt(2000, 1)
    b = b[:1000] + "N" * 100 + b[1100:1850] + "n" * 50 + b[1900:]
    return tmp_path, _fasta(tmp_path, {"chrA": _acgt(3000), "chrB": b})


def test_window_arithmetic():
    assert window_starts(3000, 1000, 300).tolist() == [0, 300, 600, 900, 1200, 1500, 1800]
    assert window_starts(999, 1000, 300).size == 0
    assert window_starts(1000, 1000, 300).tolist() == [0]
    n = len(window_starts(51_304_566, 1000, 300))
    assert n == (51_304_566 - 1000) // 300 + 1
    # regions [300 i, 300 i + 1000): 1200 is in 1..4 (start of 4), 1000 in 1..3 (end of 0)
    w, p = point_windows(np.array([1200, 1000, 0, 2999]), 7, 300, 1000)
    hits = {k: sorted(w[p == k].tolist()) for k in range(4)}
    assert hits == {0: [1, 2, 3, 4], 1: [1, 2, 3], 2: [0], 3: []}
    # brute force on a random grid, including points off the grid at both ends
    rng = np.random.default_rng(3)
    for length, stride in [(1000, 300), (200, 200), (7, 3), (5, 10)]:
        n = 40
        pts = rng.integers(-20, n * stride + length + 20, size=200)
        w, p = point_windows(pts, n, stride, length)
        got = np.zeros((n, len(pts)), bool)
        got[w, p] = True
        s = np.arange(n)[:, None] * stride
        np.testing.assert_array_equal(got, (s <= pts[None]) & (pts[None] < s + length))


def test_summit_labels_half_open(tiny):
    tmp, ref = tiny
    peaks = {
        "AT_START": _write(tmp / "a.narrowPeak", [_np_row("chrA", 1100, 1400, 100)]),  # summit 1200
        "AT_END": _write(tmp / "b.narrowPeak", [_np_row("chrA", 900, 1100, 100)]),  # summit 1000
        "CENTRE": _write(tmp / "c.bed", [("chrA", 100, 201)]),  # BED: centre 150
        "NO_SUMMIT": _write(tmp / "d.narrowPeak", [_np_row("chrA", 2000, 2101, -1)]),  # centre 2050
        "TAIL": _write(tmp / "e.narrowPeak", [_np_row("chrA", 2850, 2950, 50)]),  # 2900: off-grid
    }
    s = build_labels(ref, str(tmp / "out"), LabelSpec(peaks=peaks, chroms=["chrA"]))
    w, y, classes = read_labels(str(tmp / "out"))
    assert classes == list(peaks)
    assert w["start"].tolist() == [0, 300, 600, 900, 1200, 1500, 1800]
    assert (w["end"] - w["start"] == 1000).all() and (w["chrom"] == "chrA").all()
    expected = {
        "AT_START": [0, 1, 1, 1, 1, 0, 0],  # summit == start of window 4 -> inside it
        "AT_END": [0, 1, 1, 1, 0, 0, 0],  # summit == end of window 0 -> outside it
        "CENTRE": [1, 0, 0, 0, 0, 0, 0],
        "NO_SUMMIT": [0, 0, 0, 0, 1, 1, 1],  # 2050: windows starting at 1200, 1500, 1800
        "TAIL": [0, 0, 0, 0, 0, 0, 0],
    }
    for k, c in enumerate(classes):
        assert y[:, k].tolist() == expected[c], c
    assert s.positives == {c: sum(v) for c, v in expected.items()}
    assert s.unplaced["TAIL"] == 1 and s.unplaced["AT_START"] == 0
    assert s.windows_total == 7 and s.windows_written == 7 and s.windows_dropped_n == 0
    assert s.negatives_total == 0
    meta = json.loads((tmp / "out" / "classes.json").read_text())
    assert meta["classes"] == classes and meta["summary"]["windows_written"] == 7
    assert not list((tmp / "out").glob("*.tmp-*"))


def test_n_windows_dropped_and_counted(tiny):
    tmp, ref = tiny
    peaks = {"P": _write(tmp / "p.bed", [("chrB", 1200, 1201)])}
    s = build_labels(ref, str(tmp / "out"), LabelSpec(peaks=peaks))
    w, y, _ = read_labels(str(tmp / "out"))
    # chrA 7 + chrB 4 windows; chrB [900, 1900) has 150 N > 100 -> dropped;
    # [300, 1300) and [600, 1600) have exactly 100 N (fraction 0.1, not > 0.1) -> kept
    assert s.windows_total == 11 and s.windows_dropped_n == 1 and s.windows_written == 10
    assert w.loc[w["chrom"] == "chrB", "start"].tolist() == [0, 300, 600]
    assert y[w["chrom"] == "chrB", 0].tolist() == [0, 1, 1]
    assert s.positives == {"P": 2}
    assert s.unplaced == {"P": 0}
    s2 = build_labels(ref, str(tmp / "out2"), LabelSpec(peaks=peaks, max_n_fraction=0.05))
    assert s2.windows_dropped_n == 3
    assert s2.unplaced == {"P": 1}  # its only windows were dropped for N


def test_site_factor_min_sites(tiny):
    tmp, ref = tiny
    sites = _write(tmp / "sites.bed", [
        ("chrA", 150, 151, "F1", 0, "+"), ("chrA", 2500, 2501, "F1", 0, "+"), ("chrB", 50, 51, "F1", 0, "-"),
        ("chrA", 700, 701, "F2", 0, "+"),
        ("chrA", 1000, 1002, "F3", 0, "+"), ("chrA", 1600, 1601, "F3", 0, "+"),
    ])
    s = build_labels(ref, str(tmp / "out"), LabelSpec(sites=sites, min_sites=2, chroms=["chrA"]))
    assert s.classes == ["F1", "F3"]
    assert s.classes_dropped == {"F2": 1}  # only sites on the chosen contigs count (F1: 2 on chrA)
    _, y, classes = read_labels(str(tmp / "out"))
    # F1: 150 -> window 0; 2500 -> [1800, 2800) only (it is the end of [1500, 2500))
    assert y[:, 0].tolist() == [1, 0, 0, 0, 0, 0, 1]
    # F3: centre of [1000, 1002) is 1001 -> windows 1..3; 1600 -> windows 3..5
    assert y[:, 1].tolist() == [0, 1, 1, 1, 1, 1, 0]
    # a site factor named like a peak class: error, unless the factors get a prefix
    peaks = {"F1": _write(tmp / "f1.bed", [("chrA", 10, 20)])}
    with pytest.raises(MethrayError, match="F1.*site_prefix"):
        build_labels(ref, str(tmp / "out2"), LabelSpec(peaks=peaks, sites=sites, min_sites=2))
    s = build_labels(ref, str(tmp / "out2"), LabelSpec(peaks=peaks, sites=sites, min_sites=2, site_prefix="tf:"))
    assert s.classes == ["F1", "tf:F1", "tf:F3"] and s.classes_dropped == {"tf:F2": 1}
    with pytest.raises(MethrayError, match="no classes"):
        build_labels(ref, str(tmp / "out3"), LabelSpec(sites=sites, min_sites=10))


def test_deepsea_half_overlap(tiny):
    tmp, ref = tiny
    # length 1000, bin 200 -> flank 400, stride 200: bin i = [400 + 200 i, 600 + 200 i), 11 windows
    peaks = {
        "HALF": _write(tmp / "h.bed", [("chrA", 500, 700)]),  # 100 bp in bins 0 and 1 -> both positive
        "LESS": _write(tmp / "l.bed", [("chrA", 1050, 1149)]),  # 99 bp of bin 3 -> negative
        "UNION": _write(tmp / "u.bed", [("chrA", 1400, 1460), ("chrA", 1420, 1480)]),  # union 80 bp of bin 5
        "TWO": _write(tmp / "t.bed", [("chrA", 1800, 1850), ("chrA", 1900, 1950)]),  # 2 x 50 bp in bin 7
    }
    s = build_labels(ref, str(tmp / "out"), LabelSpec(peaks=peaks, chroms=["chrA"], mode="deepsea"))
    w, y, classes = read_labels(str(tmp / "out"))
    assert s.stride == 200 and len(w) == 11
    assert (w["bin_start"] - w["start"] == 400).all() and (w["end"] - w["bin_end"] == 400).all()
    pos = {c: np.flatnonzero(y[:, k]).tolist() for k, c in enumerate(classes)}
    assert pos == {"HALF": [0, 1], "LESS": [], "UNION": [], "TWO": [7]}
    s = build_labels(ref, str(tmp / "out2"), LabelSpec(peaks=peaks, chroms=["chrA"], mode="deepsea", min_overlap=0.25))
    assert s.positives == {"HALF": 2, "LESS": 1, "UNION": 1, "TWO": 1}
    # sites in DeepSEA mode: centre inside the 200 bp bin
    sites = _write(tmp / "s.bed", [("chrA", 600, 601, "F", 0, "+")])
    s = build_labels(ref, str(tmp / "out3"), LabelSpec(sites=sites, min_sites=1, chroms=["chrA"], mode="deepsea"))
    _, y, _ = read_labels(str(tmp / "out3"))
    assert np.flatnonzero(y[:, 0]).tolist() == [1]  # 600 is the start of bin 1, the end of bin 0


def test_interval_helpers():
    s, e = merge_intervals(np.array([5, 0, 2, 20, 30]), np.array([8, 3, 4, 25, 30]))
    assert s.tolist() == [0, 5, 20] and e.tolist() == [4, 8, 25]
    cov = covered_bp(s, e, np.array([0, 3, 6, 0, 24, 40]), np.array([10, 6, 7, 100, 26, 50]))
    assert cov.tolist() == [7, 2, 1, 12, 1, 0]


def test_negative_downsampling(tmp_path):
    ref = _fasta(tmp_path, {"chrS": _acgt(200_000, 5)})
    peaks = {"P": _write(tmp_path / "p.bed", [("chrS", x, x + 1) for x in range(5000, 200_000, 20_000)])}
    full = build_labels(ref, str(tmp_path / "full"), LabelSpec(peaks=peaks))
    a = build_labels(ref, str(tmp_path / "a"), LabelSpec(peaks=peaks, negative_fraction=0.25, seed=7))
    b = build_labels(ref, str(tmp_path / "b"), LabelSpec(peaks=peaks, negative_fraction=0.25, seed=7))
    c = build_labels(ref, str(tmp_path / "c"), LabelSpec(peaks=peaks, negative_fraction=0.25, seed=8))
    n_pos = full.windows_written - full.negatives_total
    assert a.negatives_total == full.negatives_total
    assert a.negatives_total - a.negatives_dropped == round(0.25 * full.negatives_total)
    assert a.windows_written == n_pos + round(0.25 * full.negatives_total)
    assert a.positives == full.positives  # positives never dropped
    wa, ya, _ = read_labels(str(tmp_path / "a"))
    wb, yb, _ = read_labels(str(tmp_path / "b"))
    wc, _, _ = read_labels(str(tmp_path / "c"))
    pd.testing.assert_frame_equal(wa, wb)
    np.testing.assert_array_equal(ya, yb)
    assert not wa["start"].equals(wc["start"])
    assert wa["start"].is_monotonic_increasing


def test_bad_input(tiny):
    tmp, ref = tiny
    out = str(tmp / "out")
    with pytest.raises(MethrayError, match="not found"):
        build_labels(ref, out, LabelSpec(peaks={"X": str(tmp / "missing.bed")}))
    with pytest.raises(MethrayError, match=r"x\.narrowPeak:1: .*summit offset 300"):
        build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "x.narrowPeak", [_np_row("chrA", 100, 400, 300)])}))
    with pytest.raises(MethrayError, match=r"y\.bed:2: .*past the end of chrA"):
        build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "y.bed", [("chrA", 1, 2), ("chrA", 2900, 3001)])}))
    with pytest.raises(MethrayError, match=r"z\.bed:1: chromosome 'chr9' is not in"):
        build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "z.bed", [("chr9", 1, 2)])}))
    s = build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "z2.bed", [("chr9", 1, 2), ("chrA", 1, 2)])}, skip_unknown_chroms=True))
    assert s.positives == {"X": 1}
    (tmp / "out" / "windows.parquet").unlink()
    with pytest.raises(MethrayError, match=r"expected at least 10"):
        build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "short.narrowPeak", [("chrA", 1, 2, "p")])}))
    with pytest.raises(MethrayError, match=r"at least 4"):
        build_labels(ref, out, LabelSpec(sites=_write(tmp / "s.bed", [("chrA", 1, 2)])))
    with pytest.raises(MethrayError, match="chroms: chromosome 'chrZ'"):
        build_labels(ref, out, LabelSpec(peaks={"X": _write(tmp / "ok.bed", [("chrA", 1, 2)])}, chroms=["chrZ"]))
    with pytest.raises(MethrayError, match="deepsea"):
        build_labels(ref, out, LabelSpec(peaks={"X": str(tmp / "ok.bed")}, mode="deepsea", bin_length=201))
    with pytest.raises(ValueError, match="negative_fraction"):  # pydantic: the spec itself is invalid
        build_labels(ref, out, LabelSpec(peaks={"X": str(tmp / "ok.bed")}, negative_fraction=0))
    assert not (tmp / "out" / "windows.parquet").exists()
    with pytest.raises(MethrayError, match="label table not found"):
        read_labels(out)


# ---------------------------------------------------------------------------- real chr22 data


@pytest.fixture(scope="module")
def chr22(tmp_path_factory):
    if not (DATA / "chr22.fa").exists():
        pytest.skip("shared chr22 data not available")
    out = tmp_path_factory.mktemp("chr22_labels")
    summary = build_labels(
        str(DATA / "chr22.fa"), str(out), LabelSpec(peaks={"CTCF": str(DATA / "ctcf_gm12878.narrowPeak")}, sites=str(DATA / "tf_sites.bed")))
    windows, y, classes = read_labels(str(out))
    return summary, windows, y, classes


def test_real_chr22_counts(chr22):
    s, w, y, classes = chr22
    print("\n" + s.format())
    print("positives:", s.positives, "unplaced:", s.unplaced)
    assert s.windows_total == (51_304_566 - 1000) // 300 + 1 == 171_012
    # 21.6 Mb of real sequence -> about 21.6e6 / 300 = 72k windows at most, fewer at gaps
    assert 50_000 < s.windows_written < 72_000
    assert s.windows_dropped_n == s.windows_total - s.windows_written
    assert classes[0] == "CTCF" and len(classes) == 4
    assert set(classes[1:]) == {"WHSC1", "ZNF436", "ZNF768"}  # the only factors with >= 50 sites
    assert len(s.classes_dropped) == 501
    assert 1_000 < s.positives["CTCF"] < 1_600
    for c in classes[1:]:
        assert 100 < s.positives[c] < 300
    assert y.shape == (len(w), 4) and y.dtype == np.uint8
    # independent check of CTCF: a window is positive iff some summit lies in [start, end)
    peaks = read_bed(str(DATA / "ctcf_gm12878.narrowPeak"), names=["n", "s", "st", "a", "b", "c", "peak"])
    summits = np.sort(peaks["start"].to_numpy() + peaks["peak"].astype(int).to_numpy())
    inside = np.searchsorted(summits, w["end"].to_numpy(), "left") - np.searchsorted(summits, w["start"].to_numpy(), "left")
    np.testing.assert_array_equal(y[:, 0], (inside > 0).astype(np.uint8))
    # no kept window has more than 10 % N
    codes = Reference(str(DATA / "chr22.fa")).contig_codes("chr22")
    sample = w.sample(500, random_state=0)
    for st in sample["start"]:
        assert (codes[st:st + 1000] == 4).mean() <= 0.1


def test_real_chr22_split_no_overlap(chr22):
    _, w, _, _ = chr22
    for gap in (0, 5_000):
        sp = split_windows(w, valid_fraction=0.1, test_fraction=0.1, inside_fraction=0.05, gap=gap, seed=1)
        counts = sp["split"].value_counts()
        assert abs(counts["test"] - 0.1 * len(w)) <= 1 and abs(counts["valid"] - 0.1 * len(w)) <= 1
        assert counts["gap"] < 100 + 4 * gap // 300
        test = np.sort(w.loc[sp["split"] == "test", "start"].to_numpy())
        for other in ("train", "valid"):
            o = w.loc[sp["split"] == other]
            # a test window [t, t + 1000) is within `gap` of [s, e) iff s - 1000 - gap < t < e + gap
            n_close = np.searchsorted(test, o["end"].to_numpy() + gap, "left") - np.searchsorted(
                test, o["start"].to_numpy() - 1000 - gap, "right")
            assert (n_close == 0).all(), other
        valid = np.sort(w.loc[sp["split"] == "valid", "start"].to_numpy())
        tr = w.loc[sp["split"] == "train"]
        n_close = np.searchsorted(valid, tr["end"].to_numpy() + gap, "left") - np.searchsorted(
            valid, tr["start"].to_numpy() - 1000 - gap, "right")
        assert (n_close == 0).all()
        # the inside-training block: contiguous train windows
        ins = sp["inside"].to_numpy()
        assert (sp.loc[ins, "split"] == "train").all()
        assert abs(ins.sum() - 0.05 * len(w)) <= 1
        idx = np.flatnonzero(ins)
        assert (np.diff(idx) == 1).all() and (np.diff(w["start"].to_numpy()[idx]) > 0).all()
    again = split_windows(w, gap=0, seed=1)
    pd.testing.assert_frame_equal(again, split_windows(w, gap=0, seed=1))
    with pytest.raises(MethrayError):
        split_windows(w, valid_fraction=0.5, test_fraction=0.5)
