"""The ``methray`` command.

Every job command (prepare, train, score, evaluate, pipeline, compare, regulatory, cpgs,
score-genome) takes ``--config FILE`` (its YAML config), ``--set section.key=value``
overrides and ``--out DIR`` (sets ``out_dir``). ``methray --version``, ``-h`` / ``--help`` on
every command, and shell completion (``methray --install-completion``). Bad input ends with a
one-line ``methray: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
try:  # recent typer ships its own copy of click: handlers for the real click's exceptions never match
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exceptions

from .errors import MethrayError, find_methray_error

app = typer.Typer(
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Learn DNA methylation from sequence and score genomes, on Ray.",
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Run config (YAML).", exists=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: section.key=value (repeatable).")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Output directory (overrides out_dir).")]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"methray {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
):
    """Learn DNA methylation from sequence and score genomes, on Ray."""


def _config(config: Path | None, sets: list[str] | None, out: str | None, *, data: dict | None = None):
    from .config import load_config

    overrides = list(sets or [])
    if out:
        overrides.append(f"out_dir={out}")
    cfg = load_config(str(config) if config else None, overrides, data=data)
    _ROLLBACK.watch(cfg.out_dir)
    return cfg


class _Rollback:
    """Undo what a failed command wrote before its inputs proved bad.

    A stage records its resolved ``config.yaml`` in the run directory before reading its
    inputs; when the command then ends in a :class:`MethrayError`, the ``config.yaml`` it
    wrote and the directories it created (if left empty) are removed, so that bad input
    leaves nothing under ``out_dir``. Local run directories only; files that existed before
    the command are never touched.
    """

    def __init__(self):
        self.watched: list[tuple[Path, bool, Path | None]] = []

    def watch(self, out_dir: str) -> None:
        from . import storage

        if storage.is_remote(out_dir):
            return
        out = Path(out_dir)
        first_new = None  # the topmost directory that this command would create
        p = out
        while not p.exists() and p != p.parent:
            first_new, p = p, p.parent
        self.watched.append((out, (out / "config.yaml").exists(), first_new))

    def undo(self) -> None:
        for out, had_config, first_new in self.watched:
            if not had_config:
                (out / "config.yaml").unlink(missing_ok=True)
            p = out
            while first_new is not None and p.is_dir() and not any(p.iterdir()):
                p.rmdir()
                if p == first_new:
                    break
                p = p.parent


_ROLLBACK = _Rollback()


def _stage(cfg, stage, *, with_ray: bool = True):
    from .run import start_run

    start_run(cfg, with_ray=with_ray)
    return stage(cfg)


@app.command()
def prepare(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Methylation files + reference -> CpG table (Parquet, partitioned by chrom)."""
    from .pipeline import run_prepare

    _stage(_config(config, set, out), run_prepare, with_ray=False)


@app.command()
def train(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Train the configured model with Ray Train; best checkpoint to <out>/checkpoint."""
    from .pipeline import run_train

    _stage(_config(config, set, out), run_train)


@app.command()
def score(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Score held-out CpGs with Ray Data batch inference; write predictions and bedGraphs."""
    from .pipeline import run_score

    _stage(_config(config, set, out), run_score)


@app.command()
def evaluate(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Fit both baselines and write the metric table (metrics.tsv / .parquet) and its intervals."""
    from .pipeline import read_intervals, run_evaluate, summary

    cfg = _config(config, set, out)
    table = _stage(cfg, run_evaluate, with_ray=False)
    typer.echo(summary(table, read_intervals(cfg)))


@app.command()
def pipeline(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Run prepare -> train -> score -> evaluate."""
    from .pipeline import run_pipeline

    run_pipeline(_config(config, set, out))


@app.command()
def regulatory(
    config: ConfigOpt,
    set: SetOpt = None,
    out: OutOpt = None,
    steps: Annotated[Optional[str], typer.Option("--steps", help="Comma-separated subset of labels,train,evaluate,overfit,genome (default all).")] = None,
):
    """Regulatory elements: peaks -> labelled windows -> multi-label models -> AUROC/AUPRC, stride table, bedGraphs."""
    from .regulatory.config import load_regulatory_config
    from .regulatory.job import run_regulatory

    overrides = list(set or []) + ([f"out_dir={out}"] if out else [])
    run_regulatory(load_regulatory_config(str(config), overrides), steps.split(",") if steps else None)


@app.command()
def compare(
    config: ConfigOpt,
    set: SetOpt = None,
    out: OutOpt = None,
    budget: Annotated[str, typer.Option("--budget", help="none: all sites, train.epochs (GPU clusters); cpu: the site / epoch caps for a 2-core machine, stated in the table header; cpu-long: the same with up to 8 epochs.")] = "none",
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated models (default: every methylation-capable sequence model).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train every model with seeds 0..N-1; the table reports mean, sd and a block-bootstrap interval of the mean.")] = 3,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Fine-tune: start each model and seed from the checkpoint of this earlier comparison on the same CpG table (e.g. trained on another tissue).")] = None,
):
    """Train every sequence model with N seeds on one split; write comparison.tsv / comparison.md."""
    from .compare import BUDGETS, MODELS, compare as run_compare

    if budget not in BUDGETS:
        raise MethrayError(f"--budget {budget!r}: expected one of {', '.join(BUDGETS)}")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(MODELS)
    run_compare(_config(config, set, out), names=names, budget=BUDGETS[budget], seeds=seeds, init_from=init_from)


@app.command()
def expression(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Gene expression from methylation: DeepMethyGene per gene vs baselines, k-fold CV on Ray; resumable."""
    from .expression.config import load_expression_config
    from .expression.job import run_expression, summary_text

    overrides = list(set or []) + ([f"out_dir={out}"] if out else [])
    typer.echo(summary_text(run_expression(load_expression_config(str(config), overrides))))


@app.command("expression-predict")
def expression_predict(
    run: Annotated[str, typer.Option("--run", help="Output directory of a finished `methray expression` run.")],
    methylation: Annotated[str, typer.Option("--methylation", "-m", help="Beta values, probes x samples (TSV), same probe ids.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output table (.tsv, .tsv.gz or .parquet).")],
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Trained model to use (repeatable; default all).")] = None,
):
    """Predict log2 expression per gene and sample from a new methylation matrix with a run's trained gene models."""
    from .expression.predict import predict_expression

    r = predict_expression(run, methylation, out, model or None)
    typer.echo(f"expression-predict: {r.n_genes} genes x {r.n_samples} samples, models {', '.join(r.models)}; "
               f"{r.n_imputed:,} missing M-values imputed with training means -> {r.out}")


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory.")] = "runs/demo",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Folder with the hg19 chr22 demo data.")] = None,
    set: SetOpt = None,
):
    """The whole pipeline on the shipped demo (MRCNN on IMR90, hg19 chr22)."""
    from .config import packaged_config
    from .pipeline import run_pipeline

    overrides = list(set or [])
    if data_dir:
        overrides.append(f"data_dir={data_dir}")
    run_pipeline(_config(packaged_config("demo"), overrides, out))


@app.command()
def cpgs(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="CpG-table config (YAML): reference, out_dir, ...; or give the keys with --set / the flags below.")] = None,
    set: SetOpt = None,
    out: OutOpt = None,
    reference: Annotated[Optional[str], typer.Option("--reference", "-r", help="Reference FASTA (indexed), local or s3:// (= --set reference=...).")] = None,
    cpg_islands: Annotated[Optional[str], typer.Option("--cpg-islands", help="CpG island BED (sets in_cpg_island).")] = None,
    max_n_fraction: Annotated[Optional[float], typer.Option("--max-n-fraction", help="Flag CpGs whose 1001 bp window has more N than this (0.5).")] = None,
    chrom: Annotated[Optional[list[str]], typer.Option("--chrom", help="Enumerate only this contig (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing table.")] = False,
):
    """Enumerate every CpG of a reference into a Parquet table (partitioned by chrom)."""
    from .config import read_config_data
    from .cpgs import enumerate_cpgs, load_cpgs_config

    source = str(config) if config else None
    raw = read_config_data(source, list(set or []), None if config else {})
    flags = {"reference": reference, "cpg_islands": cpg_islands, "max_n_fraction": max_n_fraction, "chroms": chrom or None,
             "overwrite": overwrite or None, "out_dir": out}
    raw.update({k: v for k, v in flags.items() if v is not None})  # flags win over the file
    cfg = load_cpgs_config(source, data=raw)
    s = enumerate_cpgs(cfg.reference, cfg.out_dir, cpg_islands=cfg.cpg_islands, max_n_fraction=cfg.max_n_fraction, chroms=cfg.chroms,
                       overwrite=cfg.overwrite)
    typer.echo(f"cpgs: {s.total:,} CpGs on {len(s.per_chrom)} contig(s); {s.in_islands:,} in CpG islands; "
               f"{s.excluded:,} excluded (window > {s.max_n_fraction:g} N) -> {s.out_dir} ({s.seconds:.1f} s)")
    for c, n in s.per_chrom.items():
        if n.cpgs:
            typer.echo(f"  {c}: {n.cpgs:,} CpGs, {n.in_islands:,} in islands, {n.excluded:,} excluded")


@app.command("score-genome")
def score_genome(
    config: ConfigOpt,
    set: SetOpt = None,
    out: OutOpt = None,
    date: Annotated[Optional[str], typer.Option("--date", help="YYYY-MM-DD: outputs under <out_dir>/<run_name>/<date>/ (reruns resume).")] = None,
):
    """Score every CpG for every (tissue, model) of a tissue set; resumable; tracks + metric tables."""
    from .genome_scoring.config import check_date, load_tissue_set
    from .genome_scoring.job import score_genome as run, summary_text

    cfg = load_tissue_set(str(config), list(set or []) + ([f"out_dir={out}"] if out else []))
    typer.echo(summary_text(run(cfg, check_date(date))))


@app.command()
def submit(
    config: Annotated[str, typer.Option("--config", "-c", help="Run config (local file or s3://). Relative paths in it are made absolute on a local cluster, refused on a remote one.")],
    address: Annotated[str, typer.Option("--address", help="Ray job server (dashboard) address.", envvar="RAY_API_SERVER_ADDRESS")] = "http://127.0.0.1:8265",
    job: Annotated[str, typer.Option("--job", help="The command to run as a job: pipeline, prepare, train, score, evaluate or score-genome.")] = "pipeline",
    date: Annotated[Optional[str], typer.Option("--date", help="Run date YYYY-MM-DD (default: today, UTC).")] = None,
    working_dir: Annotated[str, typer.Option("--working-dir", help="Uploaded as the job's working directory.")] = ".",
    runtime_env: Annotated[Optional[str], typer.Option("--runtime-env", help="Runtime env YAML (env_vars, excludes, ...), e.g. cluster/runtime-env.yaml.")] = None,
    set: SetOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job's log until it ends; exit 1 unless it SUCCEEDED.")] = False,
):
    """Check a run config and submit it as a Ray job with submission id <run_name>-<date>-<HHMMSS>."""
    import yaml

    from . import submit as submission

    # Ray logs a warning of its own before the one-line error about a missing token.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    env = None
    if runtime_env:
        try:
            env = yaml.safe_load(Path(runtime_env).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MethrayError(f"{runtime_env}: cannot read runtime env YAML ({exc})") from None
    sid, sub = submission.submit(config, address=address, job=job, overrides=set, date=date, working_dir=working_dir, runtime_env=env)
    typer.echo("# resolved config, as the job will run it:", err=True)
    typer.echo(yaml.safe_dump(sub.config, sort_keys=False).rstrip(), err=True)
    typer.echo(f"# entrypoint: {sub.entrypoint}", err=True)
    typer.echo(sid)
    if not wait:
        typer.echo(f"# follow: ray job logs --address {address} -f {sid}", err=True)
        return
    status = submission.follow(address, sid)
    typer.echo(f"{sid}: {status}", err=True)
    if status != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
def variants(
    vcf: Annotated[Optional[str], typer.Option("--vcf", help="VCF / VCF.gz (bgzip + tabix index: read by chunk).")] = None,
    checkpoint: Annotated[Optional[list[str]], typer.Option("--checkpoint", help="[NAME=]checkpoint dir (repeatable).")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", "-r", help="Reference FASTA (indexed).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Variants config (YAML).")] = None,
    set: SetOpt = None,
    out: OutOpt = None,
):
    """Effect of each VCF variant on the predicted beta of every CpG whose window holds it; resumable."""
    from .variants.config import load_variants_config
    from .variants.job import run_variants, summary_text

    overrides = list(set or []) + ([f"reference={reference}"] if reference else [])
    cfg = load_variants_config(str(config) if config else None, overrides, vcf=vcf, checkpoints=checkpoint, out=out)
    typer.echo(summary_text(run_variants(cfg)))


@app.command()
def interpret(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Attributions (DeepLIFT-SHAP, ISM), TF-MoDISco motifs matched to JASPAR, t-SNE and a report."""
    from .interpret.config import load_interpret_config
    from .interpret.job import run_interpret, summary_text

    overrides = list(set or []) + ([f"out_dir={out}"] if out else [])
    typer.echo(summary_text(run_interpret(load_interpret_config(str(config), overrides))))


@app.command("models")
def list_models():
    """List the registered models: window, outputs, parameters, paper."""
    from .models.registry import model_table

    typer.echo(f"{'name':<22}{'window':>8}{'outputs':>9}{'parameters':>13}  {'task':<13}paper")
    for r in model_table():
        window = f"{r['window']}{'*' if r['exclude_cpg'] else ''}"
        typer.echo(f"{r['name']:<22}{window:>8}{r['n_outputs']:>9}{r['parameters']:>13,}  {r['task']:<13}{r['paper']}")
    typer.echo("* window excludes the CpG itself (MRCNN input); deepmethygene is not a sequence model (parameters for n_cpgs=100)")


class _Stdout(logging.StreamHandler):
    """INFO (and DEBUG) records as plain lines on the current ``sys.stdout``."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(lambda record: record.levelno < logging.WARNING)

    @property
    def stream(self):  # looked up at each record: tests and callers may swap sys.stdout
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _Stderr(logging.StreamHandler):
    """Warnings and errors of every logger, as ``LEVEL name: message``."""

    def __init__(self):
        super().__init__()
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging() -> None:
    """Progress of the ``methray`` loggers (INFO) as plain lines on stdout, so the output reads
    as a report; warnings and errors of every logger on stderr. Idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        root.addHandler(_Stderr())
        root.setLevel(logging.WARNING)
    methray_log = logging.getLogger("methray")
    methray_log.setLevel(logging.INFO)
    if not any(isinstance(h, _Stdout) for h in methray_log.handlers):
        methray_log.addHandler(_Stdout())


def _quiet_logs() -> None:
    configure_logging()
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")


def _usage_line(exc: click_exceptions.UsageError) -> str:
    """``<command>: <what was wrong> (see '<command> --help')`` for a command-line usage error."""
    cmd = exc.ctx.command_path if exc.ctx is not None else "methray"
    return f"{cmd}: {exc.format_message()} (see '{cmd} --help')"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    Bad input (a :class:`MethrayError`) and command-line usage errors (unknown option,
    missing argument, bad value) end as one line ``methray: error: ...`` on stderr with exit
    status 2, and whatever the failed command had written is removed (:class:`_Rollback`).
    """
    _quiet_logs()
    _ROLLBACK.watched.clear()
    try:
        app(args=argv, prog_name="methray", standalone_mode=False)
    except MethrayError as exc:
        _ROLLBACK.undo()
        print(f"methray: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `methray` alone, or a group without a command: the help text
        sys.exit(exc.exit_code)
    except click_exceptions.UsageError as exc:
        print(f"methray: error: {_usage_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exceptions.ClickException as exc:
        print(f"methray: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("methray: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # methray's own error, possibly wrapped by Ray (task, actor, Ray Data)
        err = find_methray_error(exc)
        if err is None:
            raise
        print(f"methray: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
