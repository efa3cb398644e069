"""Stage 4, score: Ray Data batch inference with a trained checkpoint.

``read_parquet`` (CpG table) -> ``map_batches(Predictor)`` on a fixed-size actor pool: each
actor loads the checkpoint and opens the reference once, then encodes each batch's windows
and predicts. Encoding inside the predictor avoids shipping one-hot tensors through the
object store. Actors ask for ``score.cpus_per_actor`` CPUs and ``score.gpus_per_actor``
GPUs (set it on GPU clusters).

Outputs (per tissue and model): ``predictions/<tissue>.<model>.parquet`` (the prediction
schema of :mod:`methray.predictions`) and ``<tissue>.<model>.bedGraph`` (0-based half-open,
with a ``track`` line, rows in ``score.track_order``: :mod:`methray.tracks`), both written
atomically.
"""

from __future__ import annotations

import pandas as pd
import ray

from . import checkpoint as ckpt
from . import tracks
from .config import RunConfig
from .errors import MethrayError
from .predictions import write_predictions
from .predictor import Predictor
from .sites import sites_dataset



def predict_dataset(ds: ray.data.Dataset, cfg: RunConfig, checkpoint_dir: str) -> ray.data.Dataset:
    """Attach the predictor to a dataset of CpGs (columns ``chrom``, ``pos``, ...).

    Both strands averaged when ``score.rc_average`` (:class:`~methray.predictor.Predictor`).
    """
    ckpt.read_meta(checkpoint_dir)  # fail in the driver, not in (retried) actor constructors
    return ds.map_batches(
        Predictor,
        fn_constructor_kwargs={"checkpoint_dir": checkpoint_dir, "reference": cfg.reference, "threads": int(cfg.score.cpus_per_actor), "rc_average": cfg.score.rc_average},
        compute=ray.data.ActorPoolStrategy(size=cfg.score.actors),
        batch_size=cfg.score.batch_size,
        num_cpus=cfg.score.cpus_per_actor,
        num_gpus=cfg.score.gpus_per_actor,
        batch_format="numpy",
    )


def score(cfg: RunConfig, *, split: str = "test", checkpoint_dir: str | None = None, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Score the held-out CpGs of every tissue and write predictions and bedGraphs.

    Parameters
    ----------
    split
        Which split to score (``test`` by default; ``val`` or ``train`` for diagnostics).
    checkpoint_dir
        Defaults to the checkpoint of ``seed``.
    seed
        A training seed of ``train.seeds`` (default ``train.seed``: the run's checkpoint,
        predictions and bedGraphs). A further seed's predictions go to
        ``seeds/seed<k>/predictions/`` (no bedGraph).

    Returns
    -------
    dict[str, pd.DataFrame]
        Predictions per tissue, sorted by chrom (``score.track_order``) and position.
    """
    from .genome import open_reference

    seed = cfg.train.seed if seed is None else seed
    checkpoint_dir = checkpoint_dir or cfg.checkpoint_of(seed)
    model = ckpt.read_meta(checkpoint_dir).model
    order = tracks.ordered_chroms(open_reference(cfg.reference).chroms, cfg.score.track_order)
    out = {}
    for t in cfg.tissues:
        ds = predict_dataset(sites_dataset(cfg.sites_table, tissue=t.name, split=split), cfg, checkpoint_dir)
        df = ds.to_pandas()
        if df.empty:
            raise MethrayError(f"no {split} sites for tissue {t.name!r} in {cfg.sites_table}")
        df = tracks.sort_sites(df, order)
        write_predictions(cfg, df, t.name, model, seed)
        out[t.name] = df
    return out
