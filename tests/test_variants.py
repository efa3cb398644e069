"""Variant effects on real 1000 Genomes records of hg19 chr22 (methray.variants)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyfaidx
import pytest
import torch

from methray import checkpoint, models, tasks
from methray.encoding import WindowSpec, encode_sequence
from methray.errors import MethrayError
from methray.genome import Reference
from methray.variants import vcf as vcfio
from methray.variants.config import load_variants_config
from methray.variants.effects import enumerate_pairs
from methray.variants.job import run_variants

from conftest import DATA, FASTA

VCF_1000G = DATA / "1000g_phase1_chr22.vcf.gz"

# Real 1000 Genomes records (VCF POS, 1-based), found in chr22.fa:
ON_N = 50300078            # rs7410291 A>G: chr22.fa is N there
DESTROY_C = 50301899       # rs138658289 C>T at the C of the CpG at 0-based 50301898
DESTROY_G = 50301719       # rs192916413 G>A at the G of the CpG at 0-based 50301717
CREATE_C = 50301664        # rs9627644 T>C before a reference G: new CpG at 0-based 50301663
CREATE_G = 50302850        # rs4075331 A>G after a reference C: new CpG at 0-based 50302848
NO_WINDOW = 50424170       # rs184662424 C>A: no CpG within MRCNN's 200 bp either side
INDEL = 50301957           # C>CT insertion


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(str(FASTA))


@pytest.fixture(scope="module")
def records() -> dict[int, list[str]]:
    """The real VCF lines of the positions above, keyed by POS, and the header lines."""
    wanted = {ON_N, DESTROY_C, DESTROY_G, CREATE_C, CREATE_G, NO_WINDOW, INDEL}
    out: dict = {"header": []}
    with gzip.open(VCF_1000G, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                out["header"].append(line)
                continue
            pos = int(line.split("\t", 2)[1])
            if pos in wanted:
                out[pos] = line.rstrip("\n").split("\t")
            if pos > NO_WINDOW:
                break
    assert wanted <= set(out)
    return out


def test_contig_names_map_to_the_reference():
    mapping, unmapped = vcfio.map_contigs(["22", "chrX", "MT", "GL000207.1"], ["chr22", "X", "chrM"])
    assert mapping == {"22": "chr22", "chrX": "X", "MT": "chrM"}
    assert unmapped == ["GL000207.1"]
    assert vcfio.map_contigs(["chr22"], ["chr22", "22"])[0] == {"chr22": "chr22"}  # exact name first
    with pytest.raises(MethrayError, match="all map onto"):
        vcfio.map_contigs(["22", "chr22"], ["chr22"])


def test_real_vcf_contig_22_maps_to_chr22(ref):
    names = vcfio.vcf_contigs(str(VCF_1000G))
    assert names == ["22"]
    assert vcfio.map_contigs(names, ref.chroms) == ({"22": "chr22"}, [])


def test_status_on_real_positions(ref):
    codes = ref.contig_codes("chr22")
    assert vcfio.classify("A", "G", codes, ON_N - 1) == "on_n"
    assert vcfio.classify("C", "T", codes, DESTROY_C - 1) == "snv"
    assert vcfio.classify("c", "T", codes, DESTROY_C - 1) == "snv"  # case-insensitive
    assert vcfio.classify("A", "T", codes, DESTROY_C - 1) == "ref_mismatch"  # the reference has C
    assert vcfio.classify("C", "CT", codes, INDEL - 1) == "indel"
    assert vcfio.classify("C", "<DEL>", codes, DESTROY_C - 1) == "symbolic"
    assert vcfio.classify("C", "T", codes, len(codes)) == "ref_mismatch"  # past the contig end


def test_read_chunk_of_the_indexed_vcf(ref):
    chunk = vcfio.Chunk("22", "chr22", 50_300_000, 50_310_000)
    df, n = vcfio.read_chunk(str(VCF_1000G), chunk, ref.contig_codes("chr22"), indexed=True)
    with gzip.open(VCF_1000G, "rt") as fh:
        expect = sum(1 for line in fh if not line.startswith("#") and 50_300_000 < int(line.split("\t", 2)[1]) <= 50_310_000)
    assert n == expect == len(df)  # no multi-allelic records here
    assert (df["pos"] == df["vcf_pos"] - 1).all()
    assert set(df["chrom"]) == {"chr22"}
    by = df.set_index("vcf_pos")["status"]
    assert by[ON_N] == "on_n" and by[DESTROY_C] == "snv" and by[INDEL] == "indel"


def test_pairs_on_real_positions(ref):
    codes = ref.contig_codes("chr22")
    spec = WindowSpec(400, exclude_cpg=True)
    pos = np.array([DESTROY_C, DESTROY_G, CREATE_C, CREATE_G, NO_WINDOW], np.int64) - 1
    alt = np.array([3, 0, 1, 2, 0], np.uint8)  # T, A, C, G, A
    pairs = enumerate_pairs(pos, alt, codes, [spec])
    own = pairs[pairs["effect"] != "window"].set_index("variant")
    assert own.loc[0, "effect"] == "destroyed" and own.loc[0, "cpg_pos"] == DESTROY_C - 1
    assert own.loc[1, "effect"] == "destroyed" and own.loc[1, "cpg_pos"] == DESTROY_G - 2
    assert own.loc[2, "effect"] == "created" and own.loc[2, "cpg_pos"] == CREATE_C - 1
    assert own.loc[3, "effect"] == "created" and own.loc[3, "cpg_pos"] == CREATE_G - 2
    assert 4 not in set(pairs["variant"])
    # Every pair is a reference CpG within the window span (created ones are new CpGs).
    d = pos[pairs["variant"]] - pairs["cpg_pos"].to_numpy()
    assert ((d >= -200) & (d <= 201)).all()
    old = pairs[pairs["effect"] != "created"]["cpg_pos"].to_numpy()
    assert ((codes[old] == 1) & (codes[old + 1] == 2)).all()
    seq = pyfaidx.Fasta(str(FASTA))["chr22"]
    assert str(seq[CREATE_C : CREATE_C + 1]).upper() == "G"  # the reference G after the new C
    assert str(seq[CREATE_G - 2 : CREATE_G - 1]).upper() == "C"  # the reference C before the new G


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = models.build("mrcnn", window_length=400, n_outputs=1)
    meta = checkpoint.CheckpointMeta(model="mrcnn", task="methylation", window_length=400, exclude_cpg=True, n_outputs=1, tissue="imr90")
    root = tmp_path_factory.mktemp("ckpt")
    checkpoint.save(root / "checkpoint", model, meta)
    return root / "checkpoint"


def _write_vcf(path: Path, records: dict, extra: list[list[str]] = ()) -> Path:
    rows = [records[p] for p in sorted(k for k in records if k != "header")] + list(extra)
    rows.sort(key=lambda r: int(r[1]))
    path.write_text("".join(records["header"]) + "".join("\t".join(r) + "\n" for r in rows))
    return path


def _config(tmp_path, vcf, ckpt, **extra):
    data = {"run_name": "t", "data_dir": str(DATA), "out_dir": str(tmp_path / "out"), "reference": "chr22.fa",
            "score": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 256}, **extra}
    return load_variants_config(None, None, vcf=str(vcf), checkpoints=[f"m1={ckpt}"], data=data)


def _mrcnn_beta(model, seq: str) -> float:
    """MRCNN prediction of one 402 bp sequence centred on a CpG (its own two bases dropped)."""
    x = torch.from_numpy(encode_sequence(seq[:200] + seq[202:]))[None]
    with torch.inference_mode():
        return float(tasks.predict("methylation", model(x))[0, 0])


@pytest.mark.ray
def test_job_on_real_records(ray_session, tmp_path, records, ckpt):
    # A multi-allelic record (two ALTs at the destroyed C) and a REF that is not the reference's.
    multi = list(records[DESTROY_C])
    multi[3] = str(pyfaidx.Fasta(str(FASTA))["chr22"][DESTROY_C + 3 : DESTROY_C + 4]).upper()
    multi[1], multi[4] = str(DESTROY_C + 4), ",".join(b for b in "ACGT" if b != multi[3])[:3]
    wrong = list(records[DESTROY_G])
    base = str(pyfaidx.Fasta(str(FASTA))["chr22"][DESTROY_G + 9 : DESTROY_G + 10]).upper()
    wrong[1], wrong[3], wrong[4] = str(DESTROY_G + 10), "A" if base != "A" else "C", "G"
    vcf = _write_vcf(tmp_path / "real.vcf", records, [multi, wrong])
    cfg = _config(tmp_path, vcf, ckpt, max_ref_mismatch_fraction=0.5)
    s = run_variants(cfg)
    c = s["counts"]
    assert c["records"] == 9 and c["alleles"] == 10
    assert c["on_n"] == 1 and c["indel"] == 1
    assert c["ref_mismatch"] == 1 and c["snv"] == 7
    prefix = Path(s["prefix"])
    eff = pd.read_parquet(prefix / "effects.parquet")
    var = pd.read_parquet(prefix / "variants.parquet")
    # Sorted by position, and the TSV holds the same rows.
    assert eff["pos"].is_monotonic_increasing and var["pos"].is_monotonic_increasing
    assert len(pd.read_csv(prefix / "effects.tsv", sep="\t")) == len(eff)
    assert len(var) == c["alleles"]  # one model: one summary row per allele
    # Destroyed CpGs: reference predicted, ALT undefined; created: the other way round.
    d = eff[eff["effect"] == "destroyed"]
    assert {DESTROY_C, DESTROY_G} <= set(d["vcf_pos"])
    assert d["beta_ref"].notna().all() and d["beta_alt"].isna().all() and d["delta"].isna().all()
    cr = eff[eff["effect"] == "created"]
    assert {CREATE_C, CREATE_G} <= set(cr["vcf_pos"])
    assert cr["beta_ref"].isna().all() and cr["beta_alt"].notna().all()
    v = var.set_index("vcf_pos")
    assert v.loc[DESTROY_C, "destroys_cpg"] and v.loc[CREATE_C, "creates_cpg"]
    # A variant outside every window changes nothing: exactly zero, no CpG.
    assert v.loc[NO_WINDOW, "n_cpgs"] == 0 and v.loc[NO_WINDOW, "max_abs_delta"] == 0.0
    assert v.loc[ON_N, "status"] == "on_n" and np.isnan(v.loc[ON_N, "max_abs_delta"])
    # One window pair recomputed by hand from the FASTA with the model.
    model, _ = checkpoint.load(str(ckpt))
    row = eff[(eff["vcf_pos"] == CREATE_G) & (eff["effect"] == "window")].iloc[0]
    seq = list(str(pyfaidx.Fasta(str(FASTA))["chr22"][row.cpg_pos - 200 : row.cpg_pos + 202]))
    assert _mrcnn_beta(model, "".join(seq)) == pytest.approx(row.beta_ref, abs=1e-5)
    seq[200 + row.distance] = row.alt
    assert _mrcnn_beta(model, "".join(seq)) == pytest.approx(row.beta_alt, abs=1e-5)
    assert row.distance == row.pos - row.cpg_pos
    # Rerun: complete, nothing redone. Without the final tables: assembled again from the chunks.
    assert run_variants(cfg)["already_complete"]
    for name in ("_summary.json", "effects.parquet", "variants.parquet"):
        (prefix / name).unlink()
    again = run_variants(cfg)
    assert again["chunks_done_before"] == again["chunks"] and again["snv_scored_this_run"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(prefix / "effects.parquet"), eff)


def test_ref_mismatches_above_the_limit_fail_before_anything_is_written(tmp_path, records, ckpt):
    # 30 SNVs on real sequence whose REF is never the reference base: a wrong assembly.
    seq = pyfaidx.Fasta(str(FASTA))["chr22"]
    rows, pos = [], DESTROY_C
    while len(rows) < 30:
        pos += 7  # 1-based
        base = str(seq[pos - 1 : pos]).upper()
        if base not in "ACGT":
            continue
        wrong = "A" if base != "A" else "C"
        rows.append(["22", str(pos), ".", wrong, "T" if wrong != "T" else "G", "100", "PASS", ".", "GT", *["0|1"] * 5])
    vcf = tmp_path / "bad.vcf"
    vcf.write_text("".join(records["header"]) + "".join("\t".join(r) + "\n" for r in rows))
    cfg = _config(tmp_path, vcf, ckpt, max_ref_mismatch_fraction=0.1)
    with pytest.raises(MethrayError, match="REF differs .* for 30 of 30"):
        run_variants(cfg)
    assert not (tmp_path / "out").exists()


def test_cli_one_line_error_for_a_missing_vcf(tmp_path, ckpt, capsys):
    from methray.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["variants", "--vcf", str(tmp_path / "none.vcf.gz"), "--checkpoint", str(ckpt), "-r", str(FASTA), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("methray: error: ") and "VCF not found" in err[0]
    assert not (tmp_path / "o").exists()
