"""`ray start --head` + `methray submit` / `ray job submit`, for real, in token mode.

The acceptance test follows README "Running on a cluster" on a copy of the repository (a
"fresh clone": the code, README, cluster/ and the shipped configs, beside a `shared/data`
folder), with the commands of its bash block: a token from `ray get-auth-token --generate` in
a new HOME, `RAY_AUTH_MODE=token` for the head and every client, and `methray submit --config
methray/configs/demo.yaml --wait` with the config's relative `data_dir` / `out_dir` left as
they are. To keep it short, that `shared/data/hg19_chr22` holds links to the real reference
and CpG islands and, under the real IMR90 file name, the first 6,000 rows of the real file;
the run is 1 epoch with 1 training worker (`--set`). The head gets its own ports and temp dir
(the README's defaults would collide with other Ray instances on the machine) and is stopped
by killing exactly the processes it started (`ray stop` would stop every Ray of the user).

Fast checks without a job: the path checks of `methray.submit.prepare` (local: made absolute;
remote: refused), and one-line errors for a missing token, a wrong token, a closed port and a
job server that answers 500.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import DATA, IMR90, ROOT, head_lines, write_gz
from methray.errors import MethrayError
from methray.submit import prepare, submission_id

BIN = Path(sys.executable).parent
ID_RE = r"demo-\d{4}-\d\d-\d\d-\d{6}"
# Copied into the "fresh clone": what git tracks that a cluster run needs.
CLONE = ("methray", "jobs", "cluster", "README.md", "pyproject.toml", ".gitignore")
SMALL = ["--set", "train.epochs=1", "--set", "train.seeds=1", "--set", "train.num_workers=1", "--set", "train.max_train_sites=1000",
         "--set", "train.shuffle_buffer=0", "--set", "score.cpus_per_actor=0.5"]


def readme_block() -> list[str]:
    """The bash lines of README "Running on a cluster" > "Local Ray cluster and `ray job submit`"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Local Ray cluster and `ray job submit`"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()


def readme_plain_submit() -> str:
    """The README's plain `ray job submit` command (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Local Ray cluster and `ray job submit`"):text.index("### AWS and Kubernetes")]
    block = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "ray job submit" in b][0]
    return block.replace("\\\n", " ").strip()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(home: Path, **extra) -> dict:
    """A new user's environment: this venv first on PATH, its own HOME, token mode."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_API_SERVER", "PYTHONPATH", "AWS_"))}
    # A loaded machine can take longer than the default 10 s for the raylet to register.
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_raylet_start_wait_time_s="120",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")  # the job's `python` = this venv's
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


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
    mine = {pid for pid, (_, cmd) in procs.items() if temp_dir in cmd} - {os.getpid()}
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


def _run(args: list, cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """``<tmp>/methray`` (a copy of the repository) beside ``<tmp>/shared/data/hg19_chr22``."""
    top = tmp_path_factory.mktemp("fresh")
    repo = top / "methray"
    repo.mkdir()
    for name in CLONE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    for junk in ("runs/old/big.bin", ".venv/lib/big.bin"):  # must not be uploaded
        (repo / junk).parent.mkdir(parents=True)
        (repo / junk).write_bytes(b"\0" * 1024)
    data = top / "shared" / "data" / "hg19_chr22"
    data.mkdir(parents=True)
    for name in ("chr22.fa", "chr22.fa.fai", "cpg_islands.bed"):
        (data / name).symlink_to(DATA / name)
    write_gz(data / IMR90.name, head_lines(IMR90, 6000))
    return repo


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A new user's HOME with a token made as the README says (`ray get-auth-token --generate`)."""
    home = tmp_path_factory.mktemp("home")
    line = next(ln for ln in readme_block() if ln.startswith("ray get-auth-token"))
    proc = subprocess.run(line, shell=True, env=_env(home), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len((home / ".ray" / "auth_token").read_text().strip()) >= 32
    return home


@pytest.fixture(scope="module")
def ray_head(home, clone):
    """The README's `ray start --head ...` in token mode, with its own ports and temp dir."""
    line = next(ln for ln in readme_block() if ln.startswith("ray start --head"))
    readme_args = line.split("#")[0].split()[1:]
    gcs, dashboard, client, agent = _free_ports(4)
    temp_dir = tempfile.mkdtemp(prefix="mrh", dir="/tmp")  # short: socket paths < 108 bytes
    cmd = [str(BIN / "ray"), *readme_args, f"--port={gcs}", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
           f"--temp-dir={temp_dir}", "--include-dashboard=true", "--disable-usage-stats"]
    try:
        proc = subprocess.run(cmd, env=_env(home), cwd=clone, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield f"http://127.0.0.1:{dashboard}", temp_dir
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_job(ray_head, clone, home):
    """The README's `methray submit ... --wait`, run in the clone against the token-mode head."""
    address, _ = ray_head
    line = next(ln for ln in readme_block() if ln.startswith("methray submit"))
    args = line.split("#")[0].split()[1:]
    proc = _run([sys.executable, "-m", "methray.cli", *args, "--address", address, *SMALL], clone, _env(home), timeout=1200)
    return proc


def test_readme_flow_submits_the_demo_and_writes_its_outputs(demo_job, clone):
    assert demo_job.returncode == 0, demo_job.stdout[-4000:] + demo_job.stderr[-4000:]
    sid = demo_job.stdout.splitlines()[0]
    assert re.fullmatch(ID_RE, sid)
    assert "held-out metrics (subset all" in demo_job.stdout  # --wait followed the log
    # The README's `ls runs/demo`: the config's relative out_dir is runs/demo of the clone.
    out = clone / "runs" / "demo"
    for name in ("config.yaml", "metrics.tsv", "imr90.mrcnn.bedGraph", "checkpoint/model.pt", "checkpoint/meta.json"):
        assert (out / name).exists(), name
    bg = pd.read_csv(out / "imr90.mrcnn.bedGraph", sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "value"])
    assert len(bg) > 500 and bg["value"].between(0, 1).all()
    assert set(pd.read_csv(out / "metrics.tsv", sep="\t")["model"]) == {"mrcnn", "cpg_density", "composition_gbm"}
    # The resolved config printed before submitting is the one the job ran with.
    printed = yaml.safe_load(demo_job.stderr.split("# resolved config, as the job will run it:\n", 1)[1].split("\n# entrypoint:", 1)[0])
    ran = yaml.safe_load((out / "config.yaml").read_text())
    assert printed["out_dir"] == str(out) == ran["out_dir"]
    assert printed["reference"] == ran["reference"] == str(clone.parent / "shared/data/hg19_chr22/chr22.fa")
    assert printed == ran


def test_working_dir_upload_skips_ignored_dirs(demo_job, ray_head):
    _, temp_dir = ray_head
    packages = [p for p in Path(temp_dir).glob("session_latest/runtime_resources/working_dir_files/_ray_pkg_*") if p.is_dir()]
    assert packages, "no working_dir package found on the head"
    for pkg in packages:
        assert (pkg / "jobs" / "pipeline.py").exists() and (pkg / "methray" / "configs" / "demo.yaml").exists()
        assert not (pkg / "runs").exists() and not (pkg / ".venv").exists()


def test_readme_plain_ray_job_submit_uses_the_same_id_scheme(demo_job, ray_head, clone, home):
    """The README's plain command (paths made absolute with $PWD), through bash as typed."""
    address, _ = ray_head
    # evaluate.py over the run of `demo_job`, which trained one seed (SMALL)
    command = readme_plain_submit().replace("http://127.0.0.1:8265", address).replace("jobs/pipeline.py", "jobs/evaluate.py") + " --set train.seeds=1"
    proc = subprocess.run(["bash", "-c", command], env=_env(home), cwd=clone, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "held-out metrics (subset all" in proc.stdout
    plain_id = re.search(rf"Job '({ID_RE})' succeeded", proc.stdout).group(1)
    listed = _run([BIN / "ray", "job", "list", "--address", address], clone, _env(home), timeout=60).stdout
    ids = set(re.findall(r"submission_id='([^']+)'", listed))
    assert {demo_job.stdout.splitlines()[0], plain_id} <= ids
    assert plain_id[5:15] == dt.datetime.now(dt.timezone.utc).date().isoformat()


def test_submit_without_or_with_a_wrong_token_is_one_line(ray_head, clone, home):
    address, _ = ray_head
    base = [sys.executable, "-m", "methray.cli", "submit", "--config", "methray/configs/demo.yaml", "--address", address]
    missing = _run(base, clone, _env(home, RAY_AUTH_MODE=None), timeout=120)
    wrong = _run(base, clone, _env(home, RAY_AUTH_TOKEN="0" * 32), timeout=120)
    for proc, what in ((missing, "requires a token"), (wrong, "rejected the token")):
        assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("methray: error: ") and what in proc.stderr, proc.stderr


def test_submit_to_a_closed_port_is_one_line(clone, home):
    (port,) = _free_ports(1)
    proc = _run([sys.executable, "-m", "methray.cli", "submit", "--config", "methray/configs/demo.yaml",
                 "--address", f"http://127.0.0.1:{port}"], clone, _env(home), timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot reach the Ray job server" in proc.stderr


class _Fake500(BaseHTTPRequestHandler):
    """A job server that answers the version check and the job list, then refuses the job."""

    posts: list = []

    def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/api/version"):
            self._send(200, json.dumps({"version": "4", "ray_version": "2.60.0", "ray_commit": "x"}))
        elif self.path.startswith("/api/jobs/"):
            self._send(200, "[]")
        elif self.path.startswith("/api/packages/"):
            self._send(200, "")  # package "already uploaded"
        else:
            self._send(404, "not found", "text/plain")  # e.g. the state API: nodes unknown -> remote

    def do_POST(self):  # noqa: N802
        type(self).posts.append(self.path)
        self._send(500, "No available agent to submit job, please try again later.", "text/plain")

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Fake500.posts = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_submit_server_error_is_one_line(fake_server, clone, home, tmp_path):
    cfg = yaml.safe_load((clone / "methray/configs/demo.yaml").read_text())
    cfg.update(data_dir=str(DATA), out_dir=str(tmp_path / "out"))  # absolute: fine on a remote cluster
    (clone / "abs.yaml").write_text(yaml.safe_dump(cfg))
    proc = _run([sys.executable, "-m", "methray.cli", "submit", "--config", "abs.yaml", "--address", fake_server],
                clone, _env(home), timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "500" in proc.stderr and "No available agent" in proc.stderr, proc.stderr
    assert _Fake500.posts == ["/api/jobs/"]


def test_submit_refuses_relative_paths_for_a_remote_cluster_before_uploading(fake_server, clone, home):
    proc = _run([sys.executable, "-m", "methray.cli", "submit", "--config", "methray/configs/demo.yaml",
                 "--address", fake_server], clone, _env(home), timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("methray: error: methray/configs/demo.yaml: data_dir: '../shared/data/hg19_chr22' is relative")
    assert "use s3:// or an absolute path" in proc.stderr
    assert _Fake500.posts == []  # nothing submitted


# --- prepare(): the path checks, without a cluster ------------------------------------------------

def _config(tmp_path: Path, **fields) -> str:
    cfg = yaml.safe_load((ROOT / "methray/configs/demo.yaml").read_text())
    cfg.update(fields)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_prepare_local_makes_cwd_relative_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sub = prepare("methray/configs/demo.yaml", local=True, overrides=["train.epochs=1"])
    assert sub.entrypoint == ("python jobs/pipeline.py --config methray/configs/demo.yaml --set train.epochs=1 "
                              f"--set data_dir={DATA} --set out_dir={ROOT / 'runs/demo'}")
    assert sub.config["reference"] == str(DATA / "chr22.fa") and sub.config["train"]["epochs"] == 1
    # A config outside the working dir is passed as an absolute path.
    outside = _config(tmp_path, data_dir=str(DATA), out_dir=str(tmp_path / "o"))
    sub = prepare(outside, local=True)
    assert sub.entrypoint == f"python jobs/pipeline.py --config {outside}"


def test_prepare_remote_refuses_relative_paths_and_accepts_shared_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(MethrayError, match=r"demo.yaml: data_dir: '\.\./shared/data/hg19_chr22' is relative.*use s3://"):
        prepare("methray/configs/demo.yaml", local=False)
    with pytest.raises(MethrayError, match=r"out_dir: 'runs/demo' is relative"):
        prepare("methray/configs/demo.yaml", local=False, overrides=["data_dir=s3://bucket/hg19"])
    sub = prepare("methray/configs/demo.yaml", local=False, overrides=["data_dir=s3://bucket/hg19", "out_dir=/shared/runs/demo"])
    assert sub.entrypoint.endswith("--set data_dir=s3://bucket/hg19 --set out_dir=/shared/runs/demo")
    assert sub.config["reference"] == "s3://bucket/hg19/chr22.fa"
    # The default out_dir (runs/run) is relative too.
    cfg = yaml.safe_load((ROOT / "methray/configs/demo.yaml").read_text())
    del cfg["out_dir"]
    cfg["data_dir"] = "s3://bucket/hg19"
    (tmp_path / "nodefault.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(MethrayError, match=r"out_dir: 'runs/run' is relative"):
        prepare(str(tmp_path / "nodefault.yaml"), local=False, working_dir=str(ROOT))
    # A config outside the working dir is not uploaded: refused unless given as an absolute path.
    rel = os.path.relpath(_config(tmp_path, data_dir="s3://b/d", out_dir="s3://b/o"), ROOT)
    with pytest.raises(MethrayError, match="outside the working dir"):
        prepare(rel, local=False)


def test_prepare_score_genome_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sub = prepare("methray/configs/tissue_set.yaml", job="score_genome", date="2025-01-31", local=True)
    tissues = json.loads(re.search(r"--set 'tissues=(\[.*?\])'", sub.entrypoint).group(1))
    assert [t["checkpoint"] for t in tissues] == [str(ROOT / "runs/demo/checkpoint"), str(ROOT / "runs/saliva/checkpoint")]
    assert tissues[0]["measured"] == "imr90_wgbs.bismark.cov.gz"  # relative to data_dir: unchanged
    assert sub.entrypoint.endswith("--date 2025-01-31")
    with pytest.raises(MethrayError, match=r"tissues\[imr90\]\.checkpoint: 'runs/demo/checkpoint' is relative"):
        prepare("methray/configs/tissue_set.yaml", job="score_genome", local=False,
                overrides=["data_dir=s3://b/hg19", "out_dir=s3://b/genome"])


def test_submission_id_scheme():
    t = dt.datetime(2025, 1, 31, 23, 59, 58, tzinfo=dt.timezone.utc)
    assert submission_id("imr90 mrcnn", "2025-01-31", t) == "imr90-mrcnn-2025-01-31-235958"
    # Same scheme as the README's plain `--submission-id demo-$(date -u +%F-%H%M%S)`.
    shell = subprocess.run(["bash", "-c", "TZ=Asia/Tokyo date -u -d @%d +%%F-%%H%%M%%S" % t.timestamp()],
                           capture_output=True, text=True).stdout.strip()
    assert submission_id("demo", "2025-01-31", t) == f"demo-{shell}"
    with pytest.raises(MethrayError, match="YYYY-MM-DD"):
        submission_id("r", "31/01/2025")
