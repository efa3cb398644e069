"""Reading a VCF (plain, bgzipped, bgzipped + tabix / CSI index) with cyvcf2, one chunk at a time.

Conventions
-----------
- VCF ``POS`` is 1-based; methray positions are 0-based (``pos = POS - 1``). Both are kept
  in the outputs (``pos``, ``vcf_pos``).
- Multi-allelic records are split: one *allele row* per ALT, with ``allele`` its 1-based
  index in the ALT column. Counts ("read") are of records; every other count is of allele rows.
- Contig names are mapped to the reference's (:func:`map_contigs`): exact name, else
  ``chr`` added or removed (``22`` -> ``chr22``), ``MT`` <-> ``chrM``; a mapping must be
  unambiguous. Records on contigs that do not map are counted, not scored.
- Each allele row gets a ``status``:

  ``snv``
      REF and ALT single bases A/C/G/T and REF equal to the reference base: scored.
  ``on_n``
      the reference is N (or another non-ACGT code) anywhere under REF: counted, not scored
      (the model has no sequence there). Checked before the REF comparison.
  ``ref_mismatch``
      REF differs from the reference (case-insensitive), or runs past the contig end:
      counted and dropped; above ``max_ref_mismatch_fraction`` of the rows not on N the job
      fails (wrong assembly or a VCF not normalised to this reference).
  ``indel``
      REF and ALT of different lengths, or multi-base substitutions (MNPs): counted and
      skipped (see the README, "Variant effects": indels change every window coordinate
      downstream and are not scored by this version).
  ``symbolic``
      ALT not made of A/C/G/T (``<DEL>``, ``*``, ``.``, breakends, IUPAC): counted, skipped.

The tabix index is used when present (``.tbi`` or ``.csi`` beside the file): a chunk is a
region query and holds the records whose ``POS`` lies in it (a deletion spanning a chunk
border belongs to the chunk of its ``POS`` only). Without an index a chunk is a whole contig,
read by scanning the file once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..encoding import BASE_CODES, N_CODE
from ..errors import MethrayError

STATUSES = ("snv", "on_n", "ref_mismatch", "indel", "symbolic")
"""Allele-row statuses, in the order reports list them."""

ALLELE_COLUMNS = ("chrom", "pos", "vcf_pos", "id", "ref", "alt", "allele", "filter", "status")


def open_vcf(path: str):
    """Open a VCF with cyvcf2 (genotypes are not parsed).

    Raises
    ------
    MethrayError
        Missing file or not a VCF.
    """
    from cyvcf2 import VCF

    if not os.path.exists(path):
        raise MethrayError(f"{path}: VCF not found")
    try:
        return VCF(path, lazy=True, threads=1)
    except (OSError, Exception) as exc:  # cyvcf2 raises plain Exception for a bad header
        raise MethrayError(f"{path}: cannot read as a VCF ({exc})") from None


def has_index(path: str) -> bool:
    """Whether a tabix (``.tbi``) or CSI (``.csi``) index lies beside ``path``."""
    return os.path.exists(path + ".tbi") or os.path.exists(path + ".csi")


def vcf_contigs(path: str) -> list[str]:
    """Contig names of a VCF, in file order.

    From the index when there is one (the contigs that hold records), else from the header's
    ``##contig`` lines, else by scanning the records.
    """
    vcf = open_vcf(path)
    try:
        names = list(vcf.seqnames)
    except Exception:  # no index and no ##contig lines
        names = []
    if not names:
        seen: dict[str, None] = {}
        for rec in vcf:
            seen.setdefault(rec.CHROM, None)
        names = list(seen)
    vcf.close()
    return names


def map_contigs(vcf_names: list[str], ref_names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map VCF contig names onto reference contig names.

    Rule: the exact name if the reference has it; else the name with ``chr`` added, or with a
    leading ``chr`` removed (``22`` -> ``chr22``, ``chrX`` -> ``X``); ``MT`` / ``M`` <->
    ``chrM`` / ``MT``. A candidate is used only if exactly one reference contig matches.

    Returns
    -------
    (dict, list)
        ``{vcf name: reference name}`` for the contigs that map, and the VCF names that do not.

    Raises
    ------
    MethrayError
        Two VCF contigs map onto the same reference contig (e.g. both ``22`` and ``chr22``).
    """
    refs = set(ref_names)
    mapping: dict[str, str] = {}
    unmapped: list[str] = []
    for name in vcf_names:
        if name in refs:
            mapping[name] = name
            continue
        bare = name[3:] if name.lower().startswith("chr") else name
        cands = {f"chr{bare}", bare}
        if bare.upper() in ("M", "MT"):
            cands |= {"chrM", "chrMT", "MT", "M"}
        hits = sorted(c for c in cands if c in refs)
        if len(hits) == 1:
            mapping[name] = hits[0]
        else:
            unmapped.append(name)
    targets = list(mapping.values())
    dup = {t for t in targets if targets.count(t) > 1}
    if dup:
        t = sorted(dup)[0]
        both = [v for v, r in mapping.items() if r == t]
        raise MethrayError(f"VCF contigs {both} all map onto reference contig {t!r}; keep one naming")
    return mapping, unmapped


def _is_acgt(s: str) -> bool:
    return bool(s) and all(ch in "ACGTacgt" for ch in s)


def classify(ref: str, alt: str, contig_codes: np.ndarray, pos: int) -> str:
    """The status of one allele row (see the module docstring).

    Parameters
    ----------
    ref, alt
        REF and one ALT allele as written in the VCF.
    contig_codes
        The reference contig as base codes, ``(size,) uint8`` (:meth:`Reference.contig_codes`).
    pos
        0-based position of REF's first base.
    """
    if not _is_acgt(alt) or not _is_acgt(ref):
        return "symbolic"
    end = pos + len(ref)
    if pos < 0 or end > len(contig_codes):
        return "ref_mismatch"
    ref_codes = contig_codes[pos:end]
    if (ref_codes == N_CODE).any():
        return "on_n"
    vcf_codes = BASE_CODES[np.frombuffer(ref.encode("ascii"), np.uint8)]
    if not np.array_equal(vcf_codes, ref_codes):
        return "ref_mismatch"
    if len(ref) != 1 or len(alt) != 1:
        return "indel"
    return "snv"


@dataclass(frozen=True)
class Chunk:
    """A piece of a VCF to read: records on ``vcf_chrom`` with 0-based ``start <= pos < end``."""

    vcf_chrom: str
    chrom: str
    start: int
    end: int


def read_chunk(path: str, chunk: Chunk, contig_codes: np.ndarray, indexed: bool) -> tuple[pd.DataFrame, int]:
    """Read one chunk's records, split multi-allelic ones and classify each allele row.

    Parameters
    ----------
    path
        The VCF.
    chunk
        Which records (contig and 0-based half-open position range).
    contig_codes
        The reference contig ``chunk.chrom`` as base codes, ``(size,) uint8``.
    indexed
        Use a region query (tabix / CSI); else scan the whole file for ``chunk.vcf_chrom``.

    Returns
    -------
    (pd.DataFrame, int)
        Allele rows with :data:`ALLELE_COLUMNS` (``chrom`` is the reference's name, ``pos``
        0-based int64, ``vcf_pos`` 1-based, ``filter`` ``PASS`` when the FILTER column is
        PASS or ``.``), in file order; and the number of records read.
    """
    vcf = open_vcf(path)
    records = vcf(f"{chunk.vcf_chrom}:{chunk.start + 1}-{chunk.end}") if indexed else vcf
    rows: dict[str, list] = {k: [] for k in ALLELE_COLUMNS}
    n_records = 0
    for rec in records:
        if rec.CHROM != chunk.vcf_chrom:
            continue
        pos = rec.POS - 1
        if not chunk.start <= pos < chunk.end:  # region queries also return overlapping records
            continue
        n_records += 1
        ref = rec.REF
        flt = rec.FILTER or "PASS"
        alts = rec.ALT or ["."]
        for i, alt in enumerate(alts, start=1):
            rows["chrom"].append(chunk.chrom)
            rows["pos"].append(pos)
            rows["vcf_pos"].append(rec.POS)
            rows["id"].append(rec.ID or ".")
            rows["ref"].append(ref)
            rows["alt"].append(alt)
            rows["allele"].append(i)
            rows["filter"].append(flt)
            rows["status"].append(classify(ref, alt, contig_codes, pos))
    vcf.close()
    df = pd.DataFrame(rows)
    df["pos"] = df["pos"].astype(np.int64)
    df["vcf_pos"] = df["vcf_pos"].astype(np.int64)
    df["allele"] = df["allele"].astype(np.int16)
    return df, n_records


def count_records(path: str, vcf_chrom: str, indexed: bool) -> int:
    """Number of records on one VCF contig (for contigs that do not map to the reference)."""
    import warnings

    vcf = open_vcf(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # htslib warns about header contigs without records
        it = vcf(vcf_chrom) if indexed else vcf
        n = sum(1 for rec in it if rec.CHROM == vcf_chrom)
    vcf.close()
    return n
