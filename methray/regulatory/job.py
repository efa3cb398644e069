"""``methray regulatory``: the steps labels, train, evaluate, overfit, genome, chained."""

from __future__ import annotations

import logging
import time

import pandas as pd

from .. import checkpoint as ckpt
from .. import storage
from ..errors import MethrayError
from ..run import start_ray, start_run
from ..tables import write_table
from .config import RegulatoryConfig, budget_line
from .data import predict_windows
from .evaluate import evaluate_model, metrics_summary, overfit_table
from .labels import make_labels
from .tracks import scan_windows, write_tracks
from .train import train_model

log = logging.getLogger(__name__)

STEPS = ("labels", "train", "evaluate", "overfit", "genome")


def run_regulatory(cfg: RegulatoryConfig, steps: list[str] | None = None) -> dict:
    """Run the selected steps (default all, in order ``labels, train, evaluate, overfit, genome``).

    Returns
    -------
    dict
        ``metrics`` and ``overfit`` tables (when run) and the bedGraph paths.

    Raises
    ------
    MethrayError
        Unknown step, bad config or input, missing outputs of an earlier step.
    """
    steps = list(steps or STEPS)
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise MethrayError(f"unknown step(s) {bad}; expected some of {', '.join(STEPS)}")
    t0 = time.perf_counter()
    start_run(cfg, with_ray=False)
    stride = cfg.labels.stride
    header = [f"methray regulatory {cfg.run_name}: {cfg.genome}, window {cfg.labels.length} bp, classes {cfg.labels.classes or 'all'}",
              budget_line(cfg)]
    log.info(header[1])
    result: dict = {}
    over_models = cfg.overfit.models or cfg.models
    strides = sorted({stride} | (set(cfg.overfit.strides) if "overfit" in steps else set()))
    if "labels" in steps:
        for s in strides:
            t = time.perf_counter()
            info = make_labels(cfg, s)
            log.info(f"labels stride {s}:\n  " + info["summary"].format().replace("\n", "\n  ")
                 + f"\n  split {info['split']}, inside block {info['inside']} windows ({time.perf_counter() - t:.0f} s)")
    if any(s in steps for s in ("train", "evaluate", "overfit", "genome")):
        start_ray(cfg)
    n_train: dict[tuple[str, int], int] = {}
    jobs = [(m, stride) for m in cfg.models]
    if "overfit" in steps:
        jobs += [(m, s) for s in strides for m in over_models if (m, s) not in jobs]
    if "train" in steps:
        for m, s in jobs:
            r = train_model(cfg, m, s)
            n_train[(m, s)] = r["n_train"]
            log.info(f"train {m} stride {s}: {r['n_train']:,} train / {r['n_val']:,} val windows; best val BCE {r['best_val_loss']:.4f} ({r['seconds']:.0f} s)")
    for m, s in jobs:
        if (m, s) not in n_train and storage.exists(storage.join(cfg.model_dir(m, s), "checkpoint", "meta.json")):
            n_seen = ckpt.read_meta(storage.join(cfg.model_dir(m, s), "checkpoint")).n_train_windows
            n_train[(m, s)] = -1 if n_seen is None else n_seen
    evaluated: list[pd.DataFrame] = []
    if "evaluate" in steps or "overfit" in steps:
        for m, s in jobs if "overfit" in steps else [(m, stride) for m in cfg.models]:
            t = time.perf_counter()
            evaluated.append(evaluate_model(cfg, m, s))
            log.info(f"evaluate {m} stride {s} ({time.perf_counter() - t:.0f} s)")
        allm = pd.concat(evaluated, ignore_index=True)
    if "evaluate" in steps:
        main = allm[(allm["stride"] == stride) & allm["model"].isin(cfg.models)].reset_index(drop=True)
        write_table(main, cfg.path("metrics"), header)
        result["metrics"] = main
        log.info(metrics_summary(main))
    if "overfit" in steps:
        sel = allm[allm["model"].isin(over_models) & allm["stride"].isin(strides)]
        table = overfit_table(sel, n_train)
        write_table(table, cfg.path("overfit"), header + ["DeepGMAP Table 2: inside = a block of the training windows; held_out = the test block"])
        result["overfit"] = table
        log.info("overfitting check (mean over classes):\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "genome" in steps:
        t = time.perf_counter()
        gm = cfg.genome_scan.model or cfg.models[0]
        gs = cfg.genome_scan.stride or stride
        ck = storage.join(cfg.model_dir(gm, stride), "checkpoint")
        classes = ckpt.read_meta(ck).classes
        wins, dropped = scan_windows(cfg, gs)
        wins, prob, _ = predict_windows(cfg, ck, wins, None, rc_average=cfg.genome_scan.rc_average)
        result["tracks"] = write_tracks(cfg, gm, gs, wins, prob, classes)
        log.info(f"genome {gm}: {len(wins):,} windows scored ({dropped:,} dropped for N) -> {len(result['tracks'])} bedGraphs in "
             f"{cfg.path('tracks')} ({time.perf_counter() - t:.0f} s)")
    log.info(f"regulatory: outputs in {cfg.out_dir} ({time.perf_counter() - t0:.0f} s)")
    return result


