"""The ``methray`` command.

Every stage takes ``--config FILE`` (a run config, see :mod:`methray.config`) and
``--set section.key=value`` overrides; ``--out DIR`` sets ``out_dir``. Bad input ends with a
one-line ``methray: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from .errors import MethrayError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Learn DNA methylation from sequence and score genomes, on Ray.",
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Run config (YAML).", exists=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: section.key=value (repeatable).")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Output directory (overrides out_dir).")]


def _config(config: Path | None, sets: list[str] | None, out: str | None, *, data: dict | None = None):
    from .config import load_config

    overrides = list(sets or [])
    if out:
        overrides.append(f"out_dir={out}")
    return load_config(str(config) if config else None, overrides, data=data)


def _stage(cfg, stage, *, with_ray: bool = True):
    from . import pipeline

    pipeline.start(cfg, with_ray=with_ray)
    stage(cfg)


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
    """Fit the CpG-density baseline and write the metric table (metrics.tsv / .parquet)."""
    from .pipeline import run_evaluate, summary

    _stage(_config(config, set, out), lambda cfg: print(summary(run_evaluate(cfg))), with_ray=False)


@app.command()
def pipeline(config: ConfigOpt, set: SetOpt = None, out: OutOpt = None):
    """Run prepare -> train -> score -> evaluate."""
    from .pipeline import run_pipeline

    run_pipeline(_config(config, set, out))


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
def submit(
    config: Annotated[str, typer.Option("--config", "-c", help="Run config as the job sees it: relative to the working dir, shared absolute path, or s3://.")],
    address: Annotated[str, typer.Option("--address", help="Ray job server (dashboard) address.", envvar="RAY_API_SERVER_ADDRESS")] = "http://127.0.0.1:8265",
    job: Annotated[str, typer.Option("--job", help="pipeline, prepare, train, score, evaluate or score_genome.")] = "pipeline",
    date: Annotated[Optional[str], typer.Option("--date", help="Run date YYYY-MM-DD (default: today, UTC).")] = None,
    working_dir: Annotated[str, typer.Option("--working-dir", help="Uploaded as the job's working directory.")] = ".",
    runtime_env: Annotated[Optional[str], typer.Option("--runtime-env", help="Runtime env YAML (env_vars, excludes, ...), e.g. cluster/runtime-env.yaml.")] = None,
    set: SetOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job to end; exit 1 unless it SUCCEEDED.")] = False,
):
    """Submit a run as a Ray job with submission id <run_name>-<date>-<n>."""
    import yaml

    from . import submit as submission

    env = None
    if runtime_env:
        try:
            env = yaml.safe_load(Path(runtime_env).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MethrayError(f"{runtime_env}: cannot read runtime env YAML ({exc})") from None
    sid = submission.submit(config, address=address, job=job, overrides=set, date=date, working_dir=working_dir, runtime_env=env)
    typer.echo(sid)
    typer.echo(f"follow: ray job logs --address {address} -f {sid}", err=True)
    if wait:
        status = submission.wait(address, sid)
        typer.echo(f"{sid}: {status}", err=True)
        if status != "SUCCEEDED":
            raise typer.Exit(1)


@app.command("models")
def list_models():
    """List the registered models: window, outputs, parameters, paper."""
    from .models import registry

    rows = registry.model_table() if hasattr(registry, "model_table") else None
    if rows is None:
        from .models import build, get, names

        rows = []
        for name in names():
            info = get(name)
            n = sum(p.numel() for p in build(name).parameters())
            rows.append({"name": name, "window": info.window.length if info.window else "-", "n_outputs": info.n_outputs, "parameters": n, "paper": info.paper})
    typer.echo(f"{'name':<22}{'window':>8}{'outputs':>9}{'parameters':>13}  paper")
    for r in rows:
        typer.echo(f"{r['name']:<22}{str(r['window']):>8}{r['n_outputs']:>9}{r['parameters']:>13,}  {r['paper']}")


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _quiet_logs()
    try:
        app(args=argv, prog_name="methray", standalone_mode=False)
    except MethrayError as exc:
        print(f"methray: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("methray: aborted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
