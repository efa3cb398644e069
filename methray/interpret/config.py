"""The interpretation job's config (``methray interpret --config FILE``).

Example (``methray/configs/interpret.yaml``)::

    run_name: interpret
    data_dir: ../shared/data/hg19_chr22     # base of a relative reference
    out_dir: runs/interpret                 # outputs under <out_dir>/<run_name>/
    reference: chr22.fa
    checkpoint: runs/demo/checkpoint        # a trained sequence model
    sites: runs/demo/cpg_table              # the measured sites of its run (held-out split used)
    n_per_group: 100

Relative ``reference`` is resolved against ``data_dir``; ``checkpoint``, ``sites`` and
``out_dir`` against the current directory.
"""

from __future__ import annotations

from pydantic import Field

from .. import storage
from ..config import JobConfig, ScoreConfig, load_job_config, resolve_path
from .motifs import JASPAR_RELEASE


class InterpretConfig(JobConfig):
    """An interpretation job (the common header of :class:`methray.config.JobConfig` plus its own keys)."""

    run_name: str = "interpret"
    out_dir: str = "runs/interpret"
    checkpoint: str
    sites: str = Field(description="measured sites table of the model's run (prepare's cpg_table)")
    split: str = Field("test", description="which split the CpGs are drawn from (held-out: test)")
    tissue: str | None = Field(None, description="tissue of the sites table (default: the first)")
    n_per_group: int = Field(100, ge=2, description="CpGs per measured group (hypo < 0.1, mid 0.4-0.6, hyper > 0.9)")
    ism_per_group: int = Field(20, ge=0, description="of those, how many also get ISM (400 x 3 predictions each)")
    n_shuffles: int = Field(20, ge=1, description="dinucleotide-shuffled references per window (DeepLIFT-SHAP)")
    seed: int = 0
    jaspar_release: str = JASPAR_RELEASE
    q_threshold: float = Field(0.05, gt=0, le=1, description="Tomtom matches with q below this are significant")
    rc_average: bool | None = Field(None, description="average attributions over both strands; None: when the checkpoint records rc_augment")
    n_tracks: int = Field(3, ge=0, description="CpGs shown as attribution tracks")
    score: ScoreConfig = ScoreConfig(batch_size=32)

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        """``checkpoint`` and ``sites`` (run outputs) against the current directory."""
        self.checkpoint = resolve_path(self.checkpoint, cwd)
        self.sites = resolve_path(self.sites, cwd)

    @property
    def prefix(self) -> str:
        """Output prefix ``<out_dir>/<run_name>``."""
        return storage.join(self.out_dir, self.run_name)


def load_interpret_config(path: str | None, overrides: list[str] | None = None, data: dict | None = None) -> InterpretConfig:
    """Load, validate and resolve an interpretation config.

    Raises
    ------
    MethrayError
        Missing file, YAML error, unknown key or wrong type.
    """
    return load_job_config(InterpretConfig, path, overrides, data)
