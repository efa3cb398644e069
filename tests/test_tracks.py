"""Genome tracks: row order and bigWig zoom summaries, on the real IMR90 chr22 betas."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from methray import tracks

from conftest import IMR90

CHR22_BP = 51_304_566


@pytest.fixture(scope="module")
def imr90_betas() -> pd.DataFrame:
    """Measured IMR90 beta of every CpG in the Bismark file (0-based C), sorted: 130,054 sites."""
    raw = pd.read_csv(IMR90, sep="\t", header=None, usecols=[0, 1, 4, 5], names=["chrom", "start", "meth", "unmeth"])
    df = pd.DataFrame({"chrom": raw["chrom"], "pos": raw["start"] - 1, "beta_pred": raw["meth"] / (raw["meth"] + raw["unmeth"])})
    return df.sort_values("pos", ignore_index=True)


def reference_text(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """Python's own ``%`` formatting of each value (what the bedGraph printed before the fast path)."""
    return np.char.mod(f"%.{digits}f", np.asarray(values, np.float64))


def reference_bedgraph(chrom, pos, end, values, digits: int = 4) -> str:
    """bedGraph rows as pandas wrote them from ``np.char.mod`` text (the format's reference)."""
    rows = pd.DataFrame({"c": chrom, "s": pos, "e": end, "v": reference_text(values, digits)})
    return rows.to_csv(sep="\t", header=False, index=False, lineterminator="\n")


def edge_values(rng: np.random.Generator) -> np.ndarray:
    """Values that test every rounding branch: exact ties, near-ties, signs, >= 10, non-finite."""
    return np.concatenate([
        rng.normal(0, 1, 20_000), rng.normal(0, 1e6, 2_000), rng.random(20_000).astype(np.float32).astype(np.float64),
        (rng.integers(0, 200_000, 5_000) + 0.5) / 1e4,  # near the 4th decimal's halves
        np.arange(-20_000, 20_000) / 1e4 + 5e-5,  # halves of the 4th decimal, both signs
        [0.0, -0.0, -1e-7, 1e-7, 0.03125, -0.03125, 0.00015, 9.99995, 9.99994999, 10.0, 99999.5, -9.99996,
         np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324, float(np.float32(0.12345))],
    ])


def test_decimal_text_and_values_are_printf_rounding_byte_for_byte(imr90_betas):
    # The fast formatter must print exactly what Python's % (C printf rounding of the exact
    # binary value) prints, and read back as the same float64, on the real betas (float64 and
    # the shard files' float32) and on values aimed at every rounding branch.
    rng = np.random.default_rng(3)
    real = imr90_betas["beta_pred"].to_numpy(np.float64)
    cases = [real, real.astype(np.float32).astype(np.float64), edge_values(rng)]
    for values in cases:
        for digits in (0, 1, 2, 4, 6):
            want = reference_text(values, digits)
            assert tracks.decimal_text(values, digits).to_pylist() == want.tolist(), digits
            got, parsed = tracks.decimal_values(values, digits), want.astype(np.float64)
            same = (got == parsed) & (np.signbit(got) == np.signbit(parsed))
            assert (same | (np.isnan(got) & np.isnan(parsed))).all(), (digits, values[~same][:5])
    # Most real values take the fast path (a regression to per-value formatting would not show
    # in the text); ~1% of these measured betas are exact halves of the 4th decimal (e.g.
    # 1/32 = 0.03125) and go through np.char.mod.
    _, _, exact = tracks._rounded(real, 4)
    assert 0.95 < exact.mean() < 1


def test_bedgraph_text_is_unchanged(imr90_betas):
    # bedgraph_lines (pyarrow's CSV writer) against the pandas + np.char.mod text it replaced,
    # on the real sites, on intervals (end_col) and on names that need quoting (pandas path).
    df = imr90_betas
    pos = df["pos"].to_numpy(np.int64)
    assert tracks.bedgraph_lines(df, "beta_pred") == reference_bedgraph(df["chrom"], pos, pos + 1, df["beta_pred"])
    win = df.iloc[::50].assign(start=lambda d: d["pos"] - 100, end=lambda d: d["pos"] + 100, prob=lambda d: d["beta_pred"] * 2 - 1)
    got = tracks.bedgraph_lines(win, "prob", pos_col="start", end_col="end", digits=2)
    assert got == reference_bedgraph(win["chrom"], win["start"], win["end"], win["prob"], 2)
    odd = pd.DataFrame({"chrom": ['chr"1', "chr\t2", "chr3"], "pos": [5, 6, 7], "beta_pred": [0.5, -0.00001, 12.345]})
    assert tracks.bedgraph_lines(odd, "beta_pred") == reference_bedgraph(odd["chrom"], odd["pos"], odd["pos"] + 1, odd["beta_pred"])
    assert tracks.bedgraph_lines(odd.iloc[2:], "beta_pred") == "chr3\t7\t8\t12.3450\n"


def test_bigwig_holds_the_bedgraph_numbers(imr90_betas, tmp_path):
    # Every interval of the bigWig is the float32 of the bedGraph's printed value (real betas
    # plus edge values: -0.0 keeps its sign, values >= 10 take np.char.mod's path).
    import pyBigWig

    rng = np.random.default_rng(5)
    extra = np.array([-1e-7, -0.0, 0.0, 12.34567, -3.21e-5, 0.03125, 99999.5])
    values = np.concatenate([imr90_betas["beta_pred"].to_numpy(), extra, rng.normal(0, 1, 1000)])
    pos = np.arange(len(values), dtype=np.int64) * 7 + 100
    path = str(tmp_path / "v.bw")
    write_bigwig(path, {"chr1": int(pos[-1]) + 10}, [site_block(pd.DataFrame({"pos": pos, "beta_pred": values}), "chr1")])
    want = reference_text(values).astype(np.float64).astype(np.float32)
    with pyBigWig.open(path) as bw:
        got = bw.intervals("chr1")
    assert [(s, e) for s, e, _ in got] == list(zip(pos.tolist(), (pos + 1).tolist()))
    got_v = np.array([v for _, _, v in got], np.float32)
    assert np.array_equal(got_v.view(np.uint32), want.view(np.uint32))  # bit for bit, signs of zeros too


def write_bigwig(path: str, chrom_sizes: dict[str, int], blocks) -> None:
    """Write ``(chrom, starts, ends, values)`` blocks through ``tracks.bigwig_writer``."""
    with tracks.bigwig_writer(path, chrom_sizes) as add:
        for block in blocks:
            add(*block)


def site_block(df: pd.DataFrame, chrom: str):
    """A table's sites as one block, values as the bedGraph prints them (4 decimals)."""
    pos = df["pos"].to_numpy(np.int64)
    return chrom, pos, pos + 1, tracks.decimal_values(df["beta_pred"].to_numpy(np.float64), 4)


def zoom_errors(bw_path: str, pos: np.ndarray, values: np.ndarray, chrom: str = "chr22") -> dict[int, tuple[int, int, int]]:
    """Per zoom level: (records, records whose count/min/max disagree with the data, records whose sum disagrees)."""
    import pybigtools

    reader = pybigtools.open(bw_path)
    out = {}
    for level in reader.zooms():
        recs = list(reader.zoom_records(level, chrom))
        start = np.array([r[0] for r in recs])
        end = np.array([r[1] for r in recs])
        count, lo, hi, total = (np.array([r[2][k] for r in recs]) for k in ("bases_covered", "min_val", "max_val", "sum"))
        a, b = np.searchsorted(pos, start), np.searchsorted(pos, end)
        has = b > a
        csum = np.concatenate([[0.0], np.cumsum(values)])
        exact_lo = np.array([values[i:j].min() if j > i else np.nan for i, j in zip(a, b)])
        exact_hi = np.array([values[i:j].max() if j > i else np.nan for i, j in zip(a, b)])
        bad_count = (b - a != count) | (has & ((np.abs(exact_lo - lo) > 1e-6) | (np.abs(exact_hi - hi) > 1e-6)))
        bad_sum = ~bad_count & (np.abs(csum[b] - csum[a] - total) > 1e-4 * np.maximum(1, b - a))
        out[level] = (len(recs), int(bad_count.sum()), int(bad_sum.sum()))
    return out


def test_ordered_chroms_is_byte_order_or_reference():
    ref = ["chr9", "chr10", "chrX", "chr1_random", "chr1", "HLA-A"]
    assert tracks.ordered_chroms(ref) == ["HLA-A", "chr1", "chr10", "chr1_random", "chr9", "chrX"]
    assert tracks.ordered_chroms(ref, "reference") == ref
    with pytest.raises(ValueError):
        tracks.ordered_chroms(ref, "natural")


def test_bedgraph_passes_sort_check_by_default(imr90_betas, tmp_path):
    # Two contigs from the real data: chr22's first and second half, named so that the
    # reference order (chr9, chr10) is not the byte order.
    half = imr90_betas["pos"].median()
    two = imr90_betas.assign(chrom=np.where(imr90_betas["pos"] < half, "chr9", "chr10"))
    path = tmp_path / "two.bedGraph"
    n = tracks.write_bedgraph(two, str(path), name="t", description="d", chrom_order=["chr9", "chr10"])
    assert n == len(two)
    rows = "".join(path.read_text().splitlines(keepends=True)[1:])  # without the track line
    check = subprocess.run(["sort", "-c", "-k1,1", "-k2,2n"], input=rows, text=True, capture_output=True, env={"LC_ALL": "C"})
    assert check.returncode == 0, check.stderr
    assert rows.startswith("chr10\t")
    ref = tmp_path / "ref.bedGraph"
    tracks.write_bedgraph(two, str(ref), name="t", description="d", chrom_order=["chr9", "chr10"], order="reference")
    rows = "".join(ref.read_text().splitlines(keepends=True)[1:])
    assert rows.startswith("chr9\t")
    check = subprocess.run(["sort", "-c", "-k1,1", "-k2,2n"], input=rows, text=True, capture_output=True, env={"LC_ALL": "C"})
    assert check.returncode == 1  # reference order is not what sort -c accepts: the option matters


def test_bigwig_zoom_levels_match_the_data(imr90_betas, tmp_path):
    # Every zoom record of every level, read back with pybigtools (an independent reader),
    # holds the exact count, min, max and sum of the real IMR90 values in its bin; pyBigWig's
    # zoom-based stats agree with the exact ones (libBigWig's writer kept a zero sum in the
    # last record of each zoom block: its whole-contig mean was 0.001 off).
    import pyBigWig

    path = str(tmp_path / "imr90.bw")
    write_bigwig(path, {"chr22": CHR22_BP}, [site_block(imr90_betas, "chr22")])
    pos = imr90_betas["pos"].to_numpy(np.int64)
    values = np.char.mod("%.4f", imr90_betas["beta_pred"].to_numpy()).astype(np.float64)
    errors = zoom_errors(path, pos, values)
    # 16 bp (16x the 1 bp CpG) to 16 kb: the 64 kb level would need as few zoom blocks (one)
    assert sorted(errors) == [16 * 4**i for i in range(6)], errors
    assert all(bad_count == 0 and bad_sum == 0 for _, bad_count, bad_sum in errors.values()), errors
    with pyBigWig.open(path) as bw:
        assert bw.header()["nLevels"] == 6 and bw.header()["nBasesCovered"] == len(pos)
        # The whole contig needs no prorating of partial bins; 5-8 Mb ranges only at their two
        # ends (the IMR90 file covers 24-38.5 Mb).
        for start, end, tol_mean, tol_cov in ((0, CHR22_BP, 1e-6, 1e-6), (25_000_000, 30_000_000, 0.02, 0.05), (30_000_000, 38_000_000, 0.02, 0.05)):
            a, b = np.searchsorted(pos, [start, end])
            mean, top, cov = (bw.stats("chr22", start, end, type=t)[0] for t in ("mean", "max", "coverage"))
            exact_cov = (b - a) / (end - start)
            assert mean == pytest.approx(values[a:b].mean(), abs=tol_mean)
            assert top == pytest.approx(values[a:b].max(), abs=1e-6)
            assert cov == pytest.approx(exact_cov, rel=tol_cov)
            assert bw.stats("chr22", start, end, exact=True)[0] == pytest.approx(values[a:b].mean(), abs=1e-6)


def test_bigwig_refuses_blocks_out_of_sorted_order(tmp_path):
    blocks = [("chr9", np.array([5]), np.array([6]), np.array([0.5])), ("chr10", np.array([5]), np.array([6]), np.array([0.5]))]
    with pytest.raises(ValueError, match="sorted chromosome order"):
        write_bigwig(str(tmp_path / "x.bw"), {"chr9": 100, "chr10": 100}, blocks)
    # Within a block: overlapping, unsorted or empty intervals, one past the contig's end, and
    # a block starting before the last one's end.
    bad = [
        [("chr9", np.array([5, 5]), np.array([6, 6]), np.array([0.5, 0.5]))],
        [("chr9", np.array([7, 5]), np.array([8, 6]), np.array([0.5, 0.5]))],
        [("chr9", np.array([5]), np.array([5]), np.array([0.5]))],
        [("chr9", np.array([99]), np.array([101]), np.array([0.5]))],
        [("chr9", np.array([5, 9]), np.array([6, 10]), np.array([0.5, 0.5])), ("chr9", np.array([8]), np.array([9]), np.array([0.5]))],
    ]
    for blocks in bad:
        with pytest.raises(ValueError, match="overlapping|sorted chromosome order"):
            write_bigwig(str(tmp_path / "x.bw"), {"chr9": 100}, blocks)
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no spilled zoom records left


def test_assembly_streams_shard_by_shard_and_equals_the_whole_table_writers(imr90_betas, tmp_path, monkeypatch):
    # score-genome's assembly over 1 Mb shards of the real IMR90 sites: the same bedGraph bytes
    # and bigWig values as writing the whole table at once, holding one shard at a time.
    import pyBigWig

    from methray.genome_scoring import outputs
    from methray.genome_scoring.plan import ShardCounts
    from methray.shards import plan_shards

    sizes = {"chr22": CHR22_BP}
    shards = plan_shards(sizes, 1_000_000)
    pos = imr90_betas["pos"].to_numpy()
    counts = []
    for s in shards:
        a, b = np.searchsorted(pos, [s.start, s.end])
        part = imr90_betas.iloc[a:b]
        if b > a:
            df = pd.DataFrame({"pos": part["pos"], "in_cpg_island": False, "pred.imr90": part["beta_pred"].astype(np.float32)})
            outputs.write_shard(str(tmp_path), s, df, {"imr90": "mrcnn"})
        counts.append(ShardCounts(cpgs=int(b - a)))
    held = []
    read_shard = outputs.read_shard

    def spy(*args):
        df = read_shard(*args)
        held.append(len(df))
        return df

    monkeypatch.setattr(outputs, "read_shard", spy)
    out = outputs.assemble_tracks(str(tmp_path), "imr90", "mrcnn", "d", shards, counts, sizes)
    # Both tracks in one pass (sorted order): each shard read once, never more than one
    # shard's rows at a time.
    assert sum(held) == len(imr90_betas) and max(held) == max(c.cpgs for c in counts) < len(imr90_betas) // 5

    whole = imr90_betas.assign(beta_pred=imr90_betas["beta_pred"].astype(np.float32))  # the shard files' float32
    tracks.write_bedgraph(whole, str(tmp_path / "whole.bedGraph"), name="imr90 mrcnn", description="d", chrom_order=["chr22"])
    assert (tmp_path / "whole.bedGraph").read_bytes() == open(out["bedGraph"], "rb").read()
    # ... and the text is the one pandas + np.char.mod printed before the fast path.
    pos = whole["pos"].to_numpy()
    assert open(out["bedGraph"]).read() == tracks.track_line("imr90 mrcnn", "d") + reference_bedgraph("chr22", pos, pos + 1, whole["beta_pred"])
    write_bigwig(str(tmp_path / "whole.bw"), sizes, [site_block(whole, "chr22")])
    assert (tmp_path / "whole.bw").read_bytes() == open(out["bigWig"], "rb").read()  # shard by shard = one block
    # An independent writer of the same values (libBigWig, through pyBigWig): the same
    # intervals, values and totals.
    chrom, starts, ends, values = site_block(whole, "chr22")
    lib = pyBigWig.open(str(tmp_path / "lib.bw"), "w")
    lib.addHeader(list(sizes.items()))
    lib.addEntries([chrom] * len(starts), starts, ends=ends, values=values.astype(np.float32), validate=False)
    lib.close()
    with pyBigWig.open(out["bigWig"]) as got, pyBigWig.open(str(tmp_path / "lib.bw")) as want:
        assert got.intervals("chr22") == want.intervals("chr22") and len(got.intervals("chr22")) == len(whole)
        assert got.chroms() == want.chroms()
        for key in ("nBasesCovered", "minVal", "maxVal", "sumData", "sumSquared"):
            assert got.header()[key] == want.header()[key], key
