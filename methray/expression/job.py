"""``methray expression``: the whole job, from the input files to the tables and the figure.

Stages: :mod:`~methray.expression.data` (M-values, genes, folds) -> :mod:`~methray.expression.train`
(the units on Ray, ledger) -> :mod:`~methray.expression.evaluate` (metrics, tables, figure).
Outputs in ``out_dir``: ``config.yaml``, ``selection.tsv``, ``folds.tsv``, ``genes.tsv`` /
``genes.parquet``, ``predictions.parquet``, ``summary.tsv``, ``figure.png``, ``run.json``,
``ledger/`` and ``models/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import pandas as pd

from .. import storage
from ..run import start_run
from ..tables import write_table
from .config import ExpressionConfig
from .data import data_folds, load_data
from .evaluate import gene_table, plot_figure, summary_table
from .train import TrainStats, train_units

log = logging.getLogger(__name__)


@dataclass
class ExpressionResult:
    """What a run produced: the selection report, the summary table and the timing."""

    out_dir: str
    report: dict
    summary: pd.DataFrame
    stats: TrainStats
    seconds: float


def run_expression(cfg: ExpressionConfig) -> ExpressionResult:
    """Run the job (resuming the units in ``cfg.out_dir``'s ledger).

    Raises
    ------
    MethrayError
        Bad inputs (nothing is written then), or failed Ray tasks (finished units are kept).
    """
    t0 = time.perf_counter()
    storage.configure_s3(cfg.s3.endpoint_url, cfg.s3.region)
    data = load_data(cfg)  # every input check before anything is written
    folds, groups = data_folds(cfg, data)
    start_run(cfg)
    write_table(pd.DataFrame({"what": list(data.report), "count": list(data.report.values())}), cfg.path("selection"))
    sheet = data.sheet.reset_index() if len(data.sheet) else pd.DataFrame({"sample": data.samples})
    write_table(sheet.assign(fold=folds, group=groups), cfg.path("folds"))
    log.info("expression: %d genes x %d folds x %d models", len(data.genes), cfg.cv.n_folds, len(cfg.models))

    records, stats = train_units(cfg, data, folds, groups)

    genes, preds = gene_table(records, data, folds, cfg.models)
    write_table(genes, cfg.path("genes"))
    with storage.atomic_path(cfg.path("predictions.parquet")) as tmp:
        preds.to_parquet(tmp, index=False)
    summary = summary_table(genes)
    write_table(summary, cfg.path("summary"))
    plot_figure(genes, cfg.path("figure.png"),
                title=f"{len(data.genes)} genes (>= {cfg.genes.min_cpgs} CpGs), {len(data.samples)} samples, {cfg.cv.n_folds}-fold CV")
    seconds = time.perf_counter() - t0
    run = {"seconds": round(seconds, 2), **asdict(stats), "units_per_second": stats.units_per_second}
    with storage.atomic_write(cfg.path("run.json")) as fh:
        json.dump(run, fh, indent=1)
    return ExpressionResult(cfg.out_dir, data.report, summary, stats, seconds)


def summary_text(result: ExpressionResult) -> str:
    """The lines the CLI prints: selection counts, the summary table, the timing."""
    lines = [f"expression: {result.out_dir}"]
    lines += [f"  {k}: {v:,}" for k, v in result.report.items()]
    lines.append(result.summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    s = result.stats
    lines.append(
        f"units (gene x fold x model): {s.units_total:,} ({s.units_before:,} done earlier, {s.units_run:,} run now in {s.tasks} "
        f"Ray tasks, {s.seconds:.1f} s, {s.units_per_second:.2f} units/s on {s.cpus:g} CPU / {s.gpus:g} GPU); "
        f"job {result.seconds:.1f} s"
    )
    return "\n".join(lines)
