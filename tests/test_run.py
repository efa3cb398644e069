"""Starting a job: run directory, saved config, progress lines on stdout through the CLI's logging."""

from __future__ import annotations

import logging

from methray.cli import configure_logging
from methray.config import RunConfig, load_job_config
from methray.run import start_run

from conftest import DATA, IMR90


def test_start_run_saves_a_config_that_reloads(tmp_path, monkeypatch, caplog):
    cfg = load_job_config(RunConfig, data={"data_dir": str(DATA), "out_dir": str(tmp_path / "run"), "reference": "chr22.fa",
                                          "tissues": [{"name": "imr90", "path": IMR90.name}]})
    caplog.set_level(logging.INFO, logger="methray")
    run_dir = start_run(cfg, with_ray=False)
    assert run_dir == str(tmp_path / "run")
    assert f"methray: run 'run' -> {run_dir}" in caplog.text
    monkeypatch.chdir(tmp_path)
    assert load_job_config(RunConfig, str(tmp_path / "run" / "config.yaml")) == cfg


def test_cli_logging_prints_progress_plainly_and_warnings_to_stderr(capsys):
    root, methray_log = logging.getLogger(), logging.getLogger("methray")
    saved = [(lg, lg.level, list(lg.handlers)) for lg in (root, methray_log)]
    try:
        configure_logging()
        configure_logging()  # idempotent: one line per message
        log = logging.getLogger("methray.some_stage")
        log.info("prepare imr90: kept 5 CpGs")
        log.warning("ray: start-up timed out")
        out, err = capsys.readouterr()
    finally:  # leave the session's logging as it was
        for lg, level, handlers in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
    assert out == "prepare imr90: kept 5 CpGs\n"
    assert "WARNING methray.some_stage: ray: start-up timed out" in err and "kept 5" not in err
