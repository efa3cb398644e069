"""The run configuration: one YAML file describes a run.

Loading validates every key (unknown keys are errors, so typos do not pass silently),
applies ``--set section.key=value`` overrides, and resolves relative local paths against
``data_dir`` (inputs) or the current directory (``out_dir``). The resolved config is written
into the run's output directory as ``config.yaml``.

See the README section "Configuration" for every key and its default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import storage
from .errors import MethrayError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TissueConfig(_Section):
    """One tissue's measured methylation file."""

    name: str
    path: str
    format: Literal["bismark_cov", "bedgraph"] | None = None  # None = from the file name


class PrepareConfig(_Section):
    min_coverage: int = Field(5, ge=1, description="reads a CpG needs (both strands merged)")
    max_non_cpg_fraction: float = Field(0.01, ge=0, le=1, description="fail above this fraction of sites that are not CpGs of the reference")
    rows_per_file: int = Field(32768, ge=1024, description="Parquet rows per file (Ray Data reads one block per file)")


class SplitConfig(_Section):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_blocks: int = Field(10, ge=3, description="contiguous blocks per chromosome when there is one chromosome")
    gap_bp: int = Field(1001, ge=0, description="train sites closer than this to a held-out site are dropped (>= window length)")
    val_chroms: list[str] = []
    test_chroms: list[str] = []
    seed: int = 0


class ModelConfig(_Section):
    name: str = "mrcnn"
    task: Literal["methylation", "multilabel"] = "methylation"
    window_length: int | None = None
    n_outputs: int | None = None
    params: dict = {}


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"
    max_train_sites: int | None = Field(None, ge=1, description="cap on training sites (evenly spaced), for quick runs")
    shuffle_buffer: int = Field(20000, ge=0)
    rc_augment: bool = Field(False, description="train on a random half of windows reverse-complemented")
    seed: int = 0


class ScoreConfig(_Section):
    batch_size: int = Field(1024, ge=1)
    actors: int = Field(1, ge=1)
    cpus_per_actor: float = Field(1, gt=0)
    gpus_per_actor: float = Field(0, ge=0, description="0 = CPU; set 1 (or a fraction) on GPU clusters")


class RayConfig(_Section):
    address: str | None = None  # None: RAY_ADDRESS, then a running `ray start`, else embedded
    num_cpus: int | None = None  # embedded Ray only


class S3Config(_Section):
    endpoint_url: str | None = None
    region: str | None = None


class RunConfig(_Section):
    """A whole run. Paths may be local or ``s3://``."""

    run_name: str = "run"
    data_dir: str = "."
    out_dir: str = "runs/run"
    genome: str = "hg19"
    reference: str
    cpg_islands: str | None = None
    tissues: list[TissueConfig]
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    score: ScoreConfig = ScoreConfig()
    ray: RayConfig = RayConfig()
    s3: S3Config = S3Config()

    @field_validator("tissues")
    @classmethod
    def _unique_tissues(cls, v):
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"tissue names must be unique, got {names}")
        return v

    # Derived locations inside the run directory.
    def path(self, *parts: str) -> str:
        return storage.join(self.out_dir, *parts)

    @property
    def cpg_table(self) -> str:
        return self.path("cpg_table")

    @property
    def checkpoint_dir(self) -> str:
        return self.path("checkpoint")


def _set_dotted(data: dict, key: str, value) -> None:
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise MethrayError(f"--set {key}: {p} is not a section")
    node[parts[-1]] = value


def _resolve(path: str | None, base: str) -> str | None:
    if path is None or storage.is_remote(path) or os.path.isabs(path):
        return path
    if storage.is_remote(base):  # data_dir: s3://bucket/prefix
        return storage.join(base, path)
    return os.path.normpath(os.path.join(base, path))


def load_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> RunConfig:
    """Load and validate a run config.

    Parameters
    ----------
    path
        YAML file (local or ``s3://``); or None with ``data``.
    overrides
        ``section.key=value`` strings; values are parsed as YAML (``train.epochs=2``).
    data
        A config as a dict (used instead of reading ``path``).

    Raises
    ------
    MethrayError
        Missing file, YAML syntax error, or a key that is unknown / of the wrong type.
    """
    if data is None:
        if path is None:
            raise MethrayError("no config given (--config FILE)")
        if not storage.exists(path):
            raise MethrayError(f"{path}: config file not found")
        fs, p = storage.filesystem(path)
        try:
            with fs.open(p, "r") as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise MethrayError(f"{path}: not valid YAML ({exc})") from exc
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise MethrayError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(value))
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise MethrayError(f"{path or 'config'}: {loc}: {err['msg']}") from None
    base = cfg.data_dir
    cfg.reference = _resolve(cfg.reference, base)
    cfg.cpg_islands = _resolve(cfg.cpg_islands, base)
    for t in cfg.tissues:
        t.path = _resolve(t.path, base)
    cfg.out_dir = _resolve(cfg.out_dir, os.getcwd())
    cfg.data_dir = _resolve(cfg.data_dir, os.getcwd())
    return cfg


def save_config(cfg: RunConfig, path: str) -> None:
    """Write the resolved config as YAML (atomically). Contains no credentials."""
    with storage.atomic_write(path) as fh:
        yaml.safe_dump(cfg.model_dump(mode="json"), fh, sort_keys=False)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with methray (``methray/configs/<name>.yaml``)."""
    return Path(__file__).parent / "configs" / f"{name}.yaml"
