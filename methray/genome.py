"""The reference genome: a FASTA file (local or ``s3://``), encoded once per node and memory-mapped.

Each contig is encoded once into base codes (:func:`methray.encoding.sequence_to_codes`,
padded by :data:`~methray.encoding.MAX_FLANK` N codes on each side) and written to a local
cache as a ``.npy`` file; every process on the node then maps that file read-only
(``np.load(mmap_mode="r")``). So:

- a process's own memory does not grow with the contigs it touches: the bases live in the
  page cache, which the kernel shares between every process that maps the file (N Ray actors
  on a node hold one copy, not N) and can evict under memory pressure;
- the FASTA is parsed once per node and contig, not once per process.

Cache layout: ``$METHRAY_CACHE/genome-v1/<key>/<contig>.npy`` (``$METHRAY_CACHE`` defaults to
``$TMPDIR/methray-cache``), where ``<key>`` is a hash of the FASTA's location, size and
modification time (its ETag for ``s3://``): a changed FASTA gets a new entry. A contig file is
written under a lock and a temporary name, then renamed, so concurrent processes never see a
half-written file and only one of them writes it. A remote FASTA (and its ``.fai``) is
downloaded once per node into ``$METHRAY_CACHE``, and only when a contig is not cached yet
(or :meth:`Reference.fetch` is called).

A bgzip-compressed FASTA (``.fa.gz`` with ``.fai`` and ``.gzi`` beside it, as written by
``bgzip`` + ``samtools faidx``) works too: a whole contig is decompressed in one pass from its
block (the ``.gzi``) on when it is cached. A plain-gzip FASTA is refused with what to do.

Old entries are not removed automatically; delete ``$METHRAY_CACHE/genome-v1`` to reclaim the
space (about 1 byte per bp: 3.1 GB for hg38).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyfaidx

from . import storage
from .encoding import MAX_FLANK, N_CODE, gather_windows, sequence_to_codes, WindowSpec
from .errors import MethrayError

log = logging.getLogger(__name__)

CACHE_VERSION = "genome-v1"
CHUNK_BP = 1 << 24
"""Bases encoded per step while writing a contig (16 Mb): bounds the writer's memory."""


def cache_root() -> Path:
    """The node-local cache folder: ``$METHRAY_CACHE`` or ``$TMPDIR/methray-cache``."""
    return Path(os.environ.get("METHRAY_CACHE") or Path(tempfile.gettempdir(), "methray-cache"))


def _content_key(path: str) -> str:
    """A key that changes when the FASTA changes: location + size + mtime (ETag on S3)."""
    if storage.is_remote(path):
        fs, p = storage.filesystem(path)
        with storage.s3_errors(path):
            info = fs.info(p)
        stamp = f"{info.get('size')}:{info.get('ETag') or info.get('LastModified') or info.get('mtime')}"
        where = path
    else:
        st = os.stat(path)
        stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        where = os.path.abspath(path)
    return hashlib.sha1(f"{where}|{stamp}".encode()).hexdigest()[:20]


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created if needed): one writer per node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_fai(fai: str) -> dict[str, int]:
    """Contig sizes from a samtools ``.fai`` index (name, length, ...), in file order."""
    sizes: dict[str, int] = {}
    with open(fai) as fh:
        for n, line in enumerate(fh, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[1].isdigit():
                raise MethrayError(f"{fai}:{n}: expected a FASTA index line (name, length, offset, ...)")
            sizes[fields[0]] = int(fields[1])
    return sizes


class Reference:
    """A reference genome.

    Parameters
    ----------
    path
        FASTA path, local or ``s3://``. An index (``.fai``) beside it is used; for a local
        FASTA without one, pyfaidx builds it (the folder must be writable).

    Raises
    ------
    MethrayError
        If the file is missing or is not a FASTA.

    Attributes
    ----------
    chroms : list[str]
        Contig names in FASTA order (the "reference order" used to sort outputs).
    sizes : dict[str, int]
        Contig lengths in bp.
    cache_dir : pathlib.Path
        This FASTA's folder in the node-local genome cache (see the module docstring).
    """

    def __init__(self, path: str):
        self.path = str(path)
        if not storage.exists(self.path):
            raise MethrayError(f"{self.path}: reference FASTA not found")
        self.cache_dir = cache_root() / CACHE_VERSION / _content_key(self.path)
        self._fasta: pyfaidx.Fasta | None = None
        self.bgzip = False
        self._codes: dict = {}  # contig -> codes; (contig, kind) -> derived arrays
        self._lock = threading.Lock()
        if storage.is_remote(self.path) and storage.exists(self.path + ".fai"):
            # The index is enough to know the contigs; the FASTA itself is downloaded only
            # when a contig is missing from the cache (or for fetch()).
            fai = self.cache_dir / "index.fai"
            if not fai.exists():
                with _file_lock(self.cache_dir / ".lock-index"):
                    storage.download(self.path + ".fai", fai)
            self.sizes = _read_fai(str(fai))
        else:
            self.sizes = {c: len(rec) for c, rec in self._open_fasta().items()}
        self.chroms = list(self.sizes)

    def _open_fasta(self) -> pyfaidx.Fasta:
        """The pyfaidx handle (a remote FASTA and its indexes are downloaded once per node first).

        Raises
        ------
        MethrayError
            A plain-gzip FASTA (with the commands that recompress it), or a FASTA that cannot be
            read as indexed (a bgzip one needs its ``.fai`` and ``.gzi``).
        """
        if self._fasta is None:
            if storage.is_remote(self.path):
                local = self.cache_dir / "fasta" / os.path.basename(self.path)
                if not local.exists():
                    with _file_lock(self.cache_dir / ".lock-fasta"):
                        for index in (".fai", ".gzi"):  # the indexes first: the FASTA's presence means complete
                            if storage.exists(self.path + index):
                                storage.download(self.path + index, str(local) + index)
                        storage.download(self.path, local)
                local = str(local)
            else:
                local = self.path
            with open(local, "rb") as fh:
                self.bgzip = fh.read(2) == b"\x1f\x8b"
            try:
                self._fasta = pyfaidx.Fasta(local, as_raw=True, sequence_always_upper=False, rebuild=False)
            except pyfaidx.UnsupportedCompressionFormat:
                plain = self.path[:-3] if self.path.endswith(".gz") else self.path + ".fa"
                raise MethrayError(
                    f"{self.path}: expected an uncompressed or bgzip-compressed FASTA, found plain gzip; "
                    f"recompress it: gunzip -c {self.path} > {plain} && bgzip {plain} && samtools faidx {plain}.gz"
                ) from None
            except (pyfaidx.FastaIndexingError, OSError, ValueError, ImportError) as exc:
                hint = " (a bgzip FASTA needs its .fai and .gzi beside it: samtools faidx writes both)" if self.bgzip else ""
                raise MethrayError(f"{self.path}: cannot read as an indexed FASTA ({exc}){hint}") from exc
            self._local = local
        return self._fasta

    def check_chrom(self, chrom: str, source: str = "") -> None:
        """Raise :class:`MethrayError` if ``chrom`` is not a contig of this reference."""
        if chrom not in self.sizes:
            known = ", ".join(self.chroms[:5]) + (", ..." if len(self.chroms) > 5 else "")
            raise MethrayError(f"{source or 'input'}: chromosome {chrom!r} is not in {self.path} (has {known})")

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of ``chrom:[start, end)`` (0-based half-open), case as stored."""
        self.check_chrom(chrom)
        return self._open_fasta()[chrom][start:end]

    def contig_path(self, chrom: str) -> Path:
        """The contig's cache file, written first if this node does not have it yet.

        Returns
        -------
        pathlib.Path
            A ``.npy`` file of ``(size + 2*MAX_FLANK,) uint8`` padded base codes.
        """
        self.check_chrom(chrom)
        target = self.cache_dir / f"{quote(chrom, safe='')}.npy"
        if not target.exists():
            with _file_lock(self.cache_dir / f".lock-{quote(chrom, safe='')}"):
                if not target.exists():  # another process may have written it while we waited
                    self._write_contig(chrom, target)
        return target

    def derived(self, chrom: str, kind: str, build) -> np.ndarray:
        """An array computed from one contig's codes, cached beside them and memory-mapped.

        Written once per node, like the contig codes (a lock, a temporary name, a rename):
        ``<cache_dir>/<contig>.<kind>.npy``. Used for per-contig tables such as the binned
        base counts of :mod:`methray.context`.

        Parameters
        ----------
        chrom
            Contig name.
        kind
            A short name for the array (part of the file name; change it when ``build``'s
            output changes).
        build
            ``build(codes, out_path)``: writes the ``.npy`` file at ``out_path`` from the
            contig's unpadded codes ``(size,) uint8`` (e.g. with ``np.lib.format.open_memmap``,
            so that memory stays bounded).

        Returns
        -------
        np.ndarray
            The cached array, read-only, memory-mapped.
        """
        key = (chrom, kind)
        with self._lock:
            if key in self._codes:
                return self._codes[key]
        target = self.cache_dir / f"{quote(chrom, safe='')}.{kind}.npy"
        if not target.exists():
            codes = self.contig_codes(chrom)
            with _file_lock(self.cache_dir / f".lock-{quote(chrom, safe='')}.{kind}"):
                if not target.exists():
                    tmp = target.with_name(f"{target.stem}.tmp-{uuid.uuid4().hex[:8]}.npy")
                    try:
                        build(codes, tmp)
                        os.replace(tmp, target)
                    finally:
                        if tmp.exists():
                            tmp.unlink()
                    log.info("genome cache: wrote %s of %s to %s", kind, chrom, target)
        with self._lock:
            self._codes[key] = np.load(target, mmap_mode="r").view(np.ndarray)
            return self._codes[key]

    def _write_contig(self, chrom: str, target: Path) -> None:
        fasta = self._open_fasta()[chrom]
        if self.bgzip:  # pyfaidx reads bgzip line by line: one pass over the contig's blocks instead
            fasta = self._read_bgzip_contig(chrom)
        size = self.sizes[chrom]
        tmp = target.with_name(f"{target.stem}.tmp-{uuid.uuid4().hex[:8]}.npy")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(size + 2 * MAX_FLANK,))
            out[:MAX_FLANK] = N_CODE
            out[MAX_FLANK + size :] = N_CODE
            for start in range(0, size, CHUNK_BP):  # stream the contig: memory bounded by one chunk
                end = min(size, start + CHUNK_BP)
                out[MAX_FLANK + start : MAX_FLANK + end] = sequence_to_codes(fasta[start:end])
            out.flush()
            del out
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        log.info("genome cache: wrote %s (%s bp) to %s", chrom, f"{size:,}", target)

    def codes(self, chrom: str) -> np.ndarray:
        """The whole contig as padded base codes (see :func:`methray.encoding.pad_codes`).

        Returns
        -------
        np.ndarray
            ``(size + 2*MAX_FLANK,) uint8``, read-only, memory-mapped from the node-local
            cache (written from the FASTA on the node's first use).
        """
        with self._lock:
            if chrom not in self._codes:
                mm = np.load(self.contig_path(chrom), mmap_mode="r")
                self._codes[chrom] = mm.view(np.ndarray)  # a plain array over the mapping
            return self._codes[chrom]

    def _read_bgzip_contig(self, chrom: str) -> str:
        """A whole contig of a bgzip FASTA, decompressed in one pass (pyfaidx reads it line by line).

        The ``.gzi`` gives the compressed offset of the block holding the contig's first byte;
        BGZF blocks are gzip members, so :mod:`gzip` reads on from there.
        """
        import bisect
        import gzip

        rec = self._fasta.faidx.index[chrom]
        blocks = self._fasta.faidx.gzi_index  # BgzfBlock(cstart, clen, ustart, ulen), by ustart
        i = bisect.bisect_right([b.ustart for b in blocks], rec.offset) - 1
        n_bytes = rec.rlen + rec.rlen // max(rec.lenc, 1) * (rec.lenb - rec.lenc) + rec.lenb
        with open(self._local, "rb") as raw:
            raw.seek(blocks[i].cstart)
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                gz.read(rec.offset - blocks[i].ustart)
                data = gz.read(n_bytes)
        seq = data.replace(b"\n", b"").replace(b"\r", b"")[: rec.rlen].decode("ascii")
        if len(seq) != rec.rlen:
            raise MethrayError(f"{self.path}: {chrom} is {len(seq)} bp in the file but {rec.rlen} bp in its .fai; rebuild the index (samtools faidx)")
        return seq

    def contig_codes(self, chrom: str) -> np.ndarray:
        """The contig's codes without padding, ``(size,) uint8`` (a view, no copy)."""
        return self.codes(chrom)[MAX_FLANK:-MAX_FLANK]

    def windows(self, chrom: str, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
        """Window codes of CpGs on one contig, ``(N, spec.length) uint8``."""
        return gather_windows(self.codes(chrom), positions, spec)

    def drop_cache(self) -> None:
        """Unmap the contigs this process has mapped (the cache files stay on disk)."""
        with self._lock:
            self._codes.clear()


@functools.lru_cache(maxsize=4)
def open_reference(path: str) -> Reference:
    """The process-wide :class:`Reference` for ``path`` (each Ray worker opens it once)."""
    return Reference(path)
