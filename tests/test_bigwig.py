"""methray.bigwig: the streaming bigWig writer, read back by pyBigWig and pybigtools."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from methray import bigwig


def random_track(rng: np.random.Generator, n: int, size: int, longest: int = 40):
    """``n`` sorted, non-overlapping intervals of 1-``longest`` bp within ``size`` bp, float32 values."""
    length = rng.integers(1, longest, n)
    start = np.cumsum(rng.integers(0, 60, n) + np.r_[0, length[:-1]])
    keep = start + length < size
    start, length = start[keep], length[keep]
    return start, start + length, rng.normal(size=len(start)).astype(np.float32)


def write(path, chroms, tracks_by_chrom, cuts_rng=None) -> None:
    """Write the tracks, each chromosome cut into blocks at random places when ``cuts_rng``."""
    w = bigwig.BigWigWriter(str(path), chroms)
    for name, _ in chroms:
        start, end, value = tracks_by_chrom[name]
        cuts = [0, len(start)]
        if cuts_rng is not None and len(start) > 2:
            cuts = [0, *sorted(cuts_rng.choice(np.arange(1, len(start)), size=min(6, len(start) - 1), replace=False)), len(start)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            w.add(name, start[a:b], end[a:b], value[a:b])
    w.close()


def exact_zoom_check(path, name: str, start, end, value) -> dict[int, int]:
    """Per zoom level, the records (read by pybigtools) whose bases covered or sum differ from
    the intervals' own, counted base by base."""
    import pybigtools

    covered = np.zeros(int(end[-1]) + 1, np.int64)
    weighted = np.zeros(int(end[-1]) + 1)
    np.add.at(covered, start, 1), np.add.at(covered, end, -1)
    np.add.at(weighted, start, value.astype(np.float64)), np.add.at(weighted, end, -value.astype(np.float64))
    per_base_cov, per_base_val = np.cumsum(covered), np.cumsum(weighted)  # 1 / value on covered bases
    ccov, cval = np.r_[0, np.cumsum(per_base_cov)], np.r_[0, np.cumsum(per_base_val)]
    reader = pybigtools.open(str(path))
    bad = {}
    for level in reader.zooms():
        recs = list(reader.zoom_records(level, name))
        s = np.array([r[0] for r in recs])
        e = np.minimum([r[1] for r in recs], len(per_base_cov))
        count = np.array([r[2]["bases_covered"] for r in recs])
        total = np.array([r[2]["sum"] for r in recs])
        assert np.all(s % level == 0)  # aligned bins
        bad[level] = int(((ccov[e] - ccov[s] != count) | (np.abs(cval[e] - cval[s] - total) > 1e-3 * np.maximum(1, count))).sum())
    return bad


def test_many_contigs_and_blocks_read_back_exactly(tmp_path):
    # 300 contigs (a B+ tree of two levels), one of them with ~190k intervals of 1-40 bp
    # (data sections and zoom blocks over two R-tree levels, intervals across zoom bins).
    import pyBigWig

    rng = np.random.default_rng(3)
    names = sorted(f"chr{i}" for i in range(300))
    sizes = dict.fromkeys(names, 1_000_000) | {"chr104": 20_000_000}
    data = {n: random_track(rng, 190_000 if n == "chr104" else 30, sizes[n]) for n in names}
    write(tmp_path / "a.bw", [(n, sizes[n]) for n in names], data)
    with pyBigWig.open(str(tmp_path / "a.bw")) as bw:
        assert bw.chroms() == sizes
        for n in names:
            got = bw.intervals(n)
            start, end, value = data[n]
            assert [(a, b) for a, b, _ in got] == list(zip(start.tolist(), end.tolist()))
            assert np.array_equal(np.array([v for *_, v in got], np.float32).view(np.uint32), value.view(np.uint32))
        start, end, value = data["chr104"]
        i = np.searchsorted(end, 7_000_000, side="right")
        assert bw.intervals("chr104", 7_000_000, int(end[i + 2]))[:3] == tuple(zip(start[i:i + 3].tolist(), end[i:i + 3].tolist(), value[i:i + 3].tolist()))
        spans = np.concatenate([data[n][1] - data[n][0] for n in names])
        assert bw.header()["nBasesCovered"] == spans.sum()
        first = bw.header()["nLevels"]
    assert first >= 5
    assert all(v == 0 for v in exact_zoom_check(tmp_path / "a.bw", "chr104", *data["chr104"]).values())


def test_blocks_cut_anywhere_give_the_same_bytes(tmp_path):
    # A zoom bin or data section split across add() calls is the same as written in one call.
    rng = np.random.default_rng(4)
    chroms = [("chrA", 3_000_000), ("chrB", 2_000_000)]
    data = {c: random_track(rng, 30_000, n, longest=5) for c, n in chroms}
    write(tmp_path / "one.bw", chroms, data)
    for seed in range(3):
        write(tmp_path / "cut.bw", chroms, data, cuts_rng=np.random.default_rng(seed))
        assert (tmp_path / "cut.bw").read_bytes() == (tmp_path / "one.bw").read_bytes()


def test_memory_does_not_grow_with_the_intervals(tmp_path):
    # Python-side allocations (numpy included) while writing 4x the intervals in blocks of the
    # same size: the peak stays with the block (libBigWig's writer grew ~46 B per interval).
    rng = np.random.default_rng(5)

    def peak(n: int) -> int:
        start, end, value = random_track(rng, n, 2**31, longest=2)
        tracemalloc.start()
        w = bigwig.BigWigWriter(str(tmp_path / f"{n}.bw"), [("chr1", 2**31)])
        for a in range(0, len(start), 50_000):
            w.add("chr1", start[a:a + 50_000], end[a:a + 50_000], value[a:a + 50_000])
        w.close()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(200_000), peak(800_000)
    # The peak is a block's arrays and each level's last bin (the 4 Mb level's bin holds
    # ~125k of these dense intervals), the same for both.
    assert large < 1.1 * small, (small, large)


def test_empty_track_is_readable(tmp_path):
    import pyBigWig

    w = bigwig.BigWigWriter(str(tmp_path / "e.bw"), [("chr1", 1000)])
    w.close()
    with pyBigWig.open(str(tmp_path / "e.bw")) as bw:
        assert bw.chroms() == {"chr1": 1000} and bw.intervals("chr1") is None
    with pytest.raises(ValueError, match="byte order"):
        bigwig.BigWigWriter(str(tmp_path / "x.bw"), [("chr9", 10), ("chr10", 10)])
