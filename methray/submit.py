"""Submit a methray run to a Ray cluster as a Ray job, checked first.

``methray submit --config F`` is ``ray job submit --working-dir . --submission-id <id> --
python jobs/<job>.py --config F [--set k=v ...]`` done with
:class:`ray.job_submission.JobSubmissionClient`, so a submitted job runs the same code as
``methray <job>`` here. Before anything is uploaded:

- the config is loaded and validated here, as the job will load it;
- every path the job would resolve against *its* current directory (Ray's unpacked copy of
  the working dir: ``data_dir``, ``out_dir``, and for ``score-genome`` also ``cpg_table`` and
  the tissues' ``checkpoint`` / ``split_regions``) is checked. On a *local* cluster (every
  node is this machine) a relative path is made absolute exactly as ``methray <job>`` would
  resolve it here, and passed on as ``--set key=/absolute/path``. On a remote cluster a
  relative path is refused: it would point into the job's temporary directory. Absolute paths
  are taken to be on a file system the cluster shares; ``s3://`` always works;
- the resolved config (every default filled in, every path absolute) is returned for printing.

Submission ids are ``<run_name>-<YYYY-MM-DD>-<HHMMSS>``: the config's run name, the run date
(``--date``, default today, UTC) and the UTC time of submission, so every attempt has its own
id and ``ray job list`` sorts them by day and time. The plain command makes the same id with
``--submission-id <run_name>-$(date -u +%F-%H%M%S)``.

Every failure (bad config, unreachable server, missing or wrong token, a server error) is a
:class:`MethrayError`, i.e. one line ``methray: error: ...`` from the CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from . import storage
from .errors import MethrayError

log = logging.getLogger(__name__)

JOBS = ("pipeline", "prepare", "train", "score", "evaluate", "score-genome")  # the `methray` command names
# Uploaded with the code otherwise if .gitignore is missing (e.g. from a source tarball).
EXCLUDES = [".git", ".venv", "runs", "**/__pycache__", ".pytest_cache", "*.egg-info", "build", "dist"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Config keys that the loaders resolve against the current directory (JobConfig.resolve_paths
# and TissueSetConfig.resolve_inputs); every other relative path is relative to data_dir.
CWD_KEYS = {"run": ("data_dir", "out_dir"), "tissue_set": ("data_dir", "out_dir", "cpg_table")}
CWD_TISSUE_KEYS = {"run": (), "tissue_set": ("checkpoint", "split_regions")}
REMOTE_HINT = "use s3:// or an absolute path on a file system the cluster shares"


@dataclass
class Submission:
    """What :func:`prepare` decided: the job's command line and the config it will run with."""

    entrypoint: str
    run_name: str
    config: dict  # the resolved config, as the job will see it (JSON types)


def submission_id(run_name: str, date: str, now: dt.datetime | None = None) -> str:
    """The submission id ``<run_name>-<date>-<HHMMSS>``.

    Parameters
    ----------
    run_name
        ``run_name`` of the config; characters other than letters, digits, ``.``, ``_`` and
        ``-`` become ``-``.
    date
        Run date, ``YYYY-MM-DD``.
    now
        Submission time (default: now); its UTC hours, minutes and seconds end the id.

    Raises
    ------
    MethrayError
        ``date`` is not ``YYYY-MM-DD``.
    """
    _check_date(date)
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', run_name)}-{date}-{now:%H%M%S}"


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


def prepare(
    config: str,
    *,
    job: str = "pipeline",
    overrides: list[str] | None = None,
    date: str | None = None,
    working_dir: str = ".",
    local: bool,
) -> Submission:
    """Check a run config for a cluster and build the job's command line (no cluster needed).

    Parameters
    ----------
    config
        Config file as given on the command line: local (relative to the current directory)
        or ``s3://``.
    job
        One of :data:`JOBS`.
    overrides
        ``section.key=value`` strings, passed on as ``--set``.
    date
        Run date of ``score-genome`` (``--date``).
    working_dir
        The directory uploaded as the job's working directory.
    local
        Whether every node of the cluster is this machine (relative paths are then made
        absolute instead of refused).

    Returns
    -------
    Submission
        The entrypoint (config path as the job sees it, overrides plus ``--set key=/abs`` for
        each relative path made absolute) and the resolved config.

    Raises
    ------
    MethrayError
        Bad config; a relative path (or a config outside the working dir) on a remote cluster.
    """
    from .config import RunConfig, load_config, read_config_data, validate_config
    from .genome_scoring.config import TissueSetConfig, load_tissue_set

    job = job_name(job)
    if not Path(working_dir, "jobs", script(job)).exists():
        raise MethrayError(f"{working_dir}: no jobs/{script(job)} here; run from the methray repository root or pass --working-dir")
    kind, model, loader = ("tissue_set", TissueSetConfig, load_tissue_set) if job == "score-genome" else ("run", RunConfig, load_config)
    overrides = list(overrides or [])
    resolved = loader(config, overrides)  # validates, resolves against the current directory
    as_given = validate_config(model, read_config_data(config, overrides), config)  # defaults, unresolved

    extra: list[str] = []
    for key in CWD_KEYS[kind]:
        value = getattr(as_given, key)
        if _relative(value):
            if not local:
                raise MethrayError(f"{config}: {key}: {value!r} is relative, i.e. inside the job's temporary copy of the working dir on a remote cluster; {REMOTE_HINT}")
            extra.append(f"{key}={getattr(resolved, key)}")
    if CWD_TISSUE_KEYS[kind]:
        tissues, changed = [], False
        for given, res in zip(as_given.tissues, resolved.tissues):
            item = given.model_dump(mode="json", exclude_none=True)
            for key in CWD_TISSUE_KEYS[kind]:
                if _relative(item.get(key)):
                    if not local:
                        raise MethrayError(f"{config}: tissues[{given.name}].{key}: {item[key]!r} is relative, i.e. inside the job's temporary copy of the working dir on a remote cluster; {REMOTE_HINT}")
                    item[key], changed = getattr(res, key), True
            tissues.append(item)
        if changed:
            extra.append(f"tissues={json.dumps(tissues, separators=(',', ':'))}")
    # Loaded again with the absolute paths: inputs relative to data_dir become absolute too.
    final = loader(config, overrides + extra) if extra else resolved
    return Submission(
        entrypoint=entrypoint(job, _job_config_path(config, working_dir, local), overrides + extra, date),
        run_name=final.run_name,
        config=final.model_dump(mode="json"),
    )


def submit(
    config: str,
    *,
    address: str = "http://127.0.0.1:8265",
    job: str = "pipeline",
    overrides: list[str] | None = None,
    date: str | None = None,
    working_dir: str = ".",
    runtime_env: dict | None = None,
) -> tuple[str, Submission]:
    """Check a config, then submit it as a Ray job; returns ``(submission id, submission)``.

    Parameters
    ----------
    config
        Run config: a local file (relative to the current directory) or ``s3://``.
    address
        The Ray dashboard (job server) address.
    job
        One of :data:`JOBS` (``jobs/<job>.py``).
    overrides
        ``section.key=value`` strings passed on as ``--set``.
    date
        Run date ``YYYY-MM-DD`` for the submission id (and ``--date`` of ``score-genome``);
        default: today, UTC.
    working_dir
        Uploaded as the job's working directory (must contain ``jobs/`` and ``methray/``).
    runtime_env
        Further runtime-env fields (``env_vars``, ``excludes``, ...), e.g. from
        ``cluster/runtime-env.yaml``; ``working_dir`` is set here.

    Raises
    ------
    MethrayError
        Bad config, date or paths (see :func:`prepare`), a job server that cannot be reached,
        a missing or wrong token, or a job the server refuses.
    """
    date = _check_date(date or dt.datetime.now(dt.timezone.utc).date().isoformat())
    client = _client(address)
    sub = prepare(config, job=job, overrides=overrides, date=date, working_dir=working_dir, local=cluster_is_local(address))
    env = dict(runtime_env or {})
    env["working_dir"] = working_dir
    env["excludes"] = sorted(set(env.get("excludes", [])) | set(EXCLUDES))
    with _server_errors(address):
        taken = {j.submission_id for j in client.list_jobs()}
        sid = submission_id(sub.run_name, date)
        while sid in taken:  # a second attempt within the same second
            time.sleep(1)
            sid = submission_id(sub.run_name, date)
        client.submit_job(entrypoint=sub.entrypoint, submission_id=sid, runtime_env=env)
    return sid, sub


def follow(address: str, submission_id: str) -> str:
    """Print the job's log to stdout as it is written, until the job ends; returns its status."""
    client = _client(address)

    async def _tail() -> None:
        async for chunk in client.tail_job_logs(submission_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    with _server_errors(address):
        asyncio.run(_tail())
        return wait(address, submission_id, client=client)


def wait(address: str, submission_id: str, timeout_s: float | None = None, poll_s: float = 2.0, client=None) -> str:
    """Wait until the job ends (or ``timeout_s`` passes); returns its last status name."""
    client = client or _client(address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        with _server_errors(address):
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


def cluster_is_local(address: str) -> bool:
    """Whether every alive node of the cluster behind ``address`` is this machine.

    Compares the nodes' IP addresses (Ray's state API) with this machine's (the one Ray would
    use, the host name's, loopback). A port-forwarded Kubernetes cluster on 127.0.0.1 is
    remote: its nodes have pod IPs. When the nodes cannot be listed, the cluster counts as
    remote, so that relative paths are refused rather than sent where they do not exist.
    """
    from ray.util import get_node_ip_address
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(address=address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot tell"
        log.debug("cannot list the nodes of %s (%s); treating the cluster as remote", address, _one_line(exc))
        return False
    mine = {"127.0.0.1", "::1", get_node_ip_address()}
    try:
        mine |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    return bool(nodes) and all(n.node_ip in mine for n in nodes)


def _relative(path) -> bool:
    return isinstance(path, str) and not storage.is_remote(path) and not os.path.isabs(path)


def _job_config_path(config: str, working_dir: str, local: bool) -> str:
    """The config path as the job sees it (its current directory is the unpacked working dir)."""
    if storage.is_remote(config):
        return config
    path, wd = Path(config).resolve(), Path(working_dir).resolve()
    if path.is_relative_to(wd):
        return path.relative_to(wd).as_posix()  # uploaded with the working dir
    if local or os.path.isabs(config):
        return str(path)
    raise MethrayError(f"{config}: the config is outside the working dir {working_dir} (what is uploaded); {REMOTE_HINT}")


def _check_date(date: str) -> str:
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise MethrayError(f"--date {date!r}: expected YYYY-MM-DD") from None
    return date


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


@contextmanager
def _server_errors(address: str):
    """Turn what the job server or the network raises into one-line :class:`MethrayError` s."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        first = str(exc).split("\n", 1)[0]
        if "Forbidden" in first or "failed" in first:
            raise MethrayError(f"{address}: the Ray cluster rejected the token ({first}); use the token of that cluster (`ray get-auth-token` where its head was started) in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH") from None
        raise MethrayError(f"{address}: the Ray cluster requires a token ({first}); export RAY_AUTH_MODE=token with the token in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (`ray get-auth-token` prints it)") from None
    except (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise MethrayError(f"{address}: cannot reach the Ray job server ({_one_line(exc)}); is `ray start --head` running (or the port forwarded)?") from None
    except (RuntimeError, ValueError, requests.exceptions.RequestException) as exc:
        raise MethrayError(f"{address}: the Ray job server refused the request ({_one_line(exc)})") from None


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    # Ray's own lines about packaging the upload (INFO, and a WARNING that .venv is skipped)
    # would surround methray's one-line errors; its loggers set their levels themselves.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("ray.dashboard", "ray._private.runtime_env")):
            logging.getLogger(name).setLevel(logging.ERROR)
    if urlparse(address).scheme not in ("http", "https"):
        raise MethrayError(f"--address {address!r}: expected the job server URL, e.g. http://127.0.0.1:8265")
    with _server_errors(address):
        return JobSubmissionClient(address)
