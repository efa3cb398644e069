"""Job configs: the shared header, path resolution, and rerunning a saved config."""

from __future__ import annotations

import os

import pytest
import yaml

from methray.config import JobConfig, RunConfig, Section, load_job_config, packaged_config, resolve_path, save_config
from methray.errors import MethrayError
from methray.regulatory.config import RegulatoryConfig
from methray.genome_scoring.config import TissueSetConfig

from conftest import DATA, FASTA, ROOT

SHIPPED = [(RunConfig, "demo"), (RunConfig, "compare"), (TissueSetConfig, "tissue_set"), (RegulatoryConfig, "regulatory")]


@pytest.mark.parametrize("cls,name", SHIPPED)
def test_saved_config_reloads_to_the_same_paths_from_another_directory(cls, name, tmp_path, monkeypatch):
    # the shipped configs use a relative data_dir (../shared/data/...) and relative inputs
    monkeypatch.chdir(ROOT)
    cfg = load_job_config(cls, str(packaged_config(name)), [f"out_dir={tmp_path / 'run'}"])
    assert isinstance(cfg, JobConfig)
    assert cfg.data_dir == str(DATA) and cfg.reference == str(FASTA) and os.path.exists(cfg.reference)
    saved = tmp_path / "config.yaml"
    save_config(cfg, str(saved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_job_config(cls, str(saved))
    assert again == cfg  # every path was saved absolute: nothing is resolved twice
    assert yaml.safe_load(saved.read_text())["reference"] == str(FASTA)


def test_relative_data_dir_and_inputs_resolve_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {"data_dir": "in", "out_dir": "out", "reference": "g.fa", "cpg_islands": "/abs/i.bed",
            "tissues": [{"name": "t", "path": "sub/t.cov.gz"}, {"name": "u", "path": "s3://b/u.cov.gz"}]}
    cfg = load_job_config(RunConfig, data=data)
    assert cfg.data_dir == str(tmp_path / "in") and cfg.out_dir == str(tmp_path / "out")
    assert cfg.reference == str(tmp_path / "in" / "g.fa") and cfg.tissues[0].path == str(tmp_path / "in" / "sub" / "t.cov.gz")
    assert cfg.cpg_islands == "/abs/i.bed" and cfg.tissues[1].path == "s3://b/u.cov.gz"
    assert cfg.path("checkpoint") == str(tmp_path / "out" / "checkpoint")
    assert data["data_dir"] == "in"  # the caller's dict is not modified


def test_s3_data_dir_keeps_its_scheme():
    cfg = load_job_config(RunConfig, data={"data_dir": "s3://bucket/hg19", "reference": "chr22.fa", "tissues": []},
                          overrides=["out_dir=s3://bucket/runs/x"])
    assert cfg.reference == "s3://bucket/hg19/chr22.fa" and cfg.out_dir == "s3://bucket/runs/x"
    assert resolve_path("a/b", "s3://bucket") == "s3://bucket/a/b" and resolve_path(None, "/x") is None


def test_overrides_on_nested_sections_leave_the_input_alone():
    data = {"reference": "/g.fa", "tissues": [], "train": {"epochs": 3}}
    cfg = load_job_config(RunConfig, data=data, overrides=["train.batch_size=7", "score.actors=2"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.score.actors) == (3, 7, 2)
    assert data["train"] == {"epochs": 3}


def test_every_section_and_job_rejects_unknown_keys():
    with pytest.raises(MethrayError, match="trian"):
        load_job_config(RunConfig, data={"reference": "/g.fa", "tissues": [], "trian": {}})
    with pytest.raises(MethrayError, match=r"score\.actor"):
        load_job_config(TissueSetConfig, data={"reference": "/g.fa", "tissues": [{"name": "a", "checkpoint": "/c"}], "score": {"actor": 2}})
    assert issubclass(TissueSetConfig, JobConfig) and issubclass(RegulatoryConfig, JobConfig)
    assert all(issubclass(type(getattr(RunConfig(reference="/g", tissues=[]), s)), Section) for s in ("score", "ray", "s3", "train"))


def test_job_checks_run_after_loading(tmp_path):
    data = {"reference": "/g.fa", "labels": {"peaks": {"CTCF": "p.narrowPeak"}}, "models": ["deepmethygene"]}
    with pytest.raises(MethrayError, match="'deepmethygene' is not a sequence model"):
        load_job_config(RegulatoryConfig, data=data)
