"""The regulatory job's config (``methray regulatory --config FILE``): a :class:`~methray.config.JobConfig`
with the label, split, model, budget, evaluation and genome-scan sections.

Relative input paths (reference, peaks, sites) are resolved against ``data_dir``, ``data_dir``
and ``out_dir`` against the current directory.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from .. import models
from ..budget import Budget
from ..config import JobConfig, Section, TrainConfig, load_job_config, resolve_path
from ..errors import MethrayError
from ..regions import parse_region
from .labels import LabelSpec


class LabelsConfig(LabelSpec):
    """The ``labels`` section: a :class:`~methray.regulatory.labels.LabelSpec` with DeepGMAP's
    defaults, and the classes to train on."""

    stride: int = Field(300, ge=1, description="grid step, bp (DeepGMAP: 300)")
    negative_fraction: float = Field(0.25, gt=0, le=1, description="all-zero windows kept (DeepGMAP: 0.25)")
    classes: list[str] | None = Field(None, description="keep only these classes (default all)")


class RegSplitConfig(Section):
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    inside_windows: int = Field(300, ge=1, description="windows of the inside-training block")
    gap: int = Field(1000, ge=0, description="bp kept free around held-out blocks")
    seed: int = 0


class EvaluateConfig(Section):
    rc_average: bool = Field(True, description="average sigmoid outputs of the window and its reverse complement (DanQ)")


class OverfitConfig(Section):
    strides: list[int] = [100, 300, 500]
    models: list[str] | None = Field(None, description="default: all models")


class GenomeConfig(Section):
    model: str | None = Field(None, description="checkpoint to score with (default: the first model)")
    region: str | None = Field(None, description="chrom:start-end (0-based half-open) to score; default every chosen contig")
    stride: int | None = Field(None, ge=1, description="default: labels.stride")
    rc_average: bool = False

    @field_validator("region")
    @classmethod
    def _region(cls, v):
        if v is not None:
            parse_region(v)
        return v


class RegulatoryConfig(JobConfig):
    """A regulatory-element run (``methray regulatory``). Paths may be local or ``s3://``."""

    run_name: str = "regulatory"
    out_dir: str = "runs/regulatory"
    labels: LabelsConfig
    split: RegSplitConfig = RegSplitConfig()
    models: list[str] = ["conv4_frss", "deepsea"]
    model_params: dict[str, dict] = Field(default_factory=dict, description="model name -> constructor overrides")
    train: TrainConfig = TrainConfig()
    budget: Budget = Budget()
    evaluate: EvaluateConfig = EvaluateConfig()
    overfit: OverfitConfig = OverfitConfig()
    genome_scan: GenomeConfig = GenomeConfig()

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        self.labels.peaks = {k: resolve_path(v, data_dir) for k, v in self.labels.peaks.items()}
        self.labels.sites = [resolve_path(s, data_dir) for s in self.labels.sites]

    def check(self) -> None:
        for name in set(self.models) | set(self.overfit.models or []) | ({self.genome_scan.model} - {None}):
            if models.get(name).window is None:
                raise MethrayError(f"model {name!r} is not a sequence model")

    def labels_dir(self, stride: int) -> str:
        return self.path("labels", f"stride{stride}")

    def model_dir(self, model: str, stride: int) -> str:
        return self.path("models", f"{model}.s{stride}")


def load_regulatory_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> RegulatoryConfig:
    """Load and validate a regulatory run config (as :func:`methray.config.load_config`).

    Relative input paths (reference, peaks, sites) are resolved against ``data_dir``,
    ``data_dir`` and ``out_dir`` against the current directory.

    Raises
    ------
    MethrayError
        Missing file, bad YAML, an unknown key or a value of the wrong type, an unknown model.
    """
    return load_job_config(RegulatoryConfig, path, overrides, data)


def budget_line(cfg: RegulatoryConfig) -> str:
    """One line stating the compute budget the metrics were obtained under."""
    b, t = cfg.budget, cfg.train
    epochs = min(t.epochs, b.epochs or t.epochs)
    per_model = "".join(f"; {m} train windows <= {n}" for m, n in b.max_train_per_model.items())
    return (
        f"budget: {b.name}; negatives kept {cfg.labels.negative_fraction:g}; train windows <= {b.max_train or 'all'}; "
        f"val windows <= {b.max_val or 'all'}; eval windows per region <= {b.max_eval or 'all'}; "
        f"{per_model[2:] + '; ' if per_model else ''}epochs {epochs}; batch {t.batch_size}; lr {t.lr if t.lr else 'model default'}; rc_augment {t.rc_augment}; rc_average {cfg.evaluate.rc_average}"
    )


