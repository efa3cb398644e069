"""Shard plan and ledger: coverage, stable ids, resumption, atomic markers."""

from __future__ import annotations

import json

import pytest

from methray import storage
from methray.errors import MethrayError
from methray.shards import Shard, ShardLedger, parse_shard_id, plan_shards

SIZES = {"chr2": 15_000_001, "chr10": 5_000_000, "chrUn_gl000220": 161_802, "chrM": 16_571}


def test_shards_cover_each_contig_exactly_once():
    shards = plan_shards(SIZES, shard_bp=5_000_000)
    for chrom, size in SIZES.items():
        own = [s for s in shards if s.chrom == chrom]
        assert own[0].start == 0 and own[-1].end == size
        for a, b in zip(own, own[1:]):
            assert a.end == b.start  # contiguous, no gap, no overlap
        assert all(0 < s.length <= 5_000_000 for s in own)
        assert sum(s.length for s in own) == size
    assert [(s.chrom, s.start, s.end) for s in shards if s.chrom == "chr2"] == [
        ("chr2", 0, 5_000_000),
        ("chr2", 5_000_000, 10_000_000),
        ("chr2", 10_000_000, 15_000_000),
        ("chr2", 15_000_000, 15_000_001),
    ]
    assert [s.chrom for s in shards if s.chrom == "chr10"] == ["chr10"]  # exact multiple: one shard
    assert [s.index for s in shards] == list(range(len(shards)))


def test_ids_stable_parseable_and_in_reference_order():
    shards = plan_shards(SIZES, shard_bp=5_000_000)
    assert shards[1].id == "chr2_00005000000_00010000000"
    assert [s.id for s in shards] == [s.id for s in plan_shards(dict(SIZES), shard_bp=5_000_000)]
    # Reference (dict) order, not name order: chr2 before chr10.
    assert [s.chrom for s in shards][:5] == ["chr2"] * 4 + ["chr10"]
    assert sorted(shards, key=lambda s: s.index) == shards
    for chrom in SIZES:
        own = [s.id for s in shards if s.chrom == chrom]
        assert sorted(own) == own  # zero padding: lexicographic = positional within a contig
    for s in shards:
        assert parse_shard_id(s.id) == (s.chrom, s.start, s.end)  # also "chrUn_gl000220"
    assert [s.chrom for s in plan_shards(SIZES, 10**9, chroms=["chrM", "chr2"])] == ["chr2", "chrM"]
    with pytest.raises(ValueError):
        parse_shard_id("chr2_5")


def test_plan_errors():
    with pytest.raises(MethrayError, match="shard_bp"):
        plan_shards(SIZES, shard_bp=0)
    with pytest.raises(MethrayError, match="chr99"):
        plan_shards(SIZES, chroms=["chr99"])


def test_plan_from_reference(tmp_path):
    from methray.genome import Reference

    fa = tmp_path / "g.fa"
    fa.write_text(">b\nACGTACGTAC\n>a\nACG\n")
    shards = plan_shards(Reference(str(fa)), shard_bp=4)
    assert [s.id for s in shards] == [
        "b_00000000000_00000000004",
        "b_00000000004_00000000008",
        "b_00000000008_00000000010",
        "a_00000000000_00000000003",
    ]


def test_ledger_marks_lists_and_resumes(tmp_path):
    out = str(tmp_path / "scores")
    shards = plan_shards(SIZES, shard_bp=5_000_000)
    ledger = ShardLedger(out)
    assert ledger.done_ids() == set() and ledger.missing(shards) == shards
    ledger.bind_plan(shards, shard_bp=5_000_000)
    rec = ledger.mark_done(shards[2], n_sites=123, seconds=4.56789, checksum="abc", model="mrcnn")
    ledger.mark_done(shards[0], n_sites=7, seconds=1.0)
    assert rec["n_sites"] == 123 and rec["seconds"] == 4.568 and rec["model"] == "mrcnn"

    # A new ledger object (a new process after a kill) sees the same state.
    again = ShardLedger(out)
    again.bind_plan(shards, shard_bp=5_000_000)  # same plan: accepted
    assert again.done(shards) == [shards[0], shards[2]]
    assert again.missing(shards) == [s for s in shards if s.index not in (0, 2)]
    assert again.is_done(shards[2]) and not again.is_done(shards[1])
    assert again.record(shards[2])["checksum"] == "abc"
    assert again.record(shards[1]) is None
    again.forget(shards[2])
    assert ShardLedger(out).done(shards) == [shards[0]]

    marker = tmp_path / "scores" / "_shards" / f"{shards[0].id}.done"
    assert json.loads(marker.read_text())["shard"] == shards[0].id


def test_ledger_rejects_another_plan(tmp_path):
    out = str(tmp_path / "scores")
    ShardLedger(out).bind_plan(plan_shards(SIZES, 5_000_000), shard_bp=5_000_000)
    with pytest.raises(MethrayError, match="another shard plan"):
        ShardLedger(out).bind_plan(plan_shards(SIZES, 1_000_000), shard_bp=1_000_000)


def test_marker_is_atomic(tmp_path, monkeypatch):
    out = str(tmp_path / "scores")
    shard = plan_shards(SIZES, 5_000_000)[0]
    ledger = ShardLedger(out)

    def boom(*args, **kwargs):
        raise OSError("killed mid-write")

    # Fail inside the write: no marker, no temp file, shard still missing.
    monkeypatch.setattr("methray.shards.json.dump", boom)
    with pytest.raises(OSError):
        ledger.mark_done(shard, n_sites=1, seconds=0.1)
    monkeypatch.undo()
    assert not ledger.is_done(shard)
    assert list((tmp_path / "scores" / "_shards").iterdir()) == []
    # A stray temp file from a killed writer is not taken as done.
    (tmp_path / "scores" / "_shards" / f"{shard.id}.done.tmp-1234abcd").write_text("{")
    assert ledger.done_ids() == set()


def test_odd_contig_names_round_trip(tmp_path):
    ledger = ShardLedger(str(tmp_path / "o"))
    shard = Shard("HLA-A*01:01:01:01", 0, 3503, 0)
    ledger.mark_done(shard, n_sites=1, seconds=0)
    assert ledger.done_ids() == {shard.id}
    assert ledger.done([shard]) == [shard]


def test_ledger_on_s3(tmp_path, monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(storage, "_S3_OPTIONS", {"client_kwargs": {"endpoint_url": endpoint}})
        fs, _ = storage.filesystem("s3://bucket")
        fs.mkdir("bucket")

        shards = plan_shards(SIZES, 5_000_000)
        ledger = ShardLedger("s3://bucket/run1")
        assert ledger.missing(shards) == shards
        ledger.bind_plan(shards, shard_bp=5_000_000)
        ledger.mark_done(shards[1], n_sites=5, seconds=0.5)
        assert ShardLedger("s3://bucket/run1").done(shards) == [shards[1]]
        assert ShardLedger("s3://bucket/run1").record(shards[1])["n_sites"] == 5

        # The CpG table on s3 as well: per-object writes, summary last, readable back.
        from methray.cpgs import enumerate_cpgs, read_cpgs

        fa = tmp_path / "g.fa"
        fa.write_text(">c1\nACGTTCGA\n>c2\nNNCG\n")
        summary = enumerate_cpgs(str(fa), "s3://bucket/cpgs", max_rows_per_file=1, window=3)
        assert summary.total == 3 and summary.per_chrom["c1"].files == 2
        df = read_cpgs("s3://bucket/cpgs")
        assert list(zip(df["chrom"], df["pos"])) == [("c1", 1), ("c1", 5), ("c2", 2)]
    finally:
        server.stop()
