"""Model checkpoints: a directory with ``model.pt`` (state dict) and ``meta.json``.

``meta.json`` records what is needed to rebuild and use the model: registry name, task,
window (length, exclude_cpg), n_outputs, constructor params, and the training summary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import models, storage
from .encoding import WindowSpec
from .errors import MethrayError


def save(directory: str | os.PathLike, model: torch.nn.Module, meta: dict) -> None:
    """Write ``model``'s state dict and ``meta`` into ``directory`` (created if needed)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), Path(directory, "model.pt"))
    Path(directory, "meta.json").write_text(json.dumps(meta, indent=2))


def read_meta(directory: str) -> dict:
    """The checkpoint's ``meta.json``; raises :class:`MethrayError` if it is not a checkpoint."""
    meta_path = storage.join(directory, "meta.json")
    if not storage.exists(meta_path) or not storage.exists(storage.join(directory, "model.pt")):
        raise MethrayError(f"{directory}: not a methray checkpoint (needs model.pt and meta.json)")
    fs, p = storage.filesystem(meta_path)
    with fs.open(p, "r") as fh:
        return json.load(fh)


def load(directory: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode.

    Returns
    -------
    (torch.nn.Module, dict)
        The model on ``device`` and its metadata.

    Raises
    ------
    MethrayError
        Missing / incomplete checkpoint or an unknown model name.
    """
    meta = read_meta(directory)
    model = models.build(meta["model"], window_length=meta["window_length"], n_outputs=meta["n_outputs"], **meta.get("params", {}))
    weights = storage.local_copy(storage.join(directory, "model.pt"))
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval(), meta


def window_of(meta: dict) -> WindowSpec:
    """The input window recorded in a checkpoint's metadata."""
    return WindowSpec(meta["window_length"], meta["exclude_cpg"])
