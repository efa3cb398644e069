"""Every input and output on S3: a real S3 server (moto, loopback only), the real chr22 data.

The pipeline runs as a user runs it: ``methray pipeline --config FILE`` in a subprocess, with
its own embedded Ray (so the workers see only what methray hands them: the endpoint comes
from the config's ``s3`` section alone, credentials from the standard AWS variables), and a
private ``RAY_TMPDIR`` so that it cannot join another Ray on the machine.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import FASTA, ISLANDS, ROOT, slice_config

BUCKET = "methray-test"
KEY_ID, SECRET = "testing", "methray-test-secret-do-not-print"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1 (random port), stopped after the module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server):
    """An s3fs client of the test server (explicit settings; the test process env is untouched)."""
    import s3fs

    fs = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.mkdir(BUCKET)
    return fs


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        METHRAY_CACHE=str(tmp / "cache"),
        # A private Ray temp dir (short: Ray's socket paths must stay < 108 bytes): `ray.init`
        # finds no cluster there and starts its own instead of joining one on this machine.
        RAY_TMPDIR=tempfile.mkdtemp(prefix="mr", dir="/tmp"),
    )
    return env


def _methray(args: list[str], tmp: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "methray.cli", *args], env=_env(tmp), capture_output=True, text=True, timeout=timeout, cwd=tmp)


@pytest.fixture(scope="module")
def s3_run(s3, s3_server, imr90_slice, tmp_path_factory):
    """The whole pipeline with inputs and out_dir on S3; returns (out prefix, process)."""
    for local in (FASTA, Path(f"{FASTA}.fai"), ISLANDS, imr90_slice):
        s3.put_file(str(local), f"{BUCKET}/data/{local.name}")
    tmp = tmp_path_factory.mktemp("s3run")
    cfg = slice_config(f"s3://{BUCKET}/runs/s3run", Path(imr90_slice.name), data_dir=f"s3://{BUCKET}/data", s3={"endpoint_url": s3_server, "region": REGION}, ray={"num_cpus": 2})
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = _methray(["pipeline", "--config", str(config)], tmp, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return f"{BUCKET}/runs/s3run", proc, tmp


def test_every_output_lands_on_s3(s3, s3_run):
    out, _, _ = s3_run
    for name in ("config.yaml", "prepare_report.json", "split_regions.tsv", "train_history.tsv", "metrics.tsv", "metrics.parquet",
                 "imr90.mrcnn.bedGraph", "imr90.cpg_density.bedGraph", "predictions/imr90.mrcnn.parquet",
                 "checkpoint/model.pt", "checkpoint/meta.json"):
        assert s3.exists(f"{out}/{name}"), name
    assert s3.glob(f"{out}/cpg_table/chrom=chr22/*.parquet"), "CpG table not written by pyarrow to S3"
    # Ray Train's own storage (storage_path + storage_filesystem) is on S3 too.
    assert s3.glob(f"{out}/ray_train/*/checkpoint_*/best/model.pt"), s3.find(f"{out}/ray_train")[:20]
    metrics = pd.read_csv(io.BytesIO(s3.cat_file(f"{out}/metrics.tsv")), sep="\t")
    assert set(metrics["model"]) == {"mrcnn", "cpg_density", "composition_gbm"} and (metrics.loc[metrics["subset"] == "all", "n"] > 500).all()


def test_bedgraph_from_s3_parseable(s3, s3_run):
    out, _, _ = s3_run
    text = s3.cat_file(f"{out}/imr90.mrcnn.bedGraph").decode()
    assert text.startswith("track type=bedGraph")
    bg = pd.read_csv(io.StringIO(text), sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "value"])
    assert len(bg) > 500 and (bg["chrom"] == "chr22").all()
    assert (bg["end"] - bg["start"] == 1).all() and bg["value"].between(0, 1).all()
    assert bg["start"].is_monotonic_increasing


def test_reference_cached_locally_and_config_points_at_s3(s3, s3_run):
    out, _, tmp = s3_run
    cached = list((tmp / "cache").glob("genome-v1/*/fasta/chr22.fa"))  # downloaded once per node
    assert cached and cached[0].stat().st_size == FASTA.stat().st_size
    assert Path(f"{cached[0]}.fai").exists()  # the index came from S3, not rebuilt
    saved = yaml.safe_load(s3.cat_file(f"{out}/config.yaml"))
    assert saved["reference"] == f"s3://{BUCKET}/data/chr22.fa" and saved["out_dir"] == f"s3://{BUCKET}/runs/s3run"


def test_credentials_never_printed_or_stored(s3, s3_run):
    out, proc, _ = s3_run
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    for path in s3.find(out):
        if path.endswith((".yaml", ".json", ".tsv", ".bedGraph")):
            assert SECRET.encode() not in s3.cat_file(path), path


def test_missing_bucket_is_a_clear_error(s3, s3_server, imr90_slice, tmp_path):
    cfg = slice_config("s3://no-such-bucket/run", imr90_slice, s3={"endpoint_url": s3_server, "region": REGION})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = _methray(["prepare", "--config", "run.yaml"], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("methray: error: s3://no-such-bucket/run: S3 bucket 'no-such-bucket' does not exist"), proc.stderr


def test_unreachable_endpoint_is_a_clear_error(imr90_slice, tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = slice_config(tmp_path / "out", imr90_slice, reference=f"s3://{BUCKET}/data/chr22.fa", s3={"endpoint_url": closed, "region": REGION},
                       storage={"retry_budget_s": 3, "connect_timeout_s": 1, "backoff_s": 0.5})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = _methray(["prepare", "--config", "run.yaml"], tmp_path, timeout=60)
    assert proc.returncode == 2
    *retries, last = proc.stderr.strip().splitlines()
    # Retried within the budget (one status line per retry), then one line.
    assert retries and all(line.startswith("WARNING methray.storage: S3 unreachable, retry ") for line in retries), proc.stderr
    assert last.startswith(f"methray: error: s3://{BUCKET}/data/chr22.fa: lookup failed (S3 unreachable at {closed}: EndpointConnectionError) after "), proc.stderr


def test_worker_env_forwards_endpoint_not_credentials(monkeypatch):
    import json

    from methray.runtime import worker_env

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.delenv("METHRAY_STORAGE_POLICY", raising=False)
    assert worker_env() == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": REGION}
    # The storage-fault policy travels with them (tasks and actors retry as the driver does).
    monkeypatch.setenv("METHRAY_STORAGE_POLICY", '{"retry_budget_s": 60}')
    assert worker_env()["METHRAY_STORAGE_POLICY"] == '{"retry_budget_s": 60}'
    monkeypatch.delenv("METHRAY_STORAGE_POLICY")
    # Inside a submitted job that already sets the endpoint, Ray would refuse the same key twice.
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"env_vars": {"AWS_ENDPOINT_URL": "http://x"}}}))
    assert worker_env() == {"AWS_DEFAULT_REGION": REGION}
