"""The reference genome: a FASTA file (local or ``s3://``) read with pyfaidx.

A remote FASTA (and its ``.fai``) is downloaded once per process into a local cache
(``$METHRAY_CACHE``, default ``$TMPDIR/methray-cache``) and then read like a local file.
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
        if storage.is_remote(self.path) and storage.exists(self.path + ".fai"):
            storage.download(self.path + ".fai", local + ".fai")  # the index beside the cached FASTA
        try:
            self._fasta = pyfaidx.Fasta(local, as_raw=True, sequence_always_upper=False, rebuild=False)
        except (pyfaidx.FastaIndexingError, OSError, ValueError) as exc:
            raise MethrayError(f"{self.path}: cannot read as an indexed FASTA ({exc})") from exc
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
                self._codes[chrom] = pad_codes(sequence_to_codes(self._fasta[chrom][:]))
            return self._codes[chrom]

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
