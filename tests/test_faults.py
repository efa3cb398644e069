"""Storage faults: a real S3 server (moto, loopback) behind a TCP proxy the tests cut and stall.

Genome-wide scoring of a 300 kb slice of the real chr22 (untrained MRCNN checkpoint on S3,
outputs on S3) runs as a user runs it, ``methray score-genome`` in a subprocess with its own
embedded Ray, while :class:`faultproxy.FaultProxy` between methray and the store plays the
faults: an outage shorter than the retry budget, one longer than it, a store that stops
reading mid-upload, and an endpoint that accepts connections and never answers. Training
with its Ray Train storage and checkpoints on S3 (``methray train`` on the real IMR90 sites,
tiny settings) meets an outage longer than the budget during a checkpoint upload, then a
short one during the rerun that resumes it. Budgets are seconds here (``storage.*`` in the
config); the defaults are minutes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import DATA, IMR90, ROOT, head_lines, slice_config, write_gz
from faultproxy import FaultProxy

BUCKET = "methray-faults"
KEY_ID, SECRET = "testing", "methray-faults-secret"
REGION = "chr22:24,080,000-24,380,000"  # 6 shards of 50 kb, about 3,000 CpGs
ERROR_LINE = re.compile(r"^methray: error: s3://\S+: \w[\w ]* failed \(.+\) after \d+ attempts over \d+ s$")
# Seconds: small budgets so that every failing run ends quickly.
FAST = {"retry_budget_s": 8, "connect_timeout_s": 2, "read_timeout_s": 4, "request_timeout_s": 4, "backoff_s": 0.5, "backoff_max_s": 2}
# Hang guard of a subprocess run: generous, since starting Ray on a loaded 2-core machine can
# take a minute; a run that hangs (as a stalled upload did) never ends.
HANG_S = 400


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(moto endpoint, proxy, s3fs client of moto itself): the proxy is what methray sees."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultProxy(port)
    fs = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": f"http://{host}:{port}"}, skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir(BUCKET)
    # An untrained MRCNN checkpoint, on S3 (loaded by the driver and by the predictor actor).
    from methray import checkpoint, models

    torch.manual_seed(0)
    local = tmp_path_factory.mktemp("ckpt")
    meta = checkpoint.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1, tissue="imr90")
    checkpoint.save(local / "checkpoint", models.build("mrcnn", window_length=400, n_outputs=1), meta)
    fs.put(str(local / "checkpoint"), f"{BUCKET}/models/imr90/", recursive=True)
    yield proxy, fs
    proxy.close()
    server.stop()


@pytest.fixture(autouse=True)
def _store_up(store):
    store[0].up()
    yield
    store[0].up()


def _env(tmp: Path) -> dict:
    """The environment of a methray subprocess: test credentials, its own Ray temp dir.

    The local genome cache is shared by the session's runs (beside their temporary
    directories), as by the runs of one machine: built once, not once a run.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(
        PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
        METHRAY_CACHE=str(tmp.parent / "methray-cache"), RAY_TMPDIR=tempfile.mkdtemp(prefix="mf", dir="/tmp"),
    )
    return env


def _run(proxy, tmp: Path, args: list[str], env: dict, timeout: float) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``methray ARGS`` in ``tmp``; return the process and how long it took (and since the fault)."""
    t = time.monotonic()
    proc = subprocess.run(  # the timeout is the hang guard
        [sys.executable, "-m", "methray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp,
    )
    end = time.monotonic()
    took = f"{end - t:.1f} s" + (f" ({end - max(t, proxy.fault_at):.1f} s after the fault began)" if proxy.fault_at else "")
    return proc, took


def _score(store, tmp: Path, date: str, policy: dict, timeout: float) -> tuple[subprocess.CompletedProcess, str]:
    proxy, _ = store
    cfg = {
        "run_name": "faults",
        "data_dir": str(DATA),
        "out_dir": f"s3://{BUCKET}/runs",
        "reference": "chr22.fa",
        "cpg_islands": "cpg_islands.bed",
        "regions": [REGION],
        "shard_bp": 50_000,
        "tissues": [{"name": "imr90", "checkpoint": f"s3://{BUCKET}/models/imr90/checkpoint"}],
        "score": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 256},
        "ray": {"num_cpus": 2},
        "s3": {"endpoint_url": proxy.url, "region": "us-east-1"},
        "storage": policy,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "set.yaml").write_text(yaml.safe_dump(cfg))
    return _run(proxy, tmp, ["score-genome", "--config", "set.yaml", "--date", date], _env(tmp), timeout)


def _prefix(date: str) -> str:
    return f"{BUCKET}/runs/faults/{date}"


def _outputs(fs, date: str) -> dict[str, bytes]:
    """The run's track and predictions, relative name -> bytes."""
    prefix = _prefix(date)
    names = ["imr90.mrcnn.bedGraph", "imr90.mrcnn.bw", *(p[len(prefix) + 1 :] for p in fs.find(f"{prefix}/predictions"))]
    return {n: fs.cat_file(f"{prefix}/{n}") for n in names}


def _assert_one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("methray: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr[-3000:]
    assert ERROR_LINE.match(errors[0]), errors[0]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    return errors[0]


def _assert_nothing_partial(fs, date: str) -> None:
    """Every object under a final name is complete: Parquet files read, JSON parses, no summary yet."""
    prefix = _prefix(date)
    found = fs.find(prefix)
    assert not fs.exists(f"{prefix}/_summary.json")
    for path in found:
        assert ".tmp-" not in path, path
        data = fs.cat_file(path)
        if path.endswith(".parquet"):
            pq.read_table(io.BytesIO(data))
        elif path.endswith(".json"):
            json.loads(data)


@pytest.fixture(scope="module")
def never_answers_then_reference(store, tmp_path_factory):
    """Fault 4, then the reference: an endpoint that accepts and never answers (the run stops
    at start-up); then the same run against the store, uninterrupted: its outputs are the
    reference of every other test, and its uploads (PUT requests) are counted."""
    proxy, fs = store
    tmp = tmp_path_factory.mktemp("ref")
    proxy.blackhole()
    failed, failed_s = _score(store, tmp, "2025-01-01", FAST, timeout=HANG_S)
    proxy.up()
    proxy.count_puts()
    rerun, rerun_s = _score(store, tmp, "2025-01-01", FAST, timeout=HANG_S)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    print(f"never answers: exit {failed.returncode} after {failed_s}: {failed.stderr.strip().splitlines()[-1:]}; "
          f"rerun exit {rerun.returncode} after {rerun_s}")
    return failed, _outputs(fs, "2025-01-01"), proxy.puts


def test_endpoint_that_never_answers(never_answers_then_reference):
    failed, reference, n_puts = never_answers_then_reference
    line = _assert_one_error_line(failed)
    assert "S3 timed out" in line or "no complete answer" in line
    assert n_puts > 10 and len(reference) == 2 + 6  # both tracks; the 6 shards with CpGs (one has none)


def test_outage_longer_than_budget_ends_in_one_line_then_resumes(store, never_answers_then_reference, tmp_path):
    proxy, fs = store
    _, reference, n_puts = never_answers_then_reference
    proxy.down_after_put(n_puts // 2, seconds=3600)  # mid-run, while shards are written; back when the test says
    proc, seconds = _score(store, tmp_path, "2025-01-03", FAST, timeout=HANG_S)
    line = _assert_one_error_line(proc)
    print(f"outage > budget: exit {proc.returncode} after {seconds}: {line}")
    assert "S3 unreachable" in line or "S3 connection lost" in line
    proxy.up()
    _assert_nothing_partial(fs, "2025-01-03")
    rerun, seconds = _score(store, tmp_path, "2025-01-03", FAST, timeout=HANG_S)
    print(f"outage > budget, rerun: exit {rerun.returncode} after {seconds}; {rerun.stdout.strip().splitlines()[-4:]}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(r"shards: 7 \([1-6] done before this run\)", rerun.stdout), rerun.stdout
    assert "nan" not in rerun.stdout
    assert _outputs(fs, "2025-01-03") == reference


def test_stalled_upload_does_not_hang_and_short_outage_is_survived(store, never_answers_then_reference, tmp_path):
    proxy, fs = store
    _, reference, n_puts = never_answers_then_reference
    # Fault 3: the store stops reading in the middle of the first upload (a CpG-table part).
    proxy.stall_after_put(1)
    proc, seconds = _score(store, tmp_path, "2025-01-04", FAST, timeout=HANG_S)
    line = _assert_one_error_line(proc)
    print(f"stalled upload: exit {proc.returncode} after {seconds}: {line}")
    assert "S3 gave no complete answer within" in line or "S3 timed out" in line
    proxy.up()
    _assert_nothing_partial(fs, "2025-01-04")
    # Fault 1, during the rerun: the store goes away for 3 s while shards are written.
    proxy.down_after_put(n_puts // 2, seconds=3)
    rerun, seconds = _score(store, tmp_path, "2025-01-04", {**FAST, "retry_budget_s": 30}, timeout=HANG_S)
    print(f"stalled upload, rerun with a 3 s outage: exit {rerun.returncode} after {seconds}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "S3 unreachable, retry 1 in" in rerun.stderr  # one status line per retry
    assert "nan" not in rerun.stdout
    assert _outputs(fs, "2025-01-04") == reference


# ---------------------------------------------------------------- training: Ray Train checkpoints on S3


def _ray_logs(env: dict, pattern: str) -> list[str]:
    """Lines of the Ray worker / controller logs of a run (its private ``RAY_TMPDIR``) that match."""
    found = []
    for path in Path(env["RAY_TMPDIR"]).glob("ray/session_*/logs/*.err"):
        found += [line for line in path.read_text(errors="replace").splitlines() if re.search(pattern, line)]
    return found


def test_ray_train_failures_unwrap_to_the_storage_error():
    """Synthetic: the shapes in which Ray Train hands a worker's or its controller's error back."""
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    from methray.errors import find_methray_error
    from methray.storage import StorageError

    err = StorageError("s3://b/ray_train/run/checkpoint_1/latest.pt: upload failed (S3 unreachable) after 7 attempts over 8 s")
    failures = {0: UserExceptionWithTraceback(RuntimeError("collective aborted"), "tb"), 1: UserExceptionWithTraceback(err, "tb")}
    assert find_methray_error(WorkerGroupError("2 workers failed", failures)) is err
    assert find_methray_error(ControllerError(err)) is err
    assert find_methray_error(WorkerGroupError("a bug", {0: UserExceptionWithTraceback(KeyError("x"), "tb")})) is None


@pytest.mark.slow
def test_training_survives_outages_through_checkpoints(store, tmp_path):
    """An outage past the budget during epoch 2's checkpoint upload ends ``methray train`` with
    one line; the rerun resumes from epoch 1's checkpoint, rides out a 3 s outage during its own
    checkpoint upload (retried by the policy in the Ray Train worker) and finishes all epochs."""
    proxy, fs = store
    # The measured-sites table of a real IMR90 slice, prepared locally once and put on S3.
    prep = tmp_path / "prep"
    cov = write_gz(tmp_path / "imr90_slice.cov.gz", head_lines(IMR90, 6000))
    (tmp_path / "prep.yaml").write_text(yaml.safe_dump(slice_config(prep, cov)))
    prepared = subprocess.run([sys.executable, "-m", "methray.cli", "prepare", "--config", "prep.yaml"], env=_env(tmp_path),
                              capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    out = f"{BUCKET}/train"
    fs.put(str(prep / "cpg_table"), f"{out}/cpg_table", recursive=True)
    for name, policy in (("train.yaml", FAST), ("rerun.yaml", {**FAST, "retry_budget_s": 30})):
        cfg = slice_config(f"s3://{out}", cov, train={"epochs": 3, "max_train_sites": 300}, ray={"num_cpus": 2},
                           s3={"endpoint_url": proxy.url, "region": "us-east-1"}, storage=policy)
        (tmp_path / name).write_text(yaml.safe_dump(cfg))

    # Down from the start of epoch 2's checkpoint upload (its second latest.pt) until told.
    proxy.down_after_put(2, seconds=3600, match="latest.pt")
    failed, seconds = _run(proxy, tmp_path, ["train", "--config", "train.yaml"], _env(tmp_path), timeout=HANG_S)
    line = _assert_one_error_line(failed)
    print(f"training, outage > budget: exit {failed.returncode} after {seconds}: {line}")
    assert "S3 unreachable" in line or "S3 connection lost" in line
    assert "/ray_train/" in line and "train mrcnn epoch 2" not in failed.stdout, failed.stdout
    proxy.up()
    assert not fs.exists(f"{out}/checkpoint") and not fs.exists(f"{out}/train_history.tsv")

    # The rerun (same out_dir, a budget of 30 s) resumes from epoch 1; the store goes away for
    # 3 s as epoch 2's checkpoint uploads.
    proxy.down_after_put(1, seconds=3, match="latest.pt")
    env = _env(tmp_path)
    rerun, seconds = _run(proxy, tmp_path, ["train", "--config", "rerun.yaml"], env, timeout=HANG_S)
    print(f"training, rerun with a 3 s outage: exit {rerun.returncode} after {seconds}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not proxy.armed  # the outage happened
    assert _ray_logs(env, r"S3 unreachable, retry 1 in .* \(upload s3://\S+/ray_train/\S+/latest.pt\)")
    history = pd.read_csv(io.BytesIO(fs.cat_file(f"{out}/train_history.tsv")), sep="\t")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["resumed_from_epoch"].tolist() == [0, 1, 1]  # epochs 2 and 3 trained by the rerun
    meta = json.loads(fs.cat_file(f"{out}/checkpoint/meta.json"))
    assert meta["epoch"] in (1, 2, 3) and meta["val_loss"] == pytest.approx(history["best_val_loss"].iloc[-1])
    fs.get(f"{out}/checkpoint/", str(tmp_path / "checkpoint"), recursive=True)
    from methray import checkpoint

    model, loaded = checkpoint.load(str(tmp_path / "checkpoint"))  # a usable checkpoint: it loads and predicts
    assert loaded.epoch == meta["epoch"] and model(torch.zeros(2, 400, 4)).shape[0] == 2


# ---------------------------------------------------------------- in Ray tasks, actors and Ray Data


@pytest.mark.ray
def test_budget_spent_in_a_task_an_actor_or_ray_data_is_methray_error(ray_session, store):
    from methray.errors import find_methray_error
    from methray.runtime import configure_ray_data
    from methray.storage import StorageError

    proxy, _ = store
    proxy.down()
    path, endpoint, policy = f"s3://{BUCKET}/runs/none.parquet", proxy.url, {**FAST, "retry_budget_s": 2}

    def lookup(_=None):  # defined here so that Ray ships it by value to its workers
        from methray import storage

        storage.configure_s3(endpoint, "us-east-1", policy)
        return storage.exists(path)

    class Probe:
        def run(self):
            return lookup()

    env = {"env_vars": {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}}
    task = ray_session.remote(lookup).options(runtime_env=env)
    actor = ray_session.remote(Probe).options(runtime_env=env).remote()
    configure_ray_data()
    import ray.data

    ds = ray.data.from_items([{"x": 1}]).map_batches(lambda b: {"x": [lookup()]}, runtime_env=env)
    for where, run in (("task", lambda: ray_session.get(task.remote())),
                       ("actor", lambda: ray_session.get(actor.run.remote())),
                       ("ray data", lambda: ds.take_all())):
        with pytest.raises(Exception) as info:
            run()
        err = find_methray_error(info.value)
        assert isinstance(err, StorageError), (where, type(info.value), info.value)
        assert ERROR_LINE.match(f"methray: error: {err}") and err.path == path, (where, str(err))
