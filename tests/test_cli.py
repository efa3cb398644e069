"""The methray command: version, help, completion, and the common --config / --set / --out."""

from __future__ import annotations

import json

import pytest
import yaml

from methray.cli import main

from conftest import DATA


def run(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_version_and_short_help(capsys):
    from methray import __version__

    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"methray {__version__}" and err == ""
    code, out, err = run(capsys, "-h")
    assert code == 0 and "score-genome" in out and "Traceback" not in out + err
    code, out, _ = run(capsys, "score-genome", "-h")
    assert code == 0 and all(flag in out for flag in ("--config", "--set", "--out", "--date"))


def test_shell_completion_is_on():
    # From bash, as a user types it: typer's --show-completion takes no value and detects the
    # shell from the calling processes, so without a shell above the test (a detached run) it
    # would print "Shell  not supported.". In a subprocess: in the suite's process the printed
    # script was at times not captured after other tests had run.
    import shlex
    import subprocess
    import sys

    command = f"{shlex.quote(sys.executable)} -m methray.cli --show-completion; exit $?"  # not exec-ed: bash stays the parent
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "_methray_completion" in done.stdout, done.stderr


@pytest.mark.parametrize("command", ["prepare", "train", "score", "evaluate", "pipeline", "compare", "regulatory", "cpgs", "score-genome"])
def test_every_job_command_takes_config_set_out(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and all(flag in out for flag in ("--config", "--set", "--out")), command


def test_cpgs_from_a_config_file(capsys, tmp_path):
    conf = tmp_path / "cpgs.yaml"
    conf.write_text(yaml.safe_dump({"data_dir": str(DATA), "reference": "chr22.fa", "chroms": ["chr22"], "out_dir": str(tmp_path / "unused")}))
    out_dir = tmp_path / "cpgs"
    code, out, err = run(capsys, "cpgs", "--config", str(conf), "--set", "max_n_fraction=0.4", "--out", str(out_dir))
    assert code == 0, err
    summary = json.loads((out_dir / "_summary.json").read_text())
    assert summary["max_n_fraction"] == 0.4 and summary["per_chrom"]["chr22"]["cpgs"] == 336_904
    assert not (tmp_path / "unused").exists()
    code, _, err = run(capsys, "cpgs", "--config", str(conf), "--set", "max_n_fractoin=0.4")
    assert code == 2 and err.startswith("methray: error: ") and "max_n_fractoin" in err and len(err.strip().splitlines()) == 1


def test_submit_job_names_are_command_names():
    from methray.submit import JOBS, entrypoint

    assert "score-genome" in JOBS and "score_genome" not in JOBS
    assert entrypoint("score-genome", "c.yaml", date="2025-01-02") == "python jobs/score_genome.py --config c.yaml --date 2025-01-02"
    assert entrypoint("score_genome", "c.yaml").startswith("python jobs/score_genome.py")  # old spelling still accepted
