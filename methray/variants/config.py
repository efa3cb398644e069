"""The variant-effect job's config (``methray variants --vcf FILE --checkpoint DIR [--config FILE]``).

Example::

    run_name: 1000g
    data_dir: ../shared/data/hg19_chr22      # base of a relative reference / vcf
    out_dir: runs/variants                   # outputs under <out_dir>/<run_name>/
    reference: chr22.fa
    vcf: 1000g_phase1_chr22.vcf.gz
    checkpoints:
      - {name: imr90, checkpoint: runs/demo/checkpoint}
    chunk_bp: 1000000
    score: {actors: 1, cpus_per_actor: 1, batch_size: 1024}

Every key can also be given with ``--set key=value``; ``--vcf``, ``--checkpoint`` and
``--out`` set ``vcf``, ``checkpoints`` and ``out_dir``. Relative ``reference`` and ``vcf``
are resolved against ``data_dir``, relative ``checkpoint`` and ``out_dir`` against the
current directory.
"""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from .. import storage
from ..config import JobConfig, Section, file_safe_name, load_job_config, read_config_data, resolve_path, unique_names


class ModelEntry(Section):
    """One model to score the variants with."""

    name: str = Field(description="label of the model in the outputs (column `model`)")
    checkpoint: str = Field(description="methray checkpoint directory (model.pt + meta.json)")

    @field_validator("name")
    @classmethod
    def _file_safe(cls, v: str) -> str:
        return file_safe_name(v, "model name")


class VariantsConfig(JobConfig):
    """A variant-effect job (the common header of :class:`methray.config.JobConfig` plus the
    VCF and the models). The VCF is local (read with htslib through cyvcf2)."""

    run_name: str = "variants"
    out_dir: str = "runs/variants"
    vcf: str
    checkpoints: list[ModelEntry]
    chunk_bp: int = Field(1_000_000, ge=1, description="chunk (resumable unit) length in bp, for indexed VCFs")
    max_ref_mismatch_fraction: float = Field(
        0.01, ge=0, le=1, description="fail when more allele rows (not on N) have a REF that differs from the reference"
    )
    min_abs_delta: float = Field(0.01, ge=0, description="|delta| from which a CpG counts as affected in the summary")

    @field_validator("checkpoints")
    @classmethod
    def _unique(cls, v):
        unique_names([m.name for m in v], "checkpoint")
        return v

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        """``vcf`` against ``data_dir``; checkpoints (run outputs) against the current directory."""
        self.vcf = resolve_path(self.vcf, data_dir)
        for m in self.checkpoints:
            m.checkpoint = resolve_path(m.checkpoint, cwd)

    @property
    def prefix(self) -> str:
        """Output prefix ``<out_dir>/<run_name>``."""
        return storage.join(self.out_dir, self.run_name)


def parse_checkpoint_arg(arg: str) -> dict:
    """``NAME=DIR`` or ``DIR`` (name: the checkpoint's folder above ``checkpoint/``) -> a model entry."""
    if "=" in arg:
        name, path = arg.split("=", 1)
    else:
        path = arg
        parent = os.path.basename(os.path.normpath(path))
        name = os.path.basename(os.path.dirname(os.path.normpath(path))) if parent == "checkpoint" else parent
    return {"name": name, "checkpoint": path}


def load_variants_config(
    path: str | None = None,
    overrides: list[str] | None = None,
    *,
    vcf: str | None = None,
    checkpoints: list[str] | None = None,
    out: str | None = None,
    data: dict | None = None,
) -> VariantsConfig:
    """Load, validate and resolve a variants config (file optional: the CLI options may suffice).

    Raises
    ------
    MethrayError
        YAML error, unknown key, wrong type, or a missing required key (``reference``,
        ``vcf``, ``checkpoints``).
    """
    raw = read_config_data(path, overrides, data) if (path or data is not None) else read_config_data(None, overrides, {})
    # Paths given on the command line are relative to the current directory, like any CLI path.
    if vcf:
        raw["vcf"] = os.path.abspath(vcf)
    if checkpoints:
        raw["checkpoints"] = [parse_checkpoint_arg(c) for c in checkpoints]
    if out:
        raw["out_dir"] = out
    return load_job_config(VariantsConfig, path, None, raw)
