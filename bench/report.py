"""Targets and the Markdown rendering of a benchmark result (the JSON holds every figure)."""

from __future__ import annotations


def targets(res: dict) -> list[dict]:
    """Each target with its measured value, the ratio to the target and pass/miss.

    ``ratio`` > 1 means better than the target (for an upper bound, target / measured).
    """
    rows = []

    def add(name, measured, target, higher_is_better=True):
        if measured is None:
            return
        ratio = measured / target if higher_is_better else (target / measured if measured > 0 else float("inf"))
        rows.append({"target": name, "measured": measured, "goal": (">= " if higher_is_better else "< ") + f"{target:g}", "ratio_to_target": round(ratio, 2), "met": bool(ratio >= 1)})

    enc = res.get("encoding")
    if enc:
        add("encoding: methray / numpy limit", enc["vs_limit"], 0.5)
        add("encoding: methray / naive pyfaidx path", enc["vs_naive"], 10)
    sc = res.get("scoring")
    if sc:
        for label, r in sc["ray"].items():
            add(f"scoring overhead vs single-process loop ({label})", r["overhead_vs_loop"], 0.20, higher_is_better=False)
    pipe = res.get("pipeline")
    if pipe and "scaling_2_vs_1" in pipe:
        add("Ray Data pipeline: 2 CPUs / 1 CPU", pipe["scaling_2_vs_1"], 1.7)
    for name, r in (res.get("training", {}).get("ray_train") or {}).items():
        if "scaling_2_vs_1" in r:
            add(f"Ray Train {name}: 2 workers / 1", r["scaling_2_vs_1"], 1.7)
    base = res.get("training", {}).get("torch_baseline")
    if base and "scaling_2_vs_1" in base:
        add("plain torch mrcnn: 2 threads / 1 (reference)", base["scaling_2_vs_1"], 1.7)
    return rows


def _table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else (f"{v:,.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _mem(m: dict) -> str:
    return f"{m['driver_rss_mb']:,.0f} / {m['children_pss_mb']:,.0f}"


def markdown(res: dict) -> str:
    """The results file: machine, load, every section, targets, projection."""
    m = res["machine"]
    out = [f"# methray benchmark, {res['date']} on {res['machine_slug']}\n\n"]
    out.append(f"Command: `{res['command']}` ({'quick' if res['quick'] else 'full'} mode), total {res['total_s']:.0f} s, git {m['git_commit']}.\n\n")
    out.append(_table(["machine", "value"], [
        ["CPU", m["cpu_model"]], ["cores", m["cores"]], ["RAM (GiB)", m["ram_gib"]], ["GPU", m["gpu"] or "none"], ["OS", m["os"]],
        *[[k, v] for k, v in m["versions"].items()],
        ["load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in res["loadavg_start"])],
        ["load average at end (1/5/15 min)", " / ".join(f"{x:.2f}" for x in res["loadavg_end"])],
    ]))
    if max(res["loadavg_start"][0], res["loadavg_end"][0]) > m["cores"]:
        out.append(f"\n**Warning:** the load average exceeded the {m['cores']} cores: other jobs shared the machine; figures are noisy and pessimistic.\n")
    out.append(f"\nData: {res['data']['sites']:,} CpGs of `{res['data']['input']}` prepared with `methray.prepare.prepare` ({res['data']['prepare_s']:.1f} s). Memory columns: peak driver RSS / peak summed PSS of the driver's child processes (Ray), MiB.\n")

    out.append("\n## Targets\n\n")
    out.append(_table(["target", "measured", "goal", "ratio to target", "met"], [[t["target"], t["measured"], t["goal"], t["ratio_to_target"], "yes" if t["met"] else "**no**"] for t in res["targets"]]))

    enc = res.get("encoding")
    if enc:
        w = enc["window"]
        out.append(f"\n## 1. Window encoding ({w['length']} bp, exclude_cpg={w['exclude_cpg']}, {enc['sites']:,} sites; naive on {enc['naive_sites']:,}; best of {res['params']['repeats']})\n\n")
        out.append(_table(["encoder", "windows/s", "MiB/s one-hot", "vs methray"], [[k, v["windows_per_s"], v["mb_per_s"], round(v["windows_per_s"] / enc["encoders"]["methray"]["windows_per_s"], 3)] for k, v in enc["encoders"].items()]))
        out.append(f"\nContig load (FASTA -> codes, once per process): {enc['contig_load_s']:.2f} s. Peak memory: {_mem(enc['memory'])}.\n")

    pipe = res.get("pipeline")
    if pipe:
        out.append(f"\n## 2. Ray Data window pipeline (read Parquet -> encode -> iter_batches, batch {pipe['batch_size']})\n\n")
        out.append(_table(["Ray CPUs", "windows", "seconds", "windows/s", "peak memory"], [[k, r["windows"], r["seconds"], r["windows_per_s"], _mem(r["memory"])] for k, r in pipe["runs"].items()]))
        if "scaling_2_vs_1" in pipe:
            out.append(f"\n2 CPUs / 1 CPU: {pipe['scaling_2_vs_1']:.2f}x.\n")

    tr = res.get("training")
    if tr:
        out.append("\n## 3. Training (one epoch, methylation head, CPU workers with 1 torch thread each)\n\n")
        rows = []
        for name, r in tr["ray_train"].items():
            for w in ("1", "2"):
                if w in r:
                    x = r[w]
                    rows.append([name, w, r["batch_size"], x["samples"], x["epoch_s"], x["samples_per_s"], x["fit_fixed_s"], _mem(x["memory"])])
        out.append(_table(["model", "workers", "batch", "samples", "epoch s", "samples/s", "fit() fixed s", "peak memory"], rows))
        out.append("\n" + ", ".join(f"{n}: 2 workers / 1 = {r['scaling_2_vs_1']:.2f}x" for n, r in tr["ray_train"].items() if "scaling_2_vs_1" in r) + ".\n")
        base = tr.get("torch_baseline")
        if base:
            out.append(f"\nPlain single-process torch, mrcnn, {base['samples']:,} samples, batch {base['batch_size']}:\n\n")
            out.append(_table(["threads", "samples/s", "peak memory"], [[k, v["samples_per_s"], _mem(v["memory"])] for k, v in base.items() if isinstance(v, dict)]))
        g = tr.get("gpu", {})
        out.append("\n### GPU\n\n")
        if "skipped" in g:
            out.append(f"Skipped: {g['skipped']}.\n")
        else:
            out.append(f"Device: {g['device']}.\n\n")
            out.append(_table(["model", "fp32 samples/s", "fp32 GPU util %", "bf16 samples/s", "bf16 GPU util %", "bf16 / fp32"], [[n, r["fp32"]["samples_per_s"], r["fp32"]["gpu_util_pct"], r["bf16"]["samples_per_s"], r["bf16"]["gpu_util_pct"], r["bf16_vs_fp32"]] for n, r in g["train"].items()]))
            out.append("\nMRCNN inference: " + ", ".join(f"{k} {v['samples_per_s']:,.0f} samples/s (GPU util {v['gpu_util_pct']}%)" for k, v in g["inference"].items()) + ".\n")

    sc = res.get("scoring")
    if sc:
        out.append(f"\n## 4. Scoring end to end ({sc['model']}: read -> encode -> predict -> bedGraph)\n\n")
        rows = [["single-process torch loop", f"{sc['loop']['threads']} threads", sc["loop"]["cpgs"], sc["loop"]["seconds"], sc["loop"]["cpgs_per_s"], "-", _mem(sc["loop"]["memory"])]]
        rows += [[f"Ray Data ({label})", f"{r['actors']} actors x {r['cpus_per_actor']} CPU, batch {r['batch_size']}", r["cpgs"], r["seconds"], r["cpgs_per_s"], f"{100 * r['overhead_vs_loop']:+.1f}%", _mem(r["memory"])] for label, r in sc["ray"].items()]
        out.append(_table(["path", "resources", "CpGs", "seconds", "CpGs/s", "overhead vs loop", "peak memory"], rows))
        out.append(f"\nLargest difference between the bedGraph values of the two paths: {sc['bedgraph_max_abs_diff']:g}.\n")

    pr = res.get("projection")
    if pr:
        out.append(f"\n## 6. Scaling on paper: {pr['cpgs']:,} hg38 CpGs x {pr['tissues']} tissues = {pr['predictions']:,} predictions\n\n")
        out.append(f"GPU rate: {pr['gpu_cpgs_per_s']:,} CpGs/s/GPU ({pr['gpu_rate_source']}). Measured CPU rate: {pr['cpu_cpgs_per_s_per_core']:,} CpGs/s per core (section 4, Ray path).\n\n")
        out.append(_table(["GPUs", "hours"], [[k, v] for k, v in pr["gpu_hours"].items()]))
        out.append(f"\nCPU only: {pr['cpu_core_hours']:,} core-hours (" + ", ".join(f"{v} h on {k} cores" for k, v in pr["cpu_hours_on_cores"].items()) + ").\n")
        out.append(f"\nAssumptions: one model per tissue (each CpG window is scored once per tissue); scoring is embarrassingly parallel over genome shards, so wall time scales linearly with devices (no shared bottleneck: Parquet shards and bedGraph outputs are per shard); start-up (~1 min per cluster) ignored. Feeding one GPU at the stated rate needs {pr['encode_cores_per_gpu']} CPU cores of encoding (measured encoder rate per core, section 1), plus Ray Data transport.\n")
    if res.get("notes"):
        out.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in res["notes"]) + "\n")
    return "".join(out)
