"""The tissue-set config of genome-wide scoring (``methray score-genome --config FILE``).

A tissue set is a list of (tissue name, trained checkpoint) pairs, each optionally with the
tissue's measured methylation (and per-donor betas) for the metric tables. Every CpG of the
reference (or of ``chroms`` / ``regions``) is scored with every checkpoint of the set.

Example (``methray/configs/tissue_set.yaml``)::

    run_name: chr22-imr90-saliva
    data_dir: ../shared/data/hg19_chr22     # inputs: reference, cpg_islands, measured, donors
    out_dir: runs/genome                    # outputs under <out_dir>/<run_name>[/<date>]/
    reference: chr22.fa
    cpg_islands: cpg_islands.bed
    shard_bp: 5000000
    tissues:
      - name: imr90
        checkpoint: runs/demo/checkpoint    # run outputs: resolved against the current directory
        measured: imr90_wgbs.bismark.cov.gz
        format: bismark_cov
      - name: saliva
        checkpoint: runs/saliva/checkpoint
        measured: saliva_bisulfite_mean.bedGraph.gz
        donors: saliva_bisulfite_beta.tsv.gz
    score: {actors: 2, cpus_per_actor: 0.5, batch_size: 1024}

Unknown keys are errors. Paths may be local or ``s3://``. Relative ``reference``,
``cpg_islands``, ``measured`` and ``donors`` are resolved against ``data_dir``; relative
``checkpoint``, ``split_regions``, ``cpg_table``, ``out_dir`` and ``data_dir`` against the
current directory.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .. import storage
from ..config import JobConfig, MethylationFormat, Section, file_safe_name, load_job_config, resolve_path, unique_names
from ..errors import MethrayError
from ..regions import parse_region
from ..shards import DEFAULT_SHARD_BP



class SetTissue(Section):
    """One (tissue, model) pair of the set."""

    name: str = Field(description="tissue name: output file names and table rows")
    checkpoint: str = Field(description="methray checkpoint directory (model.pt + meta.json)")
    measured: str | None = Field(None, description="measured methylation of this tissue (Bismark coverage or bedGraph)")
    format: MethylationFormat | None = Field(None, description="format of `measured`; None = recognised from the content")
    donors: str | None = Field(None, description="per-donor beta TSV: chrom, start (0-based), end, one column per donor")
    split_regions: str | None = Field(
        None, description="the model's train/val/test regions; default <checkpoint>/../split_regions.tsv"
    )

    @field_validator("name")
    @classmethod
    def _file_safe(cls, v: str) -> str:
        return file_safe_name(v, "tissue name")


class TissueSetConfig(JobConfig):
    """A genome-wide scoring job. Paths may be local or ``s3://``."""

    run_name: str = "genome"
    out_dir: str = "runs/genome"
    cpg_islands: str | None = None
    cpg_table: str | None = Field(None, description="a CpG table from `methray cpgs`; default: enumerated into <prefix>/cpgs")
    max_n_fraction: float = Field(0.5, ge=0, le=1, description="skip CpGs whose 1001 bp window has more N than this")
    chroms: list[str] | None = Field(None, description="contigs to score (default all)")
    regions: list[str] | None = Field(None, description="score only these 0-based half-open intervals, chrom:start-end")
    shard_bp: int = Field(DEFAULT_SHARD_BP, ge=1, description="shard (resumable unit) length in bp")
    min_coverage: int = Field(5, ge=1, description="reads a measured CpG needs (count-free bedGraphs: not applied)")
    plot_region_bp: int = Field(50_000, ge=1000, description="width of the genome-browser panel of the plot")
    tissues: list[SetTissue]

    @field_validator("tissues")
    @classmethod
    def _unique(cls, v):
        unique_names([t.name for t in v], "tissue")
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v):
        for r in v or []:
            parse_region(r)
        return v

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        # measured data beside the reference; run outputs (checkpoints, tables) from the cwd
        self.cpg_islands = resolve_path(self.cpg_islands, data_dir)
        for t in self.tissues:
            t.measured = resolve_path(t.measured, data_dir)
            t.donors = resolve_path(t.donors, data_dir)
            t.checkpoint = resolve_path(t.checkpoint, cwd)
            t.split_regions = resolve_path(t.split_regions, cwd)
        self.cpg_table = resolve_path(self.cpg_table, cwd)

    def prefix(self, date: str | None = None) -> str:
        """Output prefix ``<out_dir>/<run_name>[/<date>]``."""
        parts = [self.run_name] + ([date] if date else [])
        return storage.join(self.out_dir, *parts)

    def parsed_regions(self) -> list[tuple[str, int, int]] | None:
        """``regions`` as ``(chrom, start, end)`` tuples (0-based half-open), or None."""
        return None if self.regions is None else [parse_region(r) for r in self.regions]


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def load_tissue_set(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> TissueSetConfig:
    """Load, validate and resolve a tissue-set config (see the module docstring).

    Raises
    ------
    MethrayError
        Missing file, YAML error, unknown key or wrong type (file and key named).
    """
    return load_job_config(TissueSetConfig, path, overrides, data)


def check_date(date: str | None) -> str | None:
    """Validate a ``--date`` (``YYYY-MM-DD``); returns it unchanged."""
    if date is not None and not DATE_RE.match(date):
        raise MethrayError(f"--date {date!r}: expected YYYY-MM-DD (e.g. $(date -u +%F))")
    return date
