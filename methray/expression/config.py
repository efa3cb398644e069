"""The ``methray expression`` job config (one YAML file; ``methray/configs/expression.yaml``).

Relative input paths are resolved against ``data_dir``; ``data_dir`` and ``out_dir`` against
the current directory. Every key, its default and its meaning are in the README section
"Gene expression from methylation".
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..config import JobConfig, Section, load_job_config, resolve_path
from ..errors import MethrayError

MODELS = ("deepmethygene", "elasticnet", "random_forest", "svr", "mean")
"""Model names of the job, in the order of the tables; ``deepmethygene`` is compared to the rest."""


class InputsConfig(Section):
    """Input files (TSV, optionally gzipped); see ``../shared/data/tcga_coad_chr21/README``."""

    methylation: str = Field(description="beta values, probes x samples; first column the probe id")
    expression: str = Field(description="log2 expression, genes x samples; first column the Ensembl gene id")
    probe_genes: str = Field(description="probe -> gene symbol (columns probe, gene_symbol)")
    genes: str = Field(description="gene table with ensembl_gene_id and gene_symbol columns")
    samples: str | None = Field(None, description="sample sheet (sample, patient, sample_type); needed for cv.group_by / cv.stratify_by")


class FeaturesConfig(Section):
    eps: float = Field(1e-3, gt=0, lt=0.5, description="beta clipped to [eps, 1 - eps] before M = log2(beta / (1 - beta))")
    missing: Literal["impute_train_mean", "drop_probe"] = Field(
        "impute_train_mean",
        description="impute_train_mean: a missing M-value becomes its probe's mean over the training samples of the fold; "
        "drop_probe: probes with any missing value are dropped before gene selection",
    )


class GenesConfig(Section):
    min_cpgs: int = Field(20, ge=1, description="genes need at least this many probes; below 20 deepmethygene's channel counts are clamped to 1")
    include: list[str] | None = Field(None, description="keep only these genes (symbols or Ensembl ids), for quick runs")
    max_genes: int | None = Field(None, ge=1, description="keep the first N eligible genes (by Ensembl id), for quick runs")


class CVConfig(Section):
    n_folds: int = Field(5, ge=2, description="k of k-fold cross-validation over samples (5 as the paper)")
    seed: int = 0
    group_by: str | None = Field("patient", description="samples-sheet column whose samples stay in one fold (null: plain sample folds)")
    stratify_by: str | None = Field("sample_type", description="samples-sheet column balanced across folds (null: none)")


class DeepMethyGeneConfig(Section):
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (paper: 1e-3)")
    max_epochs: int = Field(700, ge=1, description="paper: 700")
    patience: int = Field(90, ge=1, description="early stopping on the inner validation loss (paper: 90)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="inner validation split, drawn from the training part of each fold")
    weight_decay: float = Field(0.0, ge=0)


class ElasticNetConfig(Section):
    l1_ratio: list[float] = [0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0]
    n_alphas: int = Field(100, ge=1)
    inner_folds: int = Field(5, ge=2, description="inner CV (grouped like cv.group_by) choosing alpha and l1_ratio")
    max_iter: int = Field(10000, ge=1)


class RandomForestConfig(Section):
    n_estimators: int = Field(500, ge=1)
    max_features: float | Literal["sqrt", "log2"] = Field(1.0, description="as scikit-learn (1.0 = all features)")
    min_samples_leaf: int = Field(1, ge=1)


class SVRConfig(Section):
    C: float = Field(1.0, gt=0)
    epsilon: float = Field(0.1, ge=0, description="in units of the training-fold standard deviation of the target")
    gamma: float | Literal["scale", "auto"] = "scale"


class ComputeConfig(Section):
    genes_per_task: int = Field(4, ge=1, description="genes per Ray task (one task = these genes x all folds x one model)")
    cpus_per_task: float = Field(1.0, gt=0, description="Ray CPUs per task (fractions allowed); torch uses 1 thread per task")
    use_gpu: bool | Literal["auto"] = Field("auto", description="deepmethygene tasks on GPUs when the cluster has them")
    gpus_per_task: float = Field(0.25, gt=0, le=1, description="GPU fraction per deepmethygene task when on GPU")


class ExpressionConfig(JobConfig):
    """A gene-expression-from-methylation run (``methray expression``).

    The header (run_name, data_dir, out_dir, genome, ray, s3, :meth:`path`) is the common
    :class:`methray.config.JobConfig`; this job reads no reference genome (``reference`` is
    optional and unused). Paths may be local or ``s3://``.
    """

    run_name: str = "expression"
    out_dir: str = Field("runs/expression", description="run directory (resolved against the current directory)")
    reference: str | None = Field(None, description="unused: the job reads no genome sequence")
    inputs: InputsConfig
    features: FeaturesConfig = FeaturesConfig()
    genes: GenesConfig = GenesConfig()
    cv: CVConfig = CVConfig()
    models: list[str] = Field(default_factory=lambda: list(MODELS), description="models to run (deepmethygene first)")
    final_models: list[str] = Field(default_factory=lambda: ["deepmethygene"], description="models also fitted on all samples and saved for prediction")
    seed: int = Field(0, description="base seed of the models (each unit's seed is derived from it, the gene and the fold)")
    deepmethygene: DeepMethyGeneConfig = DeepMethyGeneConfig()
    elasticnet: ElasticNetConfig = ElasticNetConfig()
    random_forest: RandomForestConfig = RandomForestConfig()
    svr: SVRConfig = SVRConfig()
    compute: ComputeConfig = ComputeConfig()

    @field_validator("models", "final_models")
    @classmethod
    def _known_models(cls, v):
        bad = [m for m in v if m not in MODELS]
        if bad:
            raise ValueError(f"unknown model(s) {bad}; expected some of {list(MODELS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"models listed twice: {v}")
        return v

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        for key in ("methylation", "expression", "probe_genes", "genes", "samples"):
            setattr(self.inputs, key, resolve_path(getattr(self.inputs, key), data_dir))

    def check(self) -> None:
        not_run = [m for m in self.final_models if m not in self.models]
        if not_run:
            raise MethrayError(f"final_models: {not_run} not in models {self.models}")
        if (self.cv.group_by or self.cv.stratify_by) and not self.inputs.samples:
            raise MethrayError("cv.group_by / cv.stratify_by need inputs.samples (or set them to null)")

    def model_settings(self, model: str) -> dict:
        """The settings that change a model's results (its section, the seed, features, folds)."""
        section = getattr(self, model, None)
        return {
            "model": model,
            "params": section.model_dump(mode="json") if section is not None else {},
            "seed": self.seed,
            "features": self.features.model_dump(mode="json"),
            "cv": self.cv.model_dump(mode="json"),
            "final": model in self.final_models,
        }


def load_expression_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> ExpressionConfig:
    """:func:`methray.config.load_job_config` for an :class:`ExpressionConfig`.

    Raises
    ------
    MethrayError
        Missing file, bad YAML, unknown key, wrong type, a final model that is not run, or
        ``cv.group_by`` / ``cv.stratify_by`` without ``inputs.samples``.
    """
    return load_job_config(ExpressionConfig, path, overrides, data)
