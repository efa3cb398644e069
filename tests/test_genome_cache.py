"""The node-local genome cache: each contig encoded once, memory-mapped and shared by processes.

Real chr22 (hg19) throughout; a tiny synthetic FASTA only for the "changed file" edge case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyfaidx
import pytest

from conftest import FASTA, ROOT, IMR90, head_lines
from methray import storage
from methray.encoding import MAX_FLANK, WindowSpec, sequence_to_codes
from methray.genome import Reference

CHILD = textwrap.dedent(
    """
    import logging, os, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from methray.genome import Reference
    ref = Reference(sys.argv[1])
    codes = ref.codes("chr22")
    total = int(codes[::4096].sum())   # touch every page of the mapping
    print("ready", os.getpid(), ref.contig_path("chr22"), total, flush=True)
    sys.stdin.readline()               # stay alive (and mapped) until the test is done
    """
)


def _smaps_of(pid: int, path: Path) -> dict[str, int]:
    """Summed smaps fields (kB) of every mapping of ``path`` in process ``pid``."""
    out: dict[str, int] = {}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[-1] == str(path)
        elif inside and head and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            out[head[0][:-1]] = out.get(head[0][:-1], 0) + int(head[1])
    return out


def test_two_processes_map_one_copy_written_once(tmp_path):
    # Two processes start together on an empty cache: one writes chr22, the other waits for
    # it; both map the same file, and its pages are shared (one copy in the page cache).
    env = {**os.environ, "METHRAY_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(FASTA)], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        ready = [p.stdout.readline().split() for p in procs]
        assert all(r and r[0] == "ready" for r in ready), [p.stderr.read() for p in procs if p.poll() is not None]
        paths = {r[2] for r in ready}
        assert len(paths) == 1 and ready[0][3] == ready[1][3]
        cache_file = Path(paths.pop())
        size_kb = cache_file.stat().st_size // 1024
        for r in ready:
            m = _smaps_of(int(r[1]), cache_file)
            private = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
            assert m.get("Rss", 0) > 0.5 * size_kb, m  # the pages were touched through the mapping ...
            assert m.get("Shared_Clean", 0) > 0.95 * m["Rss"], m  # ... and are shared with the other process
            assert private < 0.02 * size_kb, m  # no private copy of the genome
    finally:
        for p in procs:
            p.stdin.close()
        logs = [p.stderr.read() for p in procs]
        for p in procs:
            p.wait(timeout=30)
    assert sum(log.count("genome cache: wrote chr22") for log in logs) == 1, logs
    assert [f.name for f in cache_file.parent.glob("*.npy")] == ["chr22.npy"]  # no temporary left over


def test_reference_api_unchanged_and_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("METHRAY_CACHE", str(tmp_path / "cache"))
    ref = Reference(str(FASTA))
    fai = pyfaidx.Fasta(str(FASTA), as_raw=True)
    assert ref.chroms == ["chr22"] and ref.sizes == {"chr22": len(fai["chr22"])}
    codes = ref.codes("chr22")
    assert type(codes) is np.ndarray and codes.dtype == np.uint8
    assert codes.shape == (ref.sizes["chr22"] + 2 * MAX_FLANK,)
    assert not codes.flags.writeable
    assert (codes[:MAX_FLANK] == 4).all() and (codes[-MAX_FLANK:] == 4).all()
    # the cached codes are the FASTA's, checked on a stretch that crosses an encode chunk
    np.testing.assert_array_equal(ref.contig_codes("chr22")[20_000_000:20_100_000], sequence_to_codes(fai["chr22"][20_000_000:20_100_000]))
    assert ref.fetch("chr22", 20_000_000, 20_000_050) == fai["chr22"][20_000_000:20_000_050]
    pos = np.array([int(line.split("\t")[1]) - 1 for line in head_lines(IMR90, 50)])
    win = ref.windows("chr22", pos, WindowSpec(400, exclude_cpg=True))
    p = int(pos[7])
    np.testing.assert_array_equal(win[7], sequence_to_codes(fai["chr22"][p - 200 : p] + fai["chr22"][p + 2 : p + 202]))
    ref.drop_cache()
    # a second Reference (as in another process) maps the file, it does not rewrite it
    stamp = ref.contig_path("chr22").stat().st_mtime_ns
    np.testing.assert_array_equal(Reference(str(FASTA)).codes("chr22")[::1000], codes[::1000])
    assert ref.contig_path("chr22").stat().st_mtime_ns == stamp


def test_changed_fasta_gets_a_new_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("METHRAY_CACHE", str(tmp_path / "cache"))
    fa = tmp_path / "tiny.fa"
    fa.write_text(">c1\nACGTNNacgt\n")
    first = Reference(str(fa))
    assert first.codes("c1")[MAX_FLANK:-MAX_FLANK].tolist() == [0, 1, 2, 3, 4, 4, 0, 1, 2, 3]
    fa.write_text(">c1\nTTTTCCCCGG\n")
    os.remove(f"{fa}.fai")
    second = Reference(str(fa))
    assert second.cache_dir != first.cache_dir
    assert second.codes("c1")[MAX_FLANK:-MAX_FLANK].tolist() == [3, 3, 3, 3, 1, 1, 1, 1, 2, 2]


def test_s3_reference_downloaded_once_per_node(tmp_path, monkeypatch):
    # An s3:// FASTA: the first Reference downloads it and writes the contig cache; a later
    # one (another process on the node) needs only the index and maps the cached contig.
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = dict(storage._S3_OPTIONS)
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("METHRAY_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")  # restored after the test
        storage.configure_s3(endpoint_url=f"http://{host}:{port}")
        fs, _ = storage.filesystem("s3://genome-bucket/x")
        fs.mkdir("genome-bucket")
        for local in (FASTA, Path(f"{FASTA}.fai")):
            fs.put_file(str(local), f"genome-bucket/hg19/{local.name}")
        url = "s3://genome-bucket/hg19/chr22.fa"
        first = Reference(url)
        codes = first.codes("chr22")
        downloaded = first.cache_dir / "fasta" / "chr22.fa"
        assert downloaded.exists()
        os.remove(downloaded)  # were it needed again, it would have to be downloaded again
        second = Reference(url)
        assert second.cache_dir == first.cache_dir and second.chroms == ["chr22"]
        np.testing.assert_array_equal(second.codes("chr22")[::997], codes[::997])
        assert not downloaded.exists()
        np.testing.assert_array_equal(codes[::997], Reference(str(FASTA)).codes("chr22")[::997])
    finally:
        storage._S3_OPTIONS.clear()
        storage._S3_OPTIONS.update(saved)
        server.stop()
