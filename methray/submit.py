"""Submit a methray run to a Ray cluster as a Ray job, with a traceable submission id.

``methray submit --config F`` is ``ray job submit --working-dir . --submission-id <id> --
python jobs/<job>.py --config F`` done with :class:`ray.job_submission.JobSubmissionClient`,
so the same code runs as with ``ray job submit`` (and as ``methray <job>`` locally).

Submission ids are ``<run_name>-<YYYY-MM-DD>-<n>``: the run name from the config, the run
date (UTC today unless given) and a counter that is one more than the highest ``n`` already
submitted for that run and date, so reruns of a day's run are numbered, not overwritten, and
``ray job list`` shows which config and day each job belongs to.

The working directory is uploaded as the job's ``working_dir``; Ray skips what ``.gitignore``
(and ``.rayignore``) list, e.g. ``.venv/`` and ``runs/``, and :data:`EXCLUDES` besides.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import time
from pathlib import Path

from .errors import MethrayError

JOBS = ("pipeline", "prepare", "train", "score", "evaluate", "score-genome")  # the `methray` command names
# Uploaded with the code otherwise if .gitignore is missing (e.g. from a source tarball).
EXCLUDES = [".git", ".venv", "runs", "**/__pycache__", ".pytest_cache", "*.egg-info", "build", "dist"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def submission_id(run_name: str, date: str, existing: list[str]) -> str:
    """The next submission id ``<run_name>-<date>-<n>`` given the ids already on the cluster.

    Parameters
    ----------
    run_name
        ``run_name`` of the config; characters other than letters, digits, ``.``, ``_`` and
        ``-`` become ``-``.
    date
        Run date, ``YYYY-MM-DD``.
    existing
        Submission ids known to the cluster (``JobSubmissionClient.list_jobs``).

    Raises
    ------
    MethrayError
        ``date`` is not ``YYYY-MM-DD``.
    """
    _check_date(date)
    prefix = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', run_name)}-{date}-"
    taken = [int(m.group(1)) for s in existing if s and (m := re.fullmatch(re.escape(prefix) + r"(\d+)", s))]
    return f"{prefix}{max(taken, default=0) + 1}"


def entrypoint(job: str, config: str, overrides: list[str] | None = None, date: str | None = None) -> str:
    """The job's shell command: ``python jobs/<job>.py --config <config> [--set k=v ...]``.

    ``job`` is a command name (``score-genome``; ``score_genome`` is accepted too); its script
    is ``jobs/<name with _ for ->.py``.
    """
    job = job_name(job)
    args = ["python", f"jobs/{script(job)}", "--config", config]
    for item in overrides or []:
        args += ["--set", item]
    if job == "score-genome" and date:
        args += ["--date", date]
    return shlex.join(args)


def submit(
    config: str,
    *,
    address: str = "http://127.0.0.1:8265",
    job: str = "pipeline",
    overrides: list[str] | None = None,
    date: str | None = None,
    working_dir: str = ".",
    runtime_env: dict | None = None,
) -> str:
    """Submit a methray job; returns its submission id.

    Parameters
    ----------
    config
        Run config path as the job sees it: relative to ``working_dir`` (uploaded with it),
        absolute on a file system the cluster shares, or ``s3://``. It is read here too, for
        ``run_name`` and to fail early on a bad config.
    address
        The Ray dashboard (job server) address.
    job
        One of :data:`JOBS` (``jobs/<job>.py``).
    overrides
        ``section.key=value`` strings passed on as ``--set``.
    date
        Run date ``YYYY-MM-DD`` for the submission id (and ``--date`` of ``score_genome``);
        default: today, UTC.
    working_dir
        Uploaded as the job's working directory (must contain ``jobs/`` and ``methray/``).
    runtime_env
        Further runtime-env fields (``env_vars``, ``excludes``, ...), e.g. from
        ``cluster/runtime-env.yaml``; ``working_dir`` is set here.

    Raises
    ------
    MethrayError
        Bad config or date, a working dir without ``jobs/``, or a cluster that cannot be reached.
    """
    from .config import load_config

    job = job_name(job)
    if not Path(working_dir, "jobs", script(job)).exists():
        raise MethrayError(f"{working_dir}: no jobs/{script(job)} here; run from the methray repository root or pass --working-dir")
    local = Path(working_dir, config)
    cfg = load_config(str(local) if local.exists() else config)
    date = _check_date(date or dt.datetime.now(dt.timezone.utc).date().isoformat())
    env = dict(runtime_env or {})
    env["working_dir"] = working_dir
    env["excludes"] = sorted(set(env.get("excludes", [])) | set(EXCLUDES))
    client = _client(address)
    sid = submission_id(cfg.run_name, date, [j.submission_id for j in client.list_jobs()])
    client.submit_job(entrypoint=entrypoint(job, config, overrides, date), submission_id=sid, runtime_env=env)
    return sid


def wait(address: str, submission_id: str, timeout_s: float | None = None, poll_s: float = 2.0) -> str:
    """Wait until the job ends (or ``timeout_s`` passes); returns its last status name."""
    client = _client(address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(submission_id).value)
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(poll_s)


def job_name(job: str) -> str:
    """The job's command name (``score_genome`` -> ``score-genome``).

    Raises
    ------
    MethrayError
        Not one of :data:`JOBS`.
    """
    name = job.replace("_", "-")
    if name not in JOBS:
        raise MethrayError(f"unknown job {job!r}; one of {', '.join(JOBS)}")
    return name


def script(job: str) -> str:
    """``jobs/`` file name of a job: ``score-genome`` -> ``score_genome.py``."""
    return f"{job.replace('-', '_')}.py"


def _check_date(date: str) -> str:
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise MethrayError(f"--date {date!r}: expected YYYY-MM-DD") from None
    return date


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as exc:
        raise MethrayError(f"cannot reach the Ray job server at {address} ({exc}); is `ray start --head` running (or the port forwarded)?") from None
