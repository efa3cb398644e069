"""The interpretation report: one Markdown page in the run directory that shows every result."""

from __future__ import annotations

import pandas as pd

from .. import storage


def write_report(path: str, s: dict, matches: pd.DataFrame, motifs: dict) -> None:
    """Write ``report.md``: selection, attributions, motifs per group with JASPAR matches, figures.

    Parameters
    ----------
    s
        The job summary (:func:`methray.interpret.job.run_interpret`).
    matches
        Tomtom matches (:func:`methray.interpret.motifs.match_motifs`).
    motifs
        ``{name: {"ppm", "source", "group", "support"}}``.
    """
    q = 0.05
    lines = [
        f"# What {s['model']} learned ({s['tissue']}, {s['split']} split)",
        "",
        f"Checkpoint `{s['checkpoint']}`. Attributions: DeepLIFT-SHAP (tangermeme, {s['n_shuffles']} dinucleotide-shuffled "
        f"references per window) for every CpG, ISM for {s['ism_per_group']} per group"
        f"{'; averaged over both strands (model trained with RC augmentation)' if s['rc_averaged'] else ''}. "
        "Arrays: `attributions.npz` (format in `attributions.README.txt`).",
        "",
        "## CpGs by measured group",
        "",
        "| group | measured beta | available | window with N (skipped) | chosen | TF-MoDISco |",
        "|---|---|---:|---:|---:|---|",
    ]
    ranges = {"hypo": "< 0.1", "mid": "0.4-0.6", "hyper": "> 0.9"}
    for g, c in s["groups"].items():
        lines.append(f"| {g} | {ranges[g]} | {c['available']:,} | {c['with_n']:,} | {c['chosen']:,} | {s['modisco'].get(g, '-')} |")
    lines += ["", f"First-layer filters: {s['first_layer']}.", "", "## Motifs and their JASPAR matches", "",
              f"Tomtom (memelite) against JASPAR CORE vertebrates, release {s['jaspar']['release']} "
              f"({s['jaspar']['n_motifs']} matrices, pyjaspar's bundled database); q-values per query (Benjamini-Hochberg); "
              f"significant at q < {q}. All motifs: `motifs.meme`; all matches: `motif_matches.tsv`.", ""]
    if not motifs:
        lines.append("No motif was found (no TF-MoDISco pattern and no first-layer filter).")
    else:
        lines += [f"Motifs under {s['min_motif_bits']:g} bits of information are flagged: Tomtom gives long, nearly uniform "
                  "queries small p-values against long matrices, so their matches are not evidence of a binding site.", "",
                  "| motif | source | group | support | bp | bits | best match | p | q | significant | informative |",
                  "|---|---|---|---:|---:|---:|---|---:|---:|---|---|"]
        best = matches[matches["rank"] == 1].set_index("query")
        for name, m in sorted(motifs.items(), key=lambda kv: (kv[1]["group"], -kv[1]["support"])):
            b = best.loc[name] if name in best.index else None
            info = "yes" if m["bits"] >= s["min_motif_bits"] else "no"
            head = f"| {name} | {m['source']} | {m['group']} | {m['support']} | {len(m['ppm'])} | {m['bits']:.1f} |"
            lines.append(
                f"{head} {b['target']} | {b['p_value']:.2g} | {b['q_value']:.2g} | {'yes' if b['significant'] else 'no'} | {info} |"
                if b is not None else f"{head} - | - | - | no | {info} |"
            )
        if not s["significant_matches"]:
            lines += ["", f"None of the motifs matched a JASPAR matrix at q < {q}."]
        elif not s["significant_informative_motifs"]:
            lines += ["", f"No motif with at least {s['min_motif_bits']:g} bits matched a JASPAR matrix at q < {q}."]
    lines += ["", "![motif logos](logos.png)", "", "## t-SNE: inputs vs learned representation (MRCNN Fig. 5)", "",
              "![t-SNE](tsne.png)", "", "## Attribution tracks", "", "![tracks](tracks.png)", "",
              f"Run time (s): {s['seconds']}", ""]
    with storage.atomic_write(path) as fh:
        fh.write("\n".join(lines))
