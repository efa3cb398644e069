"""prepare streams: a methylation file chunk by chunk, the CpG table contig by contig.

Chunking must not change a byte of the output, and no piece a process holds may exceed a
chunk of the file (first pass) or one contig's rows (second pass).
"""

import filecmp
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyfaidx
import pytest

from methray.config import load_config
from methray.errors import MethrayError
from methray.genome import Reference
from methray.io.methylation import MethylationReader
from methray.prepare import prepare
from methray.sites import SiteCaller, call_sites, read_sites

from conftest import FASTA, IMR90, head_lines, slice_config


def _spy(monkeypatch) -> dict:
    """Record the rows of every chunk checked and every contig merged by SiteCaller."""
    seen = {"chunks": [], "contigs": []}
    add, read_contig = SiteCaller.add, SiteCaller._read_contig

    def spy_add(self, chunk):
        seen["chunks"].append(len(chunk))
        return add(self, chunk)

    def spy_read(self, rank):
        df = read_contig(self, rank)
        seen["contigs"].append((self.ref.chroms[rank], len(df)))
        return df

    monkeypatch.setattr(SiteCaller, "add", spy_add)
    monkeypatch.setattr(SiteCaller, "_read_contig", spy_read)
    return seen


def test_tiny_chunks_give_the_same_table_and_report_on_the_real_imr90_file(tmp_path, monkeypatch):
    # The whole real IMR90 file (130,054 rows): default chunks (one chunk) vs chunks of 4,096 rows.
    default = load_config(data=slice_config(tmp_path / "default", IMR90))
    tiny = load_config(data=slice_config(tmp_path / "tiny", IMR90))
    (r_default,) = prepare(default)
    seen = _spy(monkeypatch)
    (r_tiny,) = prepare(tiny, chunk_rows=4096)

    assert asdict(r_tiny) == asdict(r_default) and r_tiny.rows_read == 130_054
    a, b = read_sites(default.sites_table), read_sites(tiny.sites_table)
    assert len(a) == r_default.kept > 100_000 and a.equals(b)
    for name in ("prepare_report.json", "split_regions.tsv"):
        assert filecmp.cmp(default.path(name), tiny.path(name), shallow=False)
    files = sorted(p.relative_to(default.sites_table) for p in Path(default.sites_table).rglob("*.parquet"))
    assert len(files) == 4 and all(filecmp.cmp(Path(default.sites_table, f), Path(tiny.sites_table, f), shallow=False) for f in files)
    # First pass: never more than a chunk of the file at once, every row seen once.
    assert max(seen["chunks"]) == 4096 and sum(seen["chunks"]) == 130_054 and len(seen["chunks"]) == 32
    # Second pass: one contig at a time (chr22 holds every CpG row of this file).
    assert seen["contigs"] == [("chr22", 130_054)]
    assert not list(Path(tiny.out_dir).glob("._prepare-parts-*"))  # the per-contig parts are removed


@pytest.fixture(scope="module")
def three_contigs(tmp_path_factory):
    """A 3-contig reference cut from real chr22 sequence and a Bismark file that interleaves them."""
    d = tmp_path_factory.mktemp("three")
    seq = pyfaidx.Fasta(str(FASTA), as_raw=True)["chr22"]
    contigs = {"chrA": seq[24_080_000:24_100_000], "chrB": seq[30_000_000:30_030_000], "chrC": seq[40_000_000:40_010_000]}
    fa = d / "three.fa"
    fa.write_text("".join(f">{c}\n{s}\n" for c, s in contigs.items()))
    rng = np.random.default_rng(0)
    rows = []
    for c, s in contigs.items():
        up = np.frombuffer(s.upper().encode(), np.uint8)
        cpg = np.flatnonzero((up[:-1] == ord("C")) & (up[1:] == ord("G")))
        for p in cpg:  # + strand C (1-based p + 1); about a third also on the - strand (1-based p + 2)
            m, u = rng.integers(0, 20, 2)
            rows.append(f"{c}\t{p + 1}\t{p + 1}\t50\t{m}\t{u}\n")
            if rng.random() < 0.33:
                rows.append(f"{c}\t{p + 2}\t{p + 2}\t50\t{u}\t{m}\n")
    cov = d / "three.cov"
    cov.write_text("".join(rows[i] for i in rng.permutation(len(rows))))  # unsorted: contigs and strands interleaved
    return fa, cov, len(rows)


def test_site_caller_bounds_memory_by_a_chunk_and_one_contig(three_contigs):
    fa, cov, n_rows = three_contigs
    ref = Reference(str(fa))
    whole, whole_counts = call_sites(MethylationReader(str(cov), "bismark_cov").read(), ref, str(cov), 0.01)
    with SiteCaller(ref, str(cov), 0.01) as caller:
        for chunk in MethylationReader(str(cov), "bismark_cov").chunks(chunk_rows=100):
            assert len(chunk) <= 100
            caller.add(chunk)
        caller.finish()
        pieces = list(caller.contigs())
        counts = caller.counts
    # One piece per contig, in reference order, the strands of a CpG merged across chunks.
    assert [p["chrom"].iloc[0] for p in pieces] == ["chrA", "chrB", "chrC"]
    assert counts == whole_counts and counts.rows_read == n_rows and counts.cpgs_both_strands > 100
    streamed = pd.concat(pieces, ignore_index=True)
    assert streamed.equals(whole) and len(whole) == counts.cpgs
    # The most rows held at once: the largest contig's rows, well under the file.
    per_contig = pd.read_csv(cov, sep="\t", header=None)[0].value_counts()
    assert caller.largest_piece == max(100, per_contig.max()) < n_rows


def test_duplicate_rows_in_different_chunks_are_still_found(three_contigs, tmp_path):
    fa, cov, _ = three_contigs
    lines = Path(cov).read_text().splitlines(keepends=True)
    dup = tmp_path / "dup.cov"
    dup.write_text("".join(lines + [lines[3]]))  # line 4 again, as the last line: another chunk
    with SiteCaller(Reference(str(fa)), str(dup), 0.01) as caller:
        for chunk in MethylationReader(str(dup), "bismark_cov").chunks(chunk_rows=100):
            caller.add(chunk)
        caller.finish()
        with pytest.raises(MethrayError, match=rf"dup.cov:{len(lines) + 1}: expected one row per site and strand; line 4 has the same"):
            list(caller.contigs())


def test_a_failed_prepare_leaves_no_parts_and_no_table(tmp_path):
    bad = tmp_path / "bad.cov"
    bad.write_text("".join(head_lines(IMR90, 20) + head_lines(IMR90, 1, skip=7)))  # line 8 again as line 21
    cfg = load_config(data=slice_config(tmp_path / "run", bad))
    with pytest.raises(MethrayError, match="expected one row per site and strand"):
        prepare(cfg)
    assert not Path(cfg.sites_table).exists() and not list(Path(cfg.out_dir).glob("._prepare-parts-*"))
    assert not Path(cfg.path("prepare_report.json")).exists()


def test_a_failed_tissue_task_leaves_no_parts_of_the_other_tissues(ray_session, imr90_slice, tmp_path):
    bad = tmp_path / "bad.cov"
    bad.write_text("chrUn\t100\t100\t50.0\t1\t1\n")
    cfg = load_config(data=slice_config(tmp_path / "run", imr90_slice,
                                        tissues=[{"name": "good", "path": str(imr90_slice)}, {"name": "bad", "path": str(bad)}]))
    with pytest.raises(MethrayError, match="chrUn"):
        prepare(cfg)
    assert not Path(cfg.sites_table).exists() and not list(Path(cfg.out_dir).glob("._prepare-parts-*"))
