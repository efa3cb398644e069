"""The reference genome: a FASTA file (local or ``s3://``) read with pyfaidx.

A remote FASTA (and its ``.fai``) is downloaded once per process into a local cache
(``$METHRAY_CACHE``, default ``$TMPDIR/methray-cache``) and then read like a local file.
A bgzip-compressed FASTA (``.fa.gz`` with ``.fai`` and ``.gzi`` beside it, as written by
``bgzip`` + ``samtools faidx``) works too: pyfaidx serves windows, and a whole contig is
decompressed in one pass from its block (the ``.gzi``) on. A plain-gzip FASTA is refused
with what to do.
Each contig is read once per process and kept as a padded array of base codes, so a Ray
worker that encodes millions of windows touches the FASTA once per contig.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pyfaidx

from . import storage
from .encoding import gather_windows, pad_codes, sequence_to_codes, WindowSpec
from .errors import MethrayError


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
    """

    def __init__(self, path: str):
        self.path = str(path)
        if not storage.exists(self.path):
            raise MethrayError(f"{self.path}: reference FASTA not found")
        local = storage.local_copy(self.path)
        for index in (".fai", ".gzi"):  # the indexes beside the cached FASTA
            if storage.is_remote(self.path) and storage.exists(self.path + index):
                storage.download(self.path + index, local + index)
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
        self.chroms = list(self._fasta.keys())
        self.sizes = {c: len(self._fasta[c]) for c in self.chroms}
        self._codes: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def check_chrom(self, chrom: str, source: str = "") -> None:
        """Raise :class:`MethrayError` if ``chrom`` is not a contig of this reference."""
        if chrom not in self.sizes:
            known = ", ".join(self.chroms[:5]) + (", ..." if len(self.chroms) > 5 else "")
            raise MethrayError(f"{source or 'input'}: chromosome {chrom!r} is not in {self.path} (has {known})")

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of ``chrom:[start, end)`` (0-based half-open), case as stored."""
        self.check_chrom(chrom)
        return self._fasta[chrom][start:end]

    def codes(self, chrom: str) -> np.ndarray:
        """The whole contig as padded base codes (see :func:`methray.encoding.pad_codes`).

        Returns
        -------
        np.ndarray
            ``(size + 2*MAX_FLANK,) uint8``; read from the FASTA on first use, then cached.
        """
        with self._lock:
            if chrom not in self._codes:
                self.check_chrom(chrom)
                seq = self._read_bgzip_contig(chrom) if self.bgzip else self._fasta[chrom][:]
                self._codes[chrom] = pad_codes(sequence_to_codes(seq))
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
        from .encoding import MAX_FLANK

        return self.codes(chrom)[MAX_FLANK:-MAX_FLANK]

    def windows(self, chrom: str, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
        """Window codes of CpGs on one contig, ``(N, spec.length) uint8``."""
        return gather_windows(self.codes(chrom), positions, spec)

    def drop_cache(self) -> None:
        """Forget cached contigs (frees memory between contigs when streaming a genome)."""
        with self._lock:
            self._codes.clear()


@functools.lru_cache(maxsize=4)
def open_reference(path: str) -> Reference:
    """The process-wide :class:`Reference` for ``path`` (each Ray worker opens it once)."""
    return Reference(path)
