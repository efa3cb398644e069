"""Ray Data predictors: a checkpoint loaded once per actor, batches encoded and scored inside it.

:class:`CheckpointPredictor` is the base (Ray's batch-inference shape: ``__init__`` loads the
model, ``__call__`` scores a batch); :class:`Predictor` scores CpG-centred windows (methylation
models, :mod:`methray.score` and genome-wide scoring) and :class:`IntervalPredictor` scores
``[start, end)`` windows (multi-label regulatory models). Encoding inside the actor avoids
shipping one-hot tensors through the object store.

**Both strands.** A CpG is palindromic: the other strand reads C-G at the same two bases, and
its methylation is (almost always) the same. With ``rc_average`` a predictor averages the
task outputs (clipped beta, or sigmoid probability) for each window and for its reverse
complement (:func:`methray.augment.reverse_complement`), i.e. the CpG read from the other
strand (DanQ, Quang & Xie 2016; DeepGMAP). For MRCNN-style windows (the CpG's own two bases
left out, even length) the reverse complement is exactly the other strand's window of the
same CpG. For windows that include the CpG (C at index ``L // 2``) it is centred on the G of
the other strand: the other strand's C sits one base before the centre for odd ``L`` (1001
bp) and two for even ``L`` (1000 bp). This is the same reverse complement that
``train.rc_augment`` shows the model, so a model trained with it sees nothing new.

**CPU forward passes.** On CPU the model runs on at most :data:`CPU_FORWARD_WINDOWS` windows
at a time, in a process whose freed buffers stay in the heap (``runtime.keep_freed_buffers``).
glibc maps every block above 32 MiB afresh and unmaps it when freed (its mmap threshold
cannot go higher), so a forward pass of 1,024-2,048 windows faulted in its activations each
time: MRCNN on one thread spent ~half its time in the kernel (50,275 minor page faults per
1,024 windows) at 3,741 windows/s, against 7,057 windows/s in passes of 256 with freed
buffers kept (no faults). The chunks are cut at fixed places of the batch, so a window's
prediction does not depend on how the batch came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from . import checkpoint as ckpt
from . import tasks
from .augment import reverse_complement
from .context import model_inputs
from .windows import encode_batch, encode_intervals

if TYPE_CHECKING:
    import ray.data

    from .config import ScoreConfig

# Windows per forward pass on CPU (both strands counted): activations stay under glibc's
# 32 MiB mmap ceiling, so their buffers are reused, not faulted in (module docstring).
CPU_FORWARD_WINDOWS = 256

# Columns of a CpG batch that a Predictor passes through to its output.
SITE_COLUMNS = ("chrom", "pos", "tissue", "in_cpg_island", "split", "beta")


class CheckpointPredictor:
    """Base of the predictors: the model of a checkpoint on the actor's device, in eval mode.

    Parameters
    ----------
    checkpoint_dir
        A methray checkpoint (:mod:`methray.checkpoint`), local or ``s3://``.
    reference
        FASTA path (local or ``s3://``).
    threads
        torch intra-op threads for CPU inference.
    rc_average
        Average the outputs for each window and its reverse complement (module docstring).
    """

    def __init__(self, checkpoint_dir: str, reference: str, threads: int = 1, rc_average: bool = False):
        torch.set_num_threads(max(1, threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            from .runtime import keep_freed_buffers

            keep_freed_buffers()
        self.model, self.meta = ckpt.load(checkpoint_dir, self.device)
        self.reference = reference
        self.rc_average = bool(rc_average)

    def predict(self, x: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        """Outputs of the model after the task transform.

        Parameters
        ----------
        x
            ``(B, L, 4) uint8`` one-hot windows.
        extra
            The model's inputs beside the window (:func:`methray.context.model_inputs`, e.g.
            context features ``(B, F) float32``; none for window-only models); with
            ``rc_average`` both strands get the same ones.

        Returns
        -------
        np.ndarray
            ``(B, K) float32``: clipped betas (methylation) or sigmoid probabilities
            (multilabel); with ``rc_average`` the mean of those for ``x`` and its reverse
            complement (one forward pass over both).
        """
        xt = torch.from_numpy(x).to(self.device).float()
        et = [torch.from_numpy(e).to(self.device) for e in extra]
        with torch.inference_mode():
            if not self.rc_average:
                return tasks.predict(self.meta.task, self._forward(xt, et)).float().cpu().numpy()
            both = tasks.predict(self.meta.task, self._forward(torch.cat([xt, reverse_complement(xt)]), [torch.cat([e, e]) for e in et]))
            return ((both[: len(xt)] + both[len(xt):]) / 2).float().cpu().numpy()

    def _forward(self, xt: torch.Tensor, et: list[torch.Tensor]) -> torch.Tensor:
        """The model's raw outputs; on CPU in passes of :data:`CPU_FORWARD_WINDOWS` windows."""
        step = CPU_FORWARD_WINDOWS if self.device == "cpu" else len(xt)
        if len(xt) <= step:
            return self.model(xt, *et)
        return torch.cat([self.model(xt[a:a + step], *(e[a:a + step] for e in et)) for a in range(0, len(xt), step)])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Predictor(CheckpointPredictor):
    """CpG windows of a methylation model.

    Parameters
    ----------
    checkpoint_dir, reference, threads
        As for :class:`CheckpointPredictor`.
    rc_average
        Average the predicted beta of both strands (``score.rc_average``, default True).

    ``__call__`` takes a batch with ``chrom`` ``(B,)`` and ``pos`` ``(B,) int64`` (0-based C)
    (context models also get the regional context of those CpGs, :mod:`methray.context`)
    and returns the columns of :data:`SITE_COLUMNS` present in it plus ``beta_pred`` ``(B,)
    float32`` (first model output after the task transform: clipped to [0, 1] for methylation).
    """

    def __init__(self, checkpoint_dir: str, reference: str, threads: int = 1, rc_average: bool = True):
        super().__init__(checkpoint_dir, reference, threads, rc_average)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        enc = encode_batch(batch, self.reference, self.meta.window_length, self.meta.exclude_cpg)
        out = {k: np.asarray(batch[k]) for k in SITE_COLUMNS if k in batch}
        extra = model_inputs(self.meta.model, self.reference, batch["chrom"], batch["pos"])
        out["beta_pred"] = np.ascontiguousarray(self.predict(enc["x"], *extra)[:, 0])
        return out


def rc_average_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean of the sigmoid outputs for windows and their reverse complements (DanQ).

    Parameters
    ----------
    model
        A multilabel model, ``(N, L, 4) float32`` -> ``(N, K)`` logits.
    x
        ``(N, L, 4) float32`` one-hot windows (A, C, G, T).

    Returns
    -------
    torch.Tensor
        ``(N, K) float32`` probabilities ``(sigmoid(f(x)) + sigmoid(f(rc(x)))) / 2``; the same
        for ``x`` and ``rc(x)`` (strand symmetric by construction). Quang & Xie (2016), DanQ.
    """
    both = model(torch.cat([x, reverse_complement(x)]))
    p = tasks.predict("multilabel", both)
    return (p[: len(x)] + p[len(x):]) / 2


class IntervalPredictor(CheckpointPredictor):
    """Windows ``[start, end)`` of a multi-label model: class probabilities.

    Parameters
    ----------
    checkpoint_dir, reference, threads
        As for :class:`CheckpointPredictor`.
    rc_average
        Average forward and reverse-complement outputs (:func:`rc_average_probs`).

    ``__call__`` takes ``chrom``, ``start``, ``end`` (and ``labels``) and returns the input
    columns (``labels`` as ``y``) plus ``prob`` ``(B, K) float32``.
    """

    def __init__(self, checkpoint_dir: str, reference: str, rc_average: bool = True, threads: int = 1):
        super().__init__(checkpoint_dir, reference, threads, rc_average)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        enc = encode_intervals(batch, self.reference)
        out = {k: v for k, v in enc.items() if k != "x"}
        out["prob"] = self.predict(enc["x"]) if len(enc["start"]) else np.zeros((0, self.meta.n_outputs), np.float32)
        return out


def map_checkpoints(ds: "ray.data.Dataset", predictor: type, checkpoints: dict[str, str], reference: str, score: "ScoreConfig", *, rc_average: bool = False) -> "ray.data.Dataset":
    """Score every block of ``ds`` with a pool of ``predictor`` actors holding several checkpoints.

    The actor stage shared by genome-wide scoring and variant effects: ``score.actors`` actors,
    each with ``score.cpus_per_actor`` CPUs (its torch threads) and ``score.gpus_per_actor``
    GPUs, one call per block (``batch_size=None``: the predictor cuts its own sub-batches of
    ``score.batch_size``).

    Parameters
    ----------
    ds
        Blocks the predictor understands (shards of CpG sites, variant chunks).
    predictor
        A callable class taking ``checkpoints, reference, batch_size, threads`` (and
        ``rc_average`` when asked for).
    checkpoints
        Label -> methray checkpoint directory.
    reference
        FASTA path (local or ``s3://``).
    score
        The job's ``score`` section.
    rc_average
        Pass ``score.rc_average`` to the predictor (methylation scoring of CpGs).
    """
    import ray

    return ds.map_batches(
        predictor,
        fn_constructor_kwargs={
            "checkpoints": checkpoints,
            "reference": reference,
            "batch_size": score.batch_size,
            "threads": max(1, int(score.cpus_per_actor)),
            **({"rc_average": score.rc_average} if rc_average else {}),
        },
        compute=ray.data.ActorPoolStrategy(size=score.actors),
        batch_size=None,
        num_cpus=score.cpus_per_actor,
        num_gpus=score.gpus_per_actor,
        batch_format="numpy",
    )
