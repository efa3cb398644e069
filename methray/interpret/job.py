"""The interpretation job: held-out CpGs by group -> attributions (Ray Data actors) -> motifs -> JASPAR -> report.

1. **Select** (:mod:`.select`): ``n_per_group`` held-out CpGs per measured group (hypo < 0.1,
   mid 0.4-0.6, hyper > 0.9) whose window holds no N.
2. **Attribute** (:mod:`.attribute`): Ray Data ``map_batches`` with an actor pool of
   :class:`~.attribute.Attributor` (checkpoint loaded once per actor; GPU when
   ``score.gpus_per_actor`` > 0): DeepLIFT-SHAP with dinucleotide-shuffled references for
   every CpG, ISM for the first ``ism_per_group`` of each group, the learned representation.
3. **Save** ``attributions.npz`` (see :data:`NPZ_DOC`).
4. **Motifs** (:mod:`.motifs`): TF-MoDISco per group; first-layer filter PWMs when the model
   has a DNA convolution (MRCNN has none: stated in the report); all motifs to
   ``motifs.meme``; Tomtom against JASPAR CORE vertebrates -> ``motif_matches.tsv``.
5. **Figures and report**: ``logos.png``, ``tsne.png``, ``tracks.png``, ``report.md``;
   ``_summary.json`` last.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from .. import checkpoint as ckpt
from .. import storage
from ..context import refuse_context
from ..errors import MethrayError
from ..genome import open_reference
from . import motifs as mot
from . import plots
from .config import InterpretConfig
from .select import GROUPS, select_sites

log = logging.getLogger(__name__)

NPZ_DOC = """attributions.npz (numpy .npz, arrays aligned on axis 0; one row per CpG):
  cpg_id      (N,) str      "chrom:pos", pos 0-based (C of the + strand CpG)
  chrom       (N,) str
  pos         (N,) int64    0-based
  group       (N,) str      hypo (< 0.1) / mid (0.4-0.6) / hyper (> 0.9), measured beta
  beta        (N,) float32  measured beta
  pred        (N,) float32  model prediction (task transform applied)
  x           (N, L, 4) uint8    one-hot window, columns A, C, G, T
  offsets     (L,) int64    offset of each window position from the C
  deep_lift_shap              (N, L, 4) float32  actual contributions (hypothetical * x);
                              sum over (L, 4) = f(x) - mean f(dinucleotide shuffles), raw output
  deep_lift_shap_hypothetical (N, L, 4) float32  hypothetical contributions (TF-MoDISco input)
  ism         (N, L, 4) float32  hypothetical ISM (prediction change per base, centred per
                              position); NaN rows for CpGs without ISM (has_ism False)
  has_ism     (N,) bool
  representation (N, D) float32  input of the model's last linear layer
  rc_averaged ()  bool      attributions averaged over both strands (rc_augment models)
"""


def _say(msg: str) -> None:
    log.info(msg)


def _attribute(cfg: InterpretConfig, chosen: pd.DataFrame, rc: bool) -> dict[str, np.ndarray]:
    import ray

    from .attribute import Attributor

    ism_rows = chosen.groupby("group", sort=False).cumcount().to_numpy() < cfg.ism_per_group
    parts = []
    for with_ism in (True, False):
        sub = chosen[ism_rows == with_ism]
        if sub.empty:
            continue
        ds = ray.data.from_pandas(sub.assign(row=np.flatnonzero(ism_rows == with_ism)))
        ds = ds.map_batches(
            Attributor,
            fn_constructor_kwargs={"checkpoint_dir": cfg.checkpoint, "reference": cfg.reference, "n_shuffles": cfg.n_shuffles,
                                   "seed": cfg.seed, "with_ism": with_ism, "rc_average": rc, "threads": max(1, int(cfg.score.cpus_per_actor))},
            compute=ray.data.ActorPoolStrategy(size=cfg.score.actors),
            batch_size=cfg.score.batch_size,
            num_cpus=cfg.score.cpus_per_actor,
            num_gpus=cfg.score.gpus_per_actor,
            batch_format="numpy",
        )
        for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if not with_ism:
                b["ism"] = np.full(b["dls_hyp"].shape, np.nan, np.float32)
            parts.append(b)
    keys = ["row", "x", "dls_hyp", "ism", "repr", "pred"]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    order = np.argsort(cat["row"])
    return {k: v[order] for k, v in cat.items()}


INTERPRET_LIBRARIES = ("tangermeme", "modiscolite", "memelite", "pyjaspar", "logomaker")


def check_libraries() -> None:
    """Raise a one-line :class:`MethrayError` when the ``interpret`` extra is not installed."""
    import importlib.util

    missing = [name for name in INTERPRET_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise MethrayError(f"methray interpret: needs {', '.join(missing)}; install them with: pip install 'methray[interpret]'")


def run_interpret(cfg: InterpretConfig) -> dict:
    """Run the interpretation job (see the module docstring).

    Returns
    -------
    dict
        The summary also written to ``<prefix>/_summary.json``.

    Raises
    ------
    MethrayError
        Missing checkpoint / sites table, a model that is not a sequence model, or no CpG
        in any group.
    """
    from ..run import start_run

    check_libraries()
    t0 = time.perf_counter()
    meta = ckpt.read_meta(cfg.checkpoint)
    refuse_context(meta.model, cfg.checkpoint, "interpret")
    model, meta = ckpt.load(cfg.checkpoint)
    if meta.model == "deepmethygene":
        raise MethrayError(f"{cfg.checkpoint}: deepmethygene is not a sequence model; interpret needs one")
    if not storage.exists(cfg.sites):
        raise MethrayError(f"{cfg.sites}: sites table not found (the run's cpg_table from `methray prepare`)")
    ref = open_reference(cfg.reference)
    sites = pd.read_parquet(cfg.sites, columns=["chrom", "pos", "beta", "tissue", "split"])
    tissue = cfg.tissue or str(sites["tissue"].iloc[0])
    sites = sites[(sites["tissue"] == tissue) & (sites["split"] == cfg.split)]
    chosen, counts = select_sites(sites, ref, meta, cfg.n_per_group, cfg.seed)
    _say(f"interpret: {tissue} {cfg.split} sites: " + "; ".join(f"{g} {c['chosen']} of {c['available']:,} ({c['with_n']} with N)" for g, c in counts.items()))
    prefix = cfg.prefix
    rc = cfg.rc_average if cfg.rc_average is not None else bool(getattr(meta, "rc_augment", False))

    t = time.perf_counter()
    start_run(cfg, run_dir=prefix)
    _say(f"interpret: {len(chosen)} CpGs, DeepLIFT-SHAP x {cfg.n_shuffles} shuffles, ISM on {cfg.ism_per_group} per group")
    res = _attribute(cfg, chosen, rc)
    attr_s = time.perf_counter() - t
    x = res["x"]
    contrib = res["dls_hyp"] * x
    offsets = meta.window.offsets()
    groups = chosen["group"].to_numpy().astype(str)
    with storage.atomic_path(storage.join(prefix, "attributions.npz")) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, cpg_id=chosen["cpg_id"].to_numpy().astype(str), chrom=chosen["chrom"].to_numpy().astype(str),
                pos=chosen["pos"].to_numpy(np.int64), group=groups, beta=chosen["beta"].to_numpy(np.float32), pred=res["pred"],
                x=x.astype(np.uint8), offsets=offsets, deep_lift_shap=contrib.astype(np.float32),
                deep_lift_shap_hypothetical=res["dls_hyp"], ism=res["ism"], has_ism=~np.isnan(res["ism"][:, 0, 0]),
                representation=res["repr"], rc_averaged=np.array(rc),
            )
    with storage.atomic_write(storage.join(prefix, "attributions.README.txt")) as fh:
        fh.write(NPZ_DOC)
    _say(f"interpret: attributions for {len(chosen)} CpGs in {attr_s:.1f} s -> {prefix}/attributions.npz")

    # Motifs: TF-MoDISco per group, first-layer filters if any; all matched to JASPAR.
    t = time.perf_counter()
    found: dict[str, dict] = {}
    modisco_notes = {}
    for g in GROUPS:
        sel = groups == g
        if sel.sum() < 2:
            modisco_notes[g] = "too few CpGs"
            continue
        pats = mot.modisco_motifs(x[sel], res["dls_hyp"][sel])
        errs = [p["error"] for p in pats if "error" in p]
        pats = [p for p in pats if "ppm" in p]
        modisco_notes[g] = f"{len(pats)} pattern(s)" + (f" ({errs[0]})" if errs else "" if pats else " (no seqlet cluster large enough)")
        for p in pats:
            found[f"{g}_{p['name']}"] = {"ppm": p["ppm"], "source": "tfmodisco", "group": g, "support": p["n_seqlets"]}
    filters = mot.filter_pwms(model, x)
    filter_note = (f"{len(filters)} first-layer filter PWM(s)" if mot.first_dna_conv(model) is not None else
                   f"{meta.model}'s first layer is not a DNA convolution spanning positions (MRCNN: a 1x4 convolution over one base); "
                   "its motifs come from the attributions (TF-MoDISco) only")
    for f in filters:
        found[f["name"]] = {"ppm": f["ppm"], "source": "first_layer", "group": "all", "support": f["n_sites"]}
    motif_s = time.perf_counter() - t
    mot.write_meme(storage.join(prefix, "motifs.meme"), {k: v["ppm"] for k, v in found.items()})
    t = time.perf_counter()
    jaspar = mot.jaspar_motifs(cfg.jaspar_release)
    matches = mot.match_motifs({k: v["ppm"] for k, v in found.items()}, jaspar, q_threshold=cfg.q_threshold)
    for m in found.values():
        m["bits"] = mot.information_bits(m["ppm"])
    if not matches.empty:
        matches.insert(1, "group", matches["query"].map(lambda q: found[q]["group"]))
        matches.insert(2, "source", matches["query"].map(lambda q: found[q]["source"]))
        matches.insert(3, "query_bp", matches["query"].map(lambda q: len(found[q]["ppm"])))
        matches.insert(4, "query_bits", matches["query"].map(lambda q: round(found[q]["bits"], 2)))
        matches["informative"] = matches["query_bits"] >= mot.MIN_MOTIF_BITS
    with storage.atomic_path(storage.join(prefix, "motif_matches.tsv")) as tmp:
        matches.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    match_s = time.perf_counter() - t

    # Figures.
    best = matches[matches["rank"] == 1].set_index("query") if not matches.empty else pd.DataFrame()
    logo_rows = []
    for name, m in sorted(found.items(), key=lambda kv: -kv[1]["support"])[:12]:
        if name in best.index:
            b = best.loc[name]
            logo_rows.append((f"{name} ({m['source']}, n={m['support']})", m["ppm"], jaspar[b["target"]],
                              f"{b['target']} q={b['q_value']:.2g}{' *' if b['significant'] else ''}"))
        else:
            logo_rows.append((name, m["ppm"], None, "no match"))
    plots.motif_logos(storage.join(prefix, "logos.png"), logo_rows)
    plots.tsne_panels(storage.join(prefix, "tsne.png"), x, res["repr"], groups, cfg.seed)
    track_rows = []
    for g in GROUPS:
        for i in np.flatnonzero(groups == g)[: max(1, cfg.n_tracks // len(GROUPS))]:
            track_rows.append((f"{chosen['cpg_id'].iloc[i]} {g} (measured {chosen['beta'].iloc[i]:.2f}, predicted {res['pred'][i]:.2f})", x[i], res["dls_hyp"][i]))
    plots.attribution_tracks(storage.join(prefix, "tracks.png"), track_rows, offsets)

    summary = {
        "prefix": prefix, "checkpoint": cfg.checkpoint, "model": meta.model, "tissue": tissue, "split": cfg.split,
        "groups": counts, "n_shuffles": cfg.n_shuffles, "ism_per_group": cfg.ism_per_group, "rc_averaged": rc,
        "seconds": {"attributions": round(attr_s, 1), "motifs": round(motif_s, 1), "matching": round(match_s, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "modisco": modisco_notes, "first_layer": filter_note, "n_motifs": len(found),
        "jaspar": {"release": cfg.jaspar_release, "collection": "CORE", "tax_group": "vertebrates", "n_motifs": len(jaspar)},
        "significant_matches": int(matches["significant"].sum()) if not matches.empty else 0,
        "significant_informative_motifs": int(matches.loc[matches["significant"] & matches["informative"], "query"].nunique()) if not matches.empty else 0,
        "min_motif_bits": mot.MIN_MOTIF_BITS,
    }
    from .report import write_report

    write_report(storage.join(prefix, "report.md"), summary, matches, found)
    with storage.atomic_write(storage.join(prefix, "_summary.json")) as fh:
        json.dump(summary, fh, indent=1)
    return summary


def summary_text(s: dict) -> str:
    """A human-readable summary of a run."""
    lines = [f"interpret: {s['prefix']} ({s['model']} on {s['tissue']}, {s['split']} split)"]
    for g, c in s["groups"].items():
        lines.append(f"  {g}: {c['chosen']} CpGs; TF-MoDISco: {s['modisco'].get(g, '-')}")
    lines.append(f"  first layer: {s['first_layer']}")
    lines.append(f"  motifs: {s['n_motifs']}; JASPAR {s['jaspar']['release']} CORE vertebrates ({s['jaspar']['n_motifs']} matrices): "
                 f"{s['significant_matches']} significant match(es) at q < 0.05; motifs with a significant match and >= {s['min_motif_bits']:g} bits: "
                 f"{s['significant_informative_motifs']}")
    lines.append(f"  seconds: {s['seconds']}")
    lines.append(f"  report: {s['prefix']}/report.md")
    return "\n".join(lines)
