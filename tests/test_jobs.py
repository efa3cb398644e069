"""`ray start --head` + `methray submit` / `ray job submit`, for real, on the real data slice.

The head is started by the test with its own ports and temp dir and stopped by killing exactly
the processes it started (`ray stop` would stop every Ray of the user on the machine). It does
not use the ``ray_session`` fixture: the job runs in the head's Ray, not in this process.
Token auth is disabled on both sides (local development only; see cluster/README.md).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from methray.submit import submission_id
from conftest import ROOT, slice_config

BIN = Path(sys.executable).parent
TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "PYTHONPATH", "AWS_"))}
    # A loaded machine can take longer than the default 10 s for the raylet to register.
    env.update(RAY_raylet_start_wait_time_s="120", RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")  # the job's `python` = this venv's
    return env


def _processes() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, command line)`` of every process (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = (ppid, cmdline)
    return out


def _stop(temp_dir: str) -> None:
    """Kill the processes of the head that uses ``temp_dir`` and their children, nothing else."""
    procs = _processes()
    mine = {pid for pid, (_, cmd) in procs.items() if temp_dir in cmd}
    grew = True
    while grew:  # add descendants (Ray workers rename themselves, e.g. "ray::IDLE")
        more = {pid for pid, (ppid, _) in procs.items() if ppid in mine} - mine
        mine |= more
        grew = bool(more)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in mine):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_head():
    """A local `ray start --head` with a dashboard on 127.0.0.1; yields (address, temp dir)."""
    gcs, dashboard, client, agent = _free_ports(4)
    temp_dir = tempfile.mkdtemp(prefix="mrh", dir="/tmp")  # short: socket paths < 108 bytes
    cmd = [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}", f"--temp-dir={temp_dir}",
           "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats"]
    try:
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield f"http://127.0.0.1:{dashboard}", temp_dir
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def working_dir(imr90_slice, tmp_path_factory):
    """A copy of the repository's code with a run config inside, plus big dirs that must not be uploaded."""
    wd = tmp_path_factory.mktemp("wd")
    for name in ("methray", "jobs"):
        shutil.copytree(ROOT / name, wd / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".gitignore", wd / ".gitignore")
    (wd / "cluster").mkdir()
    shutil.copy(ROOT / "cluster" / "runtime-env.yaml", wd / "cluster" / "runtime-env.yaml")
    for junk in ("runs/old/big.bin", ".venv/lib/big.bin"):
        (wd / junk).parent.mkdir(parents=True)
        (wd / junk).write_bytes(b"\0" * 1024)
    out = tmp_path_factory.mktemp("job_out")
    (wd / "run.yaml").write_text(yaml.safe_dump(slice_config(out, imr90_slice)))
    return wd, out


def _run(args: list, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pipeline_job(ray_head, working_dir):
    """`methray submit` of the whole pipeline, waited for; returns (submission id, logs)."""
    address, _ = ray_head
    wd, _ = working_dir
    sub = _run([sys.executable, "-m", "methray.cli", "submit", "--config", "run.yaml", "--address", address,
                "--runtime-env", "cluster/runtime-env.yaml"], wd, timeout=120)
    assert sub.returncode == 0, sub.stderr
    sid = sub.stdout.strip()
    # `ray job logs -f` returns when the job ends (bounded by the subprocess timeout).
    logs = _run([BIN / "ray", "job", "logs", "--address", address, "-f", sid], wd, timeout=480).stdout
    status = _run([BIN / "ray", "job", "status", "--address", address, sid], wd, timeout=60).stdout
    assert f"Job '{sid}' succeeded" in status, f"{status}\n{logs[-4000:]}"
    return sid, logs


def test_submission_id_from_run_name_and_date(pipeline_job):
    sid, _ = pipeline_job
    assert sid == f"test-{TODAY}-1"


def test_pipeline_job_writes_every_output(pipeline_job, working_dir):
    _, logs = pipeline_job
    _, out = working_dir
    assert "train: 3,286 train / 1,107 val sites" in logs and "held-out metrics (subset all):" in logs
    for name in ("metrics.tsv", "imr90.mrcnn.bedGraph", "checkpoint/model.pt", "checkpoint/meta.json", "config.yaml"):
        assert (out / name).exists(), name
    bg = pd.read_csv(out / "imr90.mrcnn.bedGraph", sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "value"])
    assert len(bg) > 500 and bg["value"].between(0, 1).all()
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert set(metrics["model"]) == {"mrcnn", "cpg_density", "composition_gbm"}


def test_working_dir_upload_skips_ignored_dirs(pipeline_job, ray_head):
    _, temp_dir = ray_head
    packages = [p for p in Path(temp_dir).glob("session_latest/runtime_resources/working_dir_files/_ray_pkg_*") if p.is_dir()]
    assert packages, "no working_dir package found on the head"
    for pkg in packages:
        assert (pkg / "jobs" / "pipeline.py").exists() and (pkg / "run.yaml").exists()
        assert not (pkg / "runs").exists() and not (pkg / ".venv").exists()


def test_ray_job_submit_cli_and_next_submission_id(pipeline_job, ray_head, working_dir):
    address, _ = ray_head
    wd, out = working_dir
    sid = f"test-{TODAY}-evaluate"
    proc = _run([BIN / "ray", "job", "submit", "--address", address, "--runtime-env", "cluster/runtime-env.yaml",
                 "--submission-id", sid, "--", "python", "jobs/evaluate.py", "--config", "run.yaml"], wd, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "held-out metrics (subset all):" in proc.stdout and f"Job '{sid}' succeeded" in proc.stdout
    listed = _run([BIN / "ray", "job", "list", "--address", address], wd, timeout=60).stdout
    ids = re.findall(r"submission_id='([^']+)'", listed)
    assert {f"test-{TODAY}-1", sid} <= set(ids)
    assert submission_id("test", TODAY, ids) == f"test-{TODAY}-2"


def test_submission_id_numbering_and_bad_date():
    from methray.errors import MethrayError

    assert submission_id("imr90 mrcnn", "2025-01-31", []) == "imr90-mrcnn-2025-01-31-1"
    assert submission_id("r", "2025-01-31", ["r-2025-01-31-1", "r-2025-01-31-7", "r-2025-01-30-9", "rr-2025-01-31-12", None]) == "r-2025-01-31-8"
    with pytest.raises(MethrayError, match="YYYY-MM-DD"):
        submission_id("r", "31/01/2025", [])
