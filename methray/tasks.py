"""Task heads: how a model's raw output ``(N, n_outputs)`` is trained and read out.

- ``methylation``: regression of the beta value (fraction of methylated reads, 0..1) with
  mean squared error on the raw (linear) output; at inference the output is clipped to
  [0, 1], as MRCNN does (Tian et al. 2019, Methods). ``n_outputs`` = 1. Every sequence model
  uses this head for methylation, so a comparison differs only in the architecture. Why
  clipping and not a sigmoid: the MSE gradient of a linear output does not vanish near 0 and
  1, where most CpGs lie (beta is bimodal), and clipping keeps a prediction that is already
  in [0, 1] unchanged; raw outputs may leave [0, 1] during training (the MSE pulls them
  back towards the measured beta).
- ``multilabel``: n independent binary labels (DeepSEA, Basset, DanQ): binary cross-entropy
  on logits; at inference the sigmoid gives probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import MethrayError

TASKS = ("methylation", "multilabel")


def check(task: str) -> str:
    """Validate a task name, raising :class:`MethrayError` for unknown ones."""
    if task not in TASKS:
        raise MethrayError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Training loss (mean over the batch).

    Parameters
    ----------
    output
        ``(N, K) float32`` raw model output.
    target
        ``(N, K)`` or ``(N,) float32`` targets: beta values (methylation) or 0/1 labels.
    """
    target = target.reshape(output.shape).to(output.dtype)
    if task == "methylation":
        return F.mse_loss(output, target)
    return F.binary_cross_entropy_with_logits(output, target)


def predict(task: str, output: torch.Tensor) -> torch.Tensor:
    """Inference transform: clip to [0, 1] (methylation) or sigmoid (multilabel), same shape."""
    if task == "methylation":
        return output.clamp(0.0, 1.0)
    return torch.sigmoid(output)
