"""Job configuration: one YAML file describes a job.

Every job's config extends :class:`JobConfig`, the common header (``run_name``, ``data_dir``,
``out_dir``, ``genome``, ``reference``, the ``score``, ``ray`` and ``s3`` sections) and is
loaded by :func:`load_job_config`: every key is validated (unknown keys are errors, so typos
do not pass silently), ``--set section.key=value`` overrides are applied, and relative local
paths are resolved: ``data_dir`` and ``out_dir`` against the current directory, input files
against ``data_dir``. Resolution makes every local path absolute, so the resolved config that
a run saves (``config.yaml`` in its run directory) loads again to the same paths from any
working directory.

:class:`RunConfig` is the config of one run (prepare -> train -> score -> evaluate). See the
README section "Configuration" for every key and its default.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import storage
from .errors import MethrayError


class Section(BaseModel):
    """Base of every config section and job config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


MethylationFormat = Literal["bismark_cov", "bismark_report", "bedmethyl", "methyldackel", "cgmap", "allc", "bsmap", "bedgraph"]


class TissueConfig(Section):
    """One tissue's measured methylation file and how to read it (README "Input formats")."""

    name: str
    path: str
    format: MethylationFormat | None = Field(None, description="None = recognised from the file's content")
    value_scale: Literal["percent", "fraction"] = Field("percent", description="scale of the % column (bismark_cov, methyldackel, bedmethyl, bedgraph)")
    match_contig_names: bool = Field(True, description="map 22 <-> chr22 and MT <-> chrM when unambiguous (reported)")
    contig_map: dict[str, str] = Field({}, description="explicit file contig -> reference contig names; wins over matching")
    duplicates: Literal["error", "sum"] = Field("error", description="the same site and strand twice: error naming both lines, or add the counts")
    modkit_5hmc: Literal["drop", "add"] = Field("drop", description="modkit h rows are dropped; add: 5hmC counted as methylated with 5mC")


class PrepareConfig(Section):
    min_coverage: int = Field(5, ge=1, description="reads a CpG needs (both strands merged)")
    max_non_cpg_fraction: float = Field(0.01, ge=0, le=1, description="fail above this fraction of sites that are not CpGs of the reference")
    rows_per_file: int = Field(32768, ge=1024, description="Parquet rows per file (Ray Data reads one block per file)")


class SplitConfig(Section):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_blocks: int = Field(10, ge=3, description="contiguous blocks per chromosome when there is one chromosome")
    gap_bp: int = Field(1001, ge=0, description="train sites closer than this to a held-out site are dropped (>= window length)")
    val_chroms: list[str] = []
    test_chroms: list[str] = []
    seed: int = 0


class ModelConfig(Section):
    name: str = "mrcnn"
    task: Literal["methylation", "multilabel"] = "methylation"
    window_length: int | None = None
    n_outputs: int | None = None
    params: dict = {}


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float | None = Field(None, gt=0, description="Adam learning rate; None = the model's default (methray models)")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"
    max_train_sites: int | None = Field(None, ge=1, description="cap on training sites (a fixed random subset, the same for every seed; budget.cap_rows), for quick runs")
    shuffle_buffer: int = Field(20000, ge=0, description="ignored since training shuffles all sites globally each epoch; kept so older configs load")
    max_failures: int = Field(3, ge=-1, description="Ray Train FailureConfig: worker-group restarts from the latest checkpoint (-1 = unlimited)")
    rc_augment: bool = Field(False, description="train on a random half of windows reverse-complemented")
    lr_schedule: Literal["cosine", "plateau", "constant"] = Field(
        "cosine", description="cosine: 5% linear warmup, then cosine decay to 0 over the epoch budget; plateau: halve after an epoch without a better validation loss"
    )
    seed: int = Field(0, description="initial weights, epoch shuffles, dropout and RC draws: the same seed gives the same model on CPU")
    seeds: int = Field(1, ge=1, description="train with seeds seed .. seed + seeds - 1 (the first is the run's checkpoint); metrics report mean, sd and interval over them")
    init_from: str | None = Field(
        None, description="fine-tuning: a methray checkpoint (local or s3://) of the same model and window whose weights start training instead of random ones"
    )


class ScoreConfig(Section):
    batch_size: int = Field(1024, ge=1)
    actors: int = Field(1, ge=1)
    cpus_per_actor: float = Field(1, gt=0)
    gpus_per_actor: float = Field(0, ge=0, description="0 = CPU; set 1 (or a fraction) on GPU clusters")
    rc_average: bool = Field(True, description="methylation models: average the predictions for the window and its reverse complement (both strands of the CpG)")
    track_order: Literal["sorted", "reference"] = Field(
        "sorted", description="bedGraph row order: sorted = LC_ALL=C sort -k1,1 -k2,2n; reference = FASTA contig order (bigWigs are always sorted)"
    )


class RayConfig(Section):
    address: str | None = None  # None: RAY_ADDRESS, then a running `ray start`, else embedded
    num_cpus: int | None = None  # embedded Ray only


class S3Config(Section):
    endpoint_url: str | None = None
    region: str | None = None


class StorageConfig(Section):
    """Storage-fault policy (:class:`methray.storage.FaultPolicy`): deadlines, retries, budget."""

    retry_budget_s: float = Field(300, gt=0, description="seconds one storage operation may spend retrying before the run stops")
    connect_timeout_s: float = Field(5, gt=0, description="seconds to connect to the store")
    read_timeout_s: float = Field(30, gt=0, description="seconds without a byte from the store")
    request_timeout_s: float = Field(120, gt=0, description="seconds for one whole request (upload part or answer)")
    backoff_s: float = Field(1, gt=0, description="first retry delay; doubled per retry, jittered")
    backoff_max_s: float = Field(30, gt=0, description="longest retry delay")


def file_safe_name(value: str, what: str) -> str:
    """``value`` if it can name files (letters, digits and ``_ . + -``), else a ``ValueError``."""
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        raise ValueError(f"{what} {value!r}: use letters, digits and _ . + - (it names files)")
    return value


def unique_names(names: list[str], what: str, *, required: bool = True) -> None:
    """Raise ``ValueError`` if a name appears twice, or (``required``) if there is none."""
    if (required and not names) or len(set(names)) != len(names):
        raise ValueError(f"expected at least one {what}, names unique; got {names}")


def resolve_path(path: str | None, base: str) -> str | None:
    """``path`` resolved against ``base``: unchanged when None, absolute or remote (``s3://``).

    Local results are normalised (``a/../b`` -> ``b``); a remote ``base`` gives a remote path.
    Resolving an already resolved path changes nothing.
    """
    if path is None or storage.is_remote(path) or os.path.isabs(path):
        return path
    if storage.is_remote(base):  # normpath would turn s3://b into s3:/b
        return storage.join(base, path)
    return os.path.normpath(os.path.join(base, path))


class JobConfig(Section):
    """The header every job config extends. Paths may be local or ``s3://``.

    Subclasses add their sections and name their own input paths in :meth:`resolve_inputs`;
    they may redeclare ``run_name`` / ``out_dir`` to change the defaults.
    """

    run_name: str = "run"
    data_dir: str = Field(".", description="base of relative input paths (resolved against the current directory)")
    out_dir: str = Field("runs/run", description="run directory (resolved against the current directory)")
    genome: str = Field("hg19", description="assembly name, recorded in outputs")
    reference: str = Field(description="reference FASTA (with .fai); relative to data_dir")
    score: ScoreConfig = ScoreConfig()
    ray: RayConfig = RayConfig()
    s3: S3Config = S3Config()
    storage: StorageConfig = StorageConfig()

    def path(self, *parts: str) -> str:
        """A location inside the run directory: ``<out_dir>/<parts...>``."""
        return storage.join(self.out_dir, *parts)

    def resolve_paths(self, cwd: str) -> None:
        """Make every local path absolute, in place (idempotent).

        ``data_dir`` and ``out_dir`` are resolved against ``cwd``, then ``reference`` and the
        subclass's inputs (:meth:`resolve_inputs`) against the absolute ``data_dir``.
        """
        self.data_dir = resolve_path(self.data_dir, cwd)
        self.out_dir = resolve_path(self.out_dir, cwd)
        self.reference = resolve_path(self.reference, self.data_dir)
        self.resolve_inputs(self.data_dir, cwd)

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        """Resolve the job's own paths in place (``data_dir`` is already absolute). No-op here."""

    def check(self) -> None:
        """Checks across fields that need other modules (e.g. the model registry). No-op here.

        Raises
        ------
        MethrayError
            The config names something that does not exist.
        """


class RunConfig(JobConfig):
    """A whole run: prepare -> train -> score -> evaluate."""

    cpg_islands: str | None = None
    tissues: list[TissueConfig]
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @field_validator("tissues")
    @classmethod
    def _unique_tissues(cls, v):
        unique_names([t.name for t in v], "tissue", required=False)
        return v

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        self.cpg_islands = resolve_path(self.cpg_islands, data_dir)
        for t in self.tissues:
            t.path = resolve_path(t.path, data_dir)

    @property
    def sites_table(self) -> str:
        """The measured-sites table written by ``prepare`` (:mod:`methray.sites`)."""
        return self.path("cpg_table")

    @property
    def checkpoint_dir(self) -> str:
        """The run's checkpoint: that of the first training seed (``train.seed``)."""
        return self.path("checkpoint")

    @property
    def train_seeds(self) -> list[int]:
        """The training seeds: ``train.seed .. train.seed + train.seeds - 1``."""
        return list(range(self.train.seed, self.train.seed + self.train.seeds))

    def seed_dir(self, seed: int) -> str:
        """Where a further seed's outputs go: ``seeds/seed<k>`` (``checkpoint/``,
        ``train_history.tsv``, ``predictions/``); the first seed's are the run's own."""
        return self.path("seeds", f"seed{seed}")

    def checkpoint_of(self, seed: int) -> str:
        """The checkpoint of training seed ``seed``: :attr:`checkpoint_dir` for ``train.seed``,
        else ``seeds/seed<k>/checkpoint``."""
        return self.checkpoint_dir if seed == self.train.seed else storage.join(self.seed_dir(seed), "checkpoint")


def _set_dotted(data: dict, key: str, value) -> None:
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise MethrayError(f"--set {key}: {p} is not a section")
    node[parts[-1]] = value


def read_config_data(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> dict:
    """A config's raw mapping: the YAML file (or ``data``) with ``--set`` overrides applied.

    Raises
    ------
    MethrayError
        Missing file, YAML syntax error, or an override that is not ``section.key=value``.
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
    data = copy.deepcopy(data)  # overrides edit nested sections: leave the caller's dict alone
    for item in overrides or []:
        if "=" not in item:
            raise MethrayError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(value))
    return data


def validate_config(model: type[BaseModel], data: dict, source: str | None = None):
    """``model.model_validate(data)``, with the first error as a one-line :class:`MethrayError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise MethrayError(f"{source or 'config'}: {loc}: {err['msg']}") from None


J = TypeVar("J", bound=JobConfig)


def load_job_config(cls: type[J], path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> J:
    """Load, validate and resolve a job config of class ``cls``.

    Parameters
    ----------
    cls
        A :class:`JobConfig` subclass (:class:`RunConfig`, ``TissueSetConfig``, ...).
    path
        YAML file (local or ``s3://``); or None with ``data``.
    overrides
        ``section.key=value`` strings; values are parsed as YAML (``train.epochs=2``).
    data
        A config as a dict (used instead of reading ``path``; not modified).

    Returns
    -------
    JobConfig
        With every local path absolute (:meth:`JobConfig.resolve_paths`), so that saving and
        loading it again, from any working directory, gives the same config.

    Raises
    ------
    MethrayError
        Missing file, YAML syntax error, a key that is unknown / of the wrong type, or a
        failed :meth:`JobConfig.check`.
    """
    cfg = validate_config(cls, read_config_data(path, overrides, data), path)
    cfg.resolve_paths(os.getcwd())
    cfg.check()
    return cfg


def load_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> RunConfig:
    """:func:`load_job_config` for a :class:`RunConfig`."""
    return load_job_config(RunConfig, path, overrides, data)


def save_config(cfg: BaseModel, path: str) -> None:
    """Write the resolved config as YAML (atomically). Contains no credentials."""
    with storage.atomic_write(path) as fh:
        yaml.safe_dump(cfg.model_dump(mode="json"), fh, sort_keys=False)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with methray (``methray/configs/<name>.yaml``)."""
    return Path(__file__).parent / "configs" / f"{name}.yaml"
