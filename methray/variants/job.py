"""The variant-effect job: a VCF, one or more checkpoints -> per-CpG effects, resumable.

1. **Contigs and plan**: VCF contigs are mapped to the reference (:func:`.vcf.map_contigs`);
   records on contigs that do not map are counted. The mapped contigs are cut into chunks of
   ``chunk_bp`` (one chunk per contig for a VCF without an index), pinned in a
   :class:`~methray.shards.ShardLedger` under ``<prefix>/_shards/``.
2. **Check**: before Ray starts, the first :data:`PRECHECK_RECORDS` records are classified;
   a REF-mismatch fraction above ``max_ref_mismatch_fraction`` fails at once (wrong assembly);
   the same limit is applied to the final counts.
3. **Score**: one Ray Data pipeline over the missing chunks: a task per chunk reads its
   records with cyvcf2 (:func:`chunk_rows`: split, classify, enumerate the (SNV, CpG) pairs),
   an actor pool of :class:`~.effects.VariantPredictor` predicts each pair's CpG with the
   reference and the ALT window.
4. **Per chunk**, as soon as all its rows are back: ``chunks/<chunk id>.effects.parquet`` and
   ``chunks/<chunk id>.variants.parquet`` (sorted), then its ledger marker with the chunk's
   counts. Memory holds the chunks in flight, never the whole VCF.
5. **Assemble**: the chunk files are streamed in plan order (reference order, then position)
   into ``effects.parquet`` / ``effects.tsv`` and ``variants.parquet`` / ``variants.tsv``;
   ``_summary.json`` is written last (a prefix with it is complete).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import checkpoint as ckpt
from .. import storage
from ..context import refuse_context
from ..encoding import BASE_CODES
from ..errors import MethrayError
from ..genome import open_reference
from ..predictor import map_checkpoints
from ..shards import Shard, ShardLedger, plan_shards
from . import vcf as vcfio
from .config import VariantsConfig
from .effects import VariantPredictor, enumerate_pairs

log = logging.getLogger(__name__)

PRECHECK_RECORDS = 10_000
SUMMARY_NAME = "_summary.json"
JOB_NAME = "job.json"

EFFECT_COLUMNS = [
    "chrom", "pos", "vcf_pos", "id", "ref", "alt", "allele", "filter", "model",
    "cpg_pos", "distance", "effect", "beta_ref", "beta_alt", "delta",
]
VARIANT_COLUMNS = [
    "chrom", "pos", "vcf_pos", "id", "ref", "alt", "allele", "filter", "status", "model",
    "n_cpgs", "n_cpgs_affected", "destroys_cpg", "creates_cpg", "max_abs_delta",
]
EFFECT_SCHEMA = pa.schema([
    ("chrom", pa.string()), ("pos", pa.int64()), ("vcf_pos", pa.int64()), ("id", pa.string()),
    ("ref", pa.string()), ("alt", pa.string()), ("allele", pa.int16()), ("filter", pa.string()),
    ("model", pa.string()), ("cpg_pos", pa.int64()), ("distance", pa.int64()), ("effect", pa.string()),
    ("beta_ref", pa.float32()), ("beta_alt", pa.float32()), ("delta", pa.float32()),
])
VARIANT_SCHEMA = pa.schema([
    ("chrom", pa.string()), ("pos", pa.int64()), ("vcf_pos", pa.int64()), ("id", pa.string()),
    ("ref", pa.string()), ("alt", pa.string()), ("allele", pa.int16()), ("filter", pa.string()),
    ("status", pa.string()), ("model", pa.string()), ("n_cpgs", pa.int32()), ("n_cpgs_affected", pa.int32()),
    ("destroys_cpg", pa.bool_()), ("creates_cpg", pa.bool_()), ("max_abs_delta", pa.float32()),
])


def _say(msg: str) -> None:
    log.info(msg)


# ---------------------------------------------------------------- stage 1: read a chunk


def chunk_rows(batch: dict[str, np.ndarray], vcf: str, reference: str, specs: list, indexed: bool) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: chunk rows -> one row per (allele, CpG) pair.

    Parameters
    ----------
    batch
        Chunk rows: ``vcf_chrom``, ``chrom`` (reference name), ``start``, ``end`` (0-based
        half-open), ``chunk`` (plan index).
    vcf, reference
        Paths.
    specs
        The models' :class:`~methray.encoding.WindowSpec` (pairs cover their union).
    indexed
        Whether the VCF has a tabix / CSI index.

    Returns
    -------
    dict
        Columns ``chunk``, ``n_rows`` (rows this chunk yields, for the driver to know when a
        chunk is complete), ``n_records``, ``vrow`` (allele row within the chunk; -1 for the
        one placeholder row of an empty chunk), the allele columns of
        :data:`methray.variants.vcf.ALLELE_COLUMNS`, ``cpg_pos`` (int64; -1 on the row of an
        allele without pairs) and ``effect``.
    """
    ref = open_reference(reference)
    parts = []
    for vchrom, chrom, start, end, idx in zip(batch["vcf_chrom"], batch["chrom"], batch["start"], batch["end"], batch["chunk"]):
        chunk = vcfio.Chunk(str(vchrom), str(chrom), int(start), int(end))
        codes = ref.contig_codes(chunk.chrom)
        alleles, n_records = vcfio.read_chunk(vcf, chunk, codes, indexed)
        alleles["vrow"] = np.arange(len(alleles), dtype=np.int64)
        snv = alleles[alleles["status"] == "snv"]
        alt_codes = BASE_CODES[np.frombuffer("".join(snv["alt"]).encode("ascii"), np.uint8)] if len(snv) else np.zeros(0, np.uint8)
        pairs = enumerate_pairs(snv["pos"].to_numpy(np.int64), alt_codes, codes, specs)
        pairs["vrow"] = snv["vrow"].to_numpy()[pairs["variant"].to_numpy()]
        paired = alleles.merge(pairs[["vrow", "cpg_pos", "effect"]], on="vrow", how="left")
        paired["cpg_pos"] = paired["cpg_pos"].fillna(-1).astype(np.int64)
        paired["effect"] = paired["effect"].fillna("none")
        if paired.empty:
            paired = pd.DataFrame({c: [v] for c, v in {
                "chrom": chunk.chrom, "pos": -1, "vcf_pos": -1, "id": ".", "ref": ".", "alt": ".", "allele": 0,
                "filter": ".", "status": "none", "vrow": -1, "cpg_pos": -1, "effect": "none"}.items()})
        paired["chunk"] = np.int64(idx)
        paired["n_rows"] = np.int64(len(paired))
        paired["n_records"] = np.int64(n_records)
        parts.append(paired)
    df = pd.concat(parts, ignore_index=True)
    for c in ("pos", "vcf_pos", "vrow", "cpg_pos", "chunk", "n_rows", "n_records"):
        df[c] = df[c].astype(np.int64)
    df["allele"] = df["allele"].astype(np.int16)
    return {c: df[c].to_numpy() for c in df.columns}


# ---------------------------------------------------------------- per chunk tables


def chunk_tables(df: pd.DataFrame, labels: list[str], min_abs_delta: float) -> tuple[pd.DataFrame, pd.DataFrame, Counter]:
    """A finished chunk's rows -> (effects, per-variant summary, counts).

    Returns
    -------
    (pd.DataFrame, pd.DataFrame, Counter)
        Effects: one row per (allele, CpG, model), :data:`EFFECT_COLUMNS`, sorted by
        position, allele, model, CpG. Summary: one row per (allele, model),
        :data:`VARIANT_COLUMNS` (unscored alleles with their status, ``n_cpgs`` 0 and NaN
        ``max_abs_delta``). Counts: ``records``, ``alleles``, one per status, ``snv_destroying``,
        ``snv_creating``, ``snv_no_cpg``, ``pairs``.
    """
    counts: Counter = Counter()
    df = df[df["vrow"] >= 0]
    counts["records"] = 0
    allele_cols = list(vcfio.ALLELE_COLUMNS)
    alleles = df.drop_duplicates("vrow")[["vrow", *allele_cols]].sort_values("vrow", ignore_index=True)
    counts["alleles"] = len(alleles)
    for s, n in alleles["status"].value_counts().items():
        counts[s] += int(n)
    effects, summaries = [], []
    pairs = df[df["cpg_pos"] >= 0]
    for label in labels:
        seen = pairs[pairs[f"seen.{label}"].astype(bool)]
        e = pd.DataFrame({c: seen[c].to_numpy() for c in allele_cols if c != "status"})
        e["model"] = label
        e["cpg_pos"] = seen["cpg_pos"].to_numpy(np.int64)
        e["distance"] = (seen["pos"] - seen["cpg_pos"]).to_numpy(np.int64)
        e["effect"] = seen["effect"].to_numpy()
        e["beta_ref"] = seen[f"beta_ref.{label}"].to_numpy(np.float32)
        e["beta_alt"] = seen[f"beta_alt.{label}"].to_numpy(np.float32)
        e["delta"] = (e["beta_alt"] - e["beta_ref"]).astype(np.float32)
        e["vrow"] = seen["vrow"].to_numpy()
        effects.append(e)
        g = e.assign(
            absd=e["delta"].abs(),
            affected=(e["delta"].abs() >= min_abs_delta) | (e["effect"] != "window"),
            destroyed=e["effect"] == "destroyed",
            created=e["effect"] == "created",
        ).groupby("vrow")
        per = pd.DataFrame({
            "n_cpgs": g.size(), "n_cpgs_affected": g["affected"].sum(), "destroys_cpg": g["destroyed"].any(),
            "creates_cpg": g["created"].any(), "max_abs_delta": g["absd"].max(),
        })
        s = alleles.join(per, on="vrow")
        snv = s["status"] == "snv"
        s["n_cpgs"] = s["n_cpgs"].fillna(0).astype(np.int32)
        s["n_cpgs_affected"] = s["n_cpgs_affected"].fillna(0).astype(np.int32)
        s["destroys_cpg"] = s["destroys_cpg"].fillna(False).astype(bool)
        s["creates_cpg"] = s["creates_cpg"].fillna(False).astype(bool)
        # A scored SNV inside no window changes nothing: max |delta| is exactly 0, not missing.
        mad = s["max_abs_delta"].astype(np.float32)
        s["max_abs_delta"] = np.where(snv & mad.isna(), np.float32(0), mad).astype(np.float32)
        s["model"] = label
        summaries.append(s)
        if label == labels[0]:
            counts["snv_destroying"] = int((snv & s["destroys_cpg"]).sum())
            counts["snv_creating"] = int((snv & s["creates_cpg"]).sum())
            counts["snv_no_cpg"] = int((snv & (s["n_cpgs"] == 0)).sum())
        counts[f"pairs.{label}"] = len(e)
    eff = pd.concat(effects, ignore_index=True).sort_values(["vrow", "model", "cpg_pos", "effect"], kind="stable")
    summ = pd.concat(summaries, ignore_index=True).sort_values(["vrow", "model"], kind="stable")
    return eff[EFFECT_COLUMNS].reset_index(drop=True), summ[VARIANT_COLUMNS].reset_index(drop=True), counts


def chunk_path(prefix: str, shard: Shard, kind: str) -> str:
    """``<prefix>/chunks/<chunk id>.<kind>.parquet`` (kind ``effects`` or ``variants``)."""
    return storage.join(prefix, "chunks", f"{shard.id}.{kind}.parquet")


def write_chunk(prefix: str, shard: Shard, effects: pd.DataFrame, variants: pd.DataFrame) -> None:
    """Write one chunk's two tables atomically (the ledger marker comes after)."""
    for kind, df, schema in (("effects", effects, EFFECT_SCHEMA), ("variants", variants, VARIANT_SCHEMA)):
        with storage.atomic_path(chunk_path(prefix, shard, kind)) as tmp:
            pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), tmp)


# ---------------------------------------------------------------- plan and checks


def load_models(cfg: VariantsConfig) -> dict[str, dict]:
    """Load every checkpoint once in the driver (fail here, not in retried actors); label -> meta."""
    metas = {}
    for m in cfg.checkpoints:
        metas[m.name] = ckpt.check_loads(m.checkpoint)
        if metas[m.name].task != "methylation":
            raise MethrayError(f"{m.checkpoint}: a {metas[m.name].task} model; variants scores methylation models")
        refuse_context(metas[m.name].model, m.checkpoint, "variants")
    return metas


def plan(cfg: VariantsConfig, ref, mapping: dict[str, str], indexed: bool) -> tuple[list[Shard], dict[str, str]]:
    """Chunks over the mapped contigs (reference order); and reference name -> VCF name."""
    back = {r: v for v, r in mapping.items()}
    chroms = [c for c in ref.chroms if c in back]
    if indexed:
        shards = plan_shards(ref, cfg.chunk_bp, chroms)
    else:
        shards = plan_shards({c: ref.sizes[c] for c in chroms}, max(ref.sizes[c] for c in chroms) if chroms else 1)
    return shards, back


def precheck(cfg: VariantsConfig, ref, mapping: dict[str, str]) -> Counter:
    """Classify the first :data:`PRECHECK_RECORDS` records; fail early on a wrong assembly.

    Raises
    ------
    MethrayError
        REF differs from the reference for more than ``max_ref_mismatch_fraction`` of the
        checked allele rows (at least 20 rows checked).
    """
    vcf = vcfio.open_vcf(cfg.vcf)
    counts: Counter = Counter()
    example = None
    for i, rec in enumerate(vcf):
        if i >= PRECHECK_RECORDS:
            break
        if rec.CHROM not in mapping:
            continue
        for alt in rec.ALT or ["."]:
            status = vcfio.classify(rec.REF, alt, ref.contig_codes(mapping[rec.CHROM]), rec.POS - 1)
            counts[status] += 1
            if status == "ref_mismatch" and example is None:
                example = f"{rec.CHROM}:{rec.POS} REF {rec.REF}"
    vcf.close()
    _check_mismatch(cfg, counts, example, "in the first records")
    return counts


def _check_mismatch(cfg: VariantsConfig, counts: Counter, example: str | None, where: str) -> None:
    checked = counts["snv"] + counts["indel"] + counts["ref_mismatch"]
    if checked >= 20 and counts["ref_mismatch"] > cfg.max_ref_mismatch_fraction * checked:
        raise MethrayError(
            f"{cfg.vcf}: REF differs from {cfg.reference} for {counts['ref_mismatch']:,} of {checked:,} allele rows {where}"
            f" (limit {cfg.max_ref_mismatch_fraction:g}){'; e.g. ' + example if example else ''}: another assembly, or a VCF not"
            " normalised to this reference?"
        )


def _bind_job(prefix: str, record: dict) -> None:
    path = storage.join(prefix, JOB_NAME)
    if storage.exists(path):
        with open(path) as fh:
            if json.load(fh) != record:
                raise MethrayError(f"{path}: this output was started with another VCF, reference or models; use a new out_dir/run_name")
        return
    with storage.atomic_write(path) as fh:
        json.dump(record, fh, indent=1)


# ---------------------------------------------------------------- the job


def run_chunks(cfg: VariantsConfig, prefix: str, todo: list[Shard], back: dict[str, str], specs, indexed: bool, ledger: ShardLedger) -> None:
    """Score the ``todo`` chunks with one Ray Data pipeline; write each chunk and its marker."""
    import ray
    from tqdm import tqdm

    labels = [m.name for m in cfg.checkpoints]
    items = [{"vcf_chrom": back[s.chrom], "chrom": s.chrom, "start": s.start, "end": s.end, "chunk": s.index} for s in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        chunk_rows, fn_kwargs={"vcf": cfg.vcf, "reference": cfg.reference, "specs": specs, "indexed": indexed},
        batch_size=1, batch_format="numpy", num_cpus=0.5,  # leaves room beside the actors (small machines)
    )
    ds = map_checkpoints(ds, VariantPredictor, {m.name: m.checkpoint for m in cfg.checkpoints}, cfg.reference, cfg.score)  # one call per chunk block
    by_index = {s.index: s for s in todo}
    pending: dict[int, list[pd.DataFrame]] = {}
    received: Counter = Counter()
    started = time.perf_counter()
    n_done = 0
    bar = tqdm(total=len(todo), unit="chunk", desc="variants", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for idx, part in batch.groupby("chunk", sort=False):
                idx = int(idx)
                pending.setdefault(idx, []).append(part)
                received[idx] += len(part)
                expected = int(part["n_rows"].iloc[0])
                if received[idx] > expected:
                    raise MethrayError(f"chunk {by_index[idx].id}: got {received[idx]} rows for {expected}")
                if received[idx] < expected:
                    continue
                rows = pd.concat(pending.pop(idx), ignore_index=True)
                effects, variants, counts = chunk_tables(rows, labels, cfg.min_abs_delta)
                counts["records"] = int(rows["n_records"].iloc[0])
                shard = by_index[idx]
                write_chunk(prefix, shard, effects, variants)
                ledger.mark_done(shard, n_sites=counts["snv"], seconds=time.perf_counter() - started, counts=dict(counts))
                n_done += 1
                bar.update(1)
    finally:
        bar.close()
    if pending or n_done != len(todo):
        raise MethrayError(f"variants: {len(todo) - n_done} chunk(s) came back incomplete; rerun to finish them")


def assemble(prefix: str, shards: list[Shard]) -> dict[str, str]:
    """Stream the chunk files (plan order = sorted) into the final Parquet and TSV tables."""
    out = {}
    for kind, schema in (("effects", EFFECT_SCHEMA), ("variants", VARIANT_SCHEMA)):
        pq_path, tsv_path = storage.join(prefix, f"{kind}.parquet"), storage.join(prefix, f"{kind}.tsv")
        with storage.atomic_path(pq_path) as tmp_pq, storage.atomic_write(tsv_path) as tsv:
            writer = pq.ParquetWriter(tmp_pq, schema)
            tsv.write("\t".join(schema.names) + "\n")
            for s in shards:
                table = pq.read_table(chunk_path(prefix, s, kind))
                if table.num_rows:
                    writer.write_table(table)
                    table.to_pandas().to_csv(tsv, sep="\t", header=False, index=False, float_format="%.5g", na_rep="NA")
            writer.close()
        out[kind] = pq_path
        out[f"{kind}_tsv"] = tsv_path
    return out


def top_variants(prefix: str, shards: list[Shard], n: int = 10) -> list[dict]:
    """The ``n`` scored alleles with the largest ``max_abs_delta``, chunk by chunk (bounded memory)."""
    cols = ["chrom", "vcf_pos", "id", "ref", "alt", "model", "n_cpgs", "n_cpgs_affected", "destroys_cpg", "creates_cpg", "max_abs_delta"]
    best = pd.DataFrame(columns=cols)
    for s in shards:
        df = pq.read_table(chunk_path(prefix, s, "variants"), columns=[*cols, "status"]).to_pandas()
        df = df[df["status"] == "snv"].nlargest(n, "max_abs_delta", keep="first")[cols]
        if len(df):
            best = df if best.empty else pd.concat([best, df], ignore_index=True).nlargest(n, "max_abs_delta", keep="first")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in best.to_dict("records")]


def run_variants(cfg: VariantsConfig) -> dict:
    """Run the variant-effect job (see the module docstring); resumes an interrupted run.

    Returns
    -------
    dict
        The summary also written to ``<prefix>/_summary.json``: counts (records read, allele
        rows, per status, contigs mapped / unmapped, CpG-destroying and -creating SNVs), run
        time, SNVs per second, output paths and the top variants by ``max_abs_delta``.

    Raises
    ------
    MethrayError
        Missing VCF / reference / checkpoint, ambiguous contig names, no VCF contig on the
        reference, REF mismatches above the limit, or a prefix started with other inputs.
    """
    from ..run import start_run

    t0 = time.perf_counter()
    prefix = cfg.prefix
    summary_path = storage.join(prefix, SUMMARY_NAME)
    if storage.exists(summary_path):
        with open(summary_path) as fh:
            done = json.load(fh)
        _say(f"variants: {prefix} is already complete (remove it to score again)")
        return {**done, "already_complete": True}
    ref = open_reference(cfg.reference)
    metas = load_models(cfg)
    specs = [m.window for m in metas.values()]
    indexed = vcfio.has_index(cfg.vcf)
    names = vcfio.vcf_contigs(cfg.vcf)
    mapping, unmapped = vcfio.map_contigs(names, ref.chroms)
    if not mapping:
        raise MethrayError(f"{cfg.vcf}: no contig maps onto {cfg.reference} (VCF has {', '.join(names[:5])}; reference has {', '.join(ref.chroms[:5])})")
    renamed = {v: r for v, r in mapping.items() if v != r}
    unmapped_records = {v: vcfio.count_records(cfg.vcf, v, indexed) for v in unmapped}
    with_records = {v: n for v, n in unmapped_records.items() if n}
    _say(
        f"variants: contigs {', '.join(f'{v}->{r}' for v, r in renamed.items()) or 'named as in the reference'}; "
        f"not in the reference: {', '.join(f'{v} ({n:,} records)' for v, n in with_records.items()) or 'none with records'}"
        f"{f' ({len(unmapped) - len(with_records)} header contigs without records)' if len(unmapped) > len(with_records) else ''}"
    )
    precheck(cfg, ref, mapping)
    storage.makedirs(prefix)
    _bind_job(prefix, {"vcf": cfg.vcf, "reference": cfg.reference, "models": {m.name: m.checkpoint for m in cfg.checkpoints}, "chunk_bp": cfg.chunk_bp})
    shards, back = plan(cfg, ref, mapping, indexed)
    ledger = ShardLedger(prefix)
    ledger.bind_plan(shards, shard_bp=cfg.chunk_bp if indexed else None)
    todo = ledger.missing(shards)
    _say(f"variants: {cfg.vcf} ({'indexed' if indexed else 'no index: one chunk per contig'}): {len(shards)} chunks ({len(shards) - len(todo)} done earlier); models {', '.join(metas)}")
    t_score = time.perf_counter()
    start_run(cfg, with_ray=bool(todo), run_dir=prefix)  # config.yaml once the prefix accepts this job
    if todo:
        run_chunks(cfg, prefix, todo, back, specs, indexed, ledger)
    score_s = time.perf_counter() - t_score
    missing = ledger.missing(shards)
    if missing:
        raise MethrayError(f"variants: {len(missing)} chunk(s) not finished (first {missing[0].id}); rerun to finish them")
    counts: Counter = Counter()
    scored_now = 0
    todo_ids = {s.id for s in todo}
    for s in shards:
        c = ledger.record(s)["counts"]
        counts.update(c)
        if s.id in todo_ids:
            scored_now += c.get("snv", 0)
    _check_mismatch(cfg, counts, None, "in the whole VCF")
    counts["records_unmapped_contigs"] = sum(unmapped_records.values())
    outputs = assemble(prefix, shards)
    summary = {
        "prefix": prefix,
        "vcf": cfg.vcf,
        "reference": cfg.reference,
        "models": {k: {"model": m.model, "checkpoint": c.checkpoint} for (k, m), c in zip(metas.items(), cfg.checkpoints)},
        "contigs": {"mapped": mapping, "unmapped_with_records": with_records, "unmapped_without_records": len(unmapped) - len(with_records)},
        "chunks": len(shards),
        "chunks_done_before": len(shards) - len(todo),
        "counts": {k: int(v) for k, v in sorted(counts.items())},
        "snv_scored_this_run": scored_now,
        "seconds_scoring": round(score_s, 3),
        "snv_per_second": round(scored_now / score_s, 1) if score_s and scored_now else None,
        "outputs": outputs,
        "top_variants": top_variants(prefix, shards),
    }
    with storage.atomic_write(summary_path) as fh:
        json.dump(summary, fh, indent=1)
    _say(f"variants: total {time.perf_counter() - t0:.1f} s")
    return summary


def summary_text(s: dict) -> str:
    """A human-readable summary of a run."""
    c = s["counts"]
    lines = [
        f"variants: {s['prefix']}",
        f"  records read: {c.get('records', 0):,} (+{c.get('records_unmapped_contigs', 0):,} on contigs not in the reference);"
        f" allele rows {c.get('alleles', 0):,}",
        "  " + "; ".join(f"{k} {c.get(k, 0):,}" for k in vcfio.STATUSES),
        f"  SNVs scored: {c.get('snv', 0):,}; CpG-destroying {c.get('snv_destroying', 0):,}; CpG-creating {c.get('snv_creating', 0):,};"
        f" inside no window {c.get('snv_no_cpg', 0):,}",
    ]
    if not s.get("already_complete") and s.get("snv_per_second"):
        lines.append(f"  this run: {s['snv_scored_this_run']:,} SNVs in {s['seconds_scoring']:.1f} s ({s['snv_per_second']:,.0f} SNVs/s)")
    for t in s.get("top_variants", [])[:5]:
        lines.append(f"  top: {t['chrom']}:{t['vcf_pos']} {t['id']} {t['ref']}>{t['alt']} {t['model']} max|delta| {t['max_abs_delta']:.4f} ({t['n_cpgs']} CpGs)")
    for k, v in s["outputs"].items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)
