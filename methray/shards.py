"""Shard plan and ledger: the unit of resumable genome-wide scoring.

A *shard* is a chunk of one contig, ``[start, end)`` in 0-based half-open bp. The plan cuts
each contig, in reference order, into chunks of ``shard_bp`` (the last one shorter), so the
shards cover every base of every contig exactly once. A CpG belongs to the shard that holds
its C (``start <= pos < end``), even when its G is the next shard's first base.

The :class:`ShardLedger` records finished shards in the output directory, one small JSON
marker per shard, ``<out_dir>/_shards/<shard id>.done``, written atomically (temp name +
rename locally; one whole upload on ``s3://``). A scorer writes a shard's output first and its
marker last; after a crash, rerunning with the same plan scores only
:meth:`ShardLedger.missing` shards. The plan itself is pinned in ``_shards/_plan.json`` so a
rerun with another ``shard_bp`` or reference fails loudly instead of mixing two plans.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Mapping
from urllib.parse import quote, unquote

from . import storage
from .errors import MethrayError
from .genome import Reference

DEFAULT_SHARD_BP = 5_000_000
"""Default shard length: 5 Mb (hg38 -> ~650 shards; chr22 of hg19 -> 11)."""

COORD_DIGITS = 11
"""Zero-padding of coordinates in shard ids (contigs up to 10^11 bp)."""

LEDGER_DIR = "_shards"
PLAN_NAME = "_plan.json"
DONE_SUFFIX = ".done"


@dataclass(frozen=True)
class Shard:
    """One chunk of a contig.

    Attributes
    ----------
    chrom : str
        Contig name.
    start, end : int
        0-based half-open bp interval, ``0 <= start < end <= contig size``.
    index : int
        Position in the plan (reference order, then start): the sort key across contigs.
    """

    chrom: str
    start: int
    end: int
    index: int

    @property
    def id(self) -> str:
        """Stable id ``<chrom>_<start>_<end>`` with 11-digit zero-padded coordinates.

        E.g. ``chr22_00005000000_00010000000``. Within a contig, ids sort lexicographically
        in position order; across contigs sort by :attr:`index` (reference order).
        """
        return f"{self.chrom}_{self.start:0{COORD_DIGITS}d}_{self.end:0{COORD_DIGITS}d}"

    @property
    def length(self) -> int:
        """Length in bp."""
        return self.end - self.start


def parse_shard_id(shard_id: str) -> tuple[str, int, int]:
    """``(chrom, start, end)`` of a shard id (contig names may themselves contain ``_``).

    Raises
    ------
    ValueError
        If ``shard_id`` is not ``<chrom>_<start>_<end>``.
    """
    parts = shard_id.rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"not a shard id: {shard_id!r} (expected <chrom>_<start>_<end>)")
    return parts[0], int(parts[1]), int(parts[2])


def plan_shards(
    reference: Reference | Mapping[str, int],
    shard_bp: int = DEFAULT_SHARD_BP,
    chroms: Iterable[str] | None = None,
) -> list[Shard]:
    """Cut contigs into shards of ``shard_bp``.

    Parameters
    ----------
    reference
        A :class:`~methray.genome.Reference`, or an ordered mapping contig -> size in bp
        (its order is taken as the reference order).
    shard_bp
        Shard length in bp (> 0); each contig's last shard holds the remainder.
    chroms
        Contigs to include (default all); kept in reference order whatever the order given.

    Returns
    -------
    list[Shard]
        In reference order then start; ``index`` runs 0..n-1. Contigs of size 0 get no shard.

    Raises
    ------
    MethrayError
        ``shard_bp`` < 1, or a contig of ``chroms`` is not in the reference.
    """
    if int(shard_bp) < 1:
        raise MethrayError(f"shard_bp: expected a positive length in bp, got {shard_bp!r}")
    shard_bp = int(shard_bp)
    sizes = dict(reference.sizes) if isinstance(reference, Reference) else dict(reference)
    order = list(sizes)
    if chroms is not None:
        wanted = list(chroms)
        unknown = [c for c in wanted if c not in sizes]
        if unknown:
            raise MethrayError(f"chroms: {unknown[0]!r} is not a contig of the reference (has {', '.join(order[:5])}...)")
        keep = set(wanted)
        order = [c for c in order if c in keep]
    shards: list[Shard] = []
    for chrom in order:
        size = int(sizes[chrom])
        for start in range(0, size, shard_bp):
            shards.append(Shard(chrom, start, min(start + shard_bp, size), len(shards)))
    return shards


def plan_fingerprint(shards: Iterable[Shard]) -> str:
    """SHA-256 over the shard ids in plan order: equal plans, equal fingerprints."""
    h = hashlib.sha256()
    for s in shards:
        h.update(s.id.encode() + b"\n")
    return h.hexdigest()


def _marker_name(shard_id: str) -> str:
    # Contig names such as HLA-A*01:01:01:01 (GRCh38) are percent-encoded for file/object names.
    return quote(shard_id, safe="-_.") + DONE_SUFFIX


class ShardLedger:
    """Which shards of an output directory are finished.

    Parameters
    ----------
    out_dir
        The scoring output directory, local or ``s3://``; markers live in ``<out_dir>/_shards/``.

    Notes
    -----
    The ledger holds no state besides the path: every query lists the marker directory, so a
    new ledger object (a new process after a kill) sees what earlier ones recorded.
    """

    def __init__(self, out_dir: str):
        self.out_dir = str(out_dir)
        self.dir = storage.join(self.out_dir, LEDGER_DIR)

    def marker_path(self, shard: Shard | str) -> str:
        """Path of a shard's ``.done`` marker."""
        sid = shard.id if isinstance(shard, Shard) else str(shard)
        return storage.join(self.dir, _marker_name(sid))

    def bind_plan(self, shards: list[Shard], *, shard_bp: int | None = None) -> None:
        """Record the plan on first use; on later runs check it is the same plan.

        Raises
        ------
        MethrayError
            If the directory already records a different plan (other ``shard_bp``, reference
            or contigs): resuming it would mix shards of two plans.
        """
        path = storage.join(self.dir, PLAN_NAME)
        fp = plan_fingerprint(shards)
        if storage.exists(path):
            old = self._read_json(path)
            if old.get("fingerprint") != fp:
                raise MethrayError(
                    f"{path}: this output was started with another shard plan "
                    f"({old.get('n_shards')} shards, shard_bp={old.get('shard_bp')}); now {len(shards)} shards, "
                    f"shard_bp={shard_bp}. Use the original settings or a new output directory."
                )
            return
        storage.makedirs(self.dir)
        with storage.atomic_write(path) as fh:
            json.dump({"fingerprint": fp, "n_shards": len(shards), "shard_bp": shard_bp}, fh)

    def mark_done(self, shard: Shard, *, n_sites: int, seconds: float, checksum: str | None = None, **extra) -> dict:
        """Record ``shard`` as finished (call after its output is fully written).

        Parameters
        ----------
        shard
            The finished shard.
        n_sites
            Sites scored in it.
        seconds
            Wall-clock seconds it took.
        checksum
            Optional checksum of its output (e.g. SHA-256 hex of the file).
        **extra
            Further JSON-serialisable fields to keep in the marker.

        Returns
        -------
        dict
            The marker's content: ``shard``, ``chrom``, ``start``, ``end``, ``n_sites``,
            ``seconds``, ``checksum`` and ``extra``'s fields.
        """
        record = {
            "shard": shard.id,
            "chrom": shard.chrom,
            "start": shard.start,
            "end": shard.end,
            "n_sites": int(n_sites),
            "seconds": round(float(seconds), 3),
            "checksum": checksum,
            **extra,
        }
        storage.makedirs(self.dir)
        with storage.atomic_write(self.marker_path(shard)) as fh:
            json.dump(record, fh)
        return record

    def done_ids(self) -> set[str]:
        """Ids of the shards with a marker (read fresh from storage on every call)."""
        fs, p = storage.filesystem(self.dir)
        fs.invalidate_cache(p)  # s3fs caches listings; another process may have added markers
        try:
            names = fs.ls(p, detail=False)
        except FileNotFoundError:
            return set()
        out = set()
        for name in names:
            base = str(name).rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(DONE_SUFFIX):  # skips _plan.json and in-flight .tmp-* files
                out.add(unquote(base[: -len(DONE_SUFFIX)]))
        return out

    def is_done(self, shard: Shard) -> bool:
        """Whether ``shard`` has a marker."""
        return storage.exists(self.marker_path(shard))

    def record(self, shard: Shard) -> dict | None:
        """The marker content of ``shard``, or None if it is not done."""
        path = self.marker_path(shard)
        return self._read_json(path) if storage.exists(path) else None

    def done(self, shards: list[Shard]) -> list[Shard]:
        """The shards of ``shards`` that are finished, in plan order."""
        ids = self.done_ids()
        return [s for s in shards if s.id in ids]

    def missing(self, shards: list[Shard]) -> list[Shard]:
        """The shards of ``shards`` still to do, in plan order."""
        ids = self.done_ids()
        return [s for s in shards if s.id not in ids]

    def forget(self, shard: Shard) -> None:
        """Remove a shard's marker (to redo it); no-op if absent."""
        path = self.marker_path(shard)
        if storage.exists(path):
            fs, p = storage.filesystem(path)
            fs.rm(p)

    @staticmethod
    def _read_json(path: str) -> dict:
        fs, p = storage.filesystem(path)
        try:
            with fs.open(p, "r") as fh:
                return json.load(fh)
        except json.JSONDecodeError as exc:
            raise MethrayError(f"{path}: corrupt ledger file ({exc})") from exc
