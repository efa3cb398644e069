"""Model checkpoints: a directory with ``model.pt`` (state dict) and ``meta.json``.

``meta.json`` is a :class:`CheckpointMeta`: what is needed to rebuild and use the model
(registry name, task, window, outputs, constructor params) and what the training recorded.
:func:`write_meta` is its one writer and :func:`read_meta` its one reader.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from . import models, storage
from .encoding import WindowSpec
from .errors import MethrayError


class CheckpointMeta(BaseModel):
    """The metadata of a checkpoint (``meta.json``).

    Keys this version does not know are kept (``extra="allow"``), so a newer checkpoint's
    metadata survives a round trip.
    """

    model_config = ConfigDict(extra="allow")

    # --- the model: enough to rebuild it
    model: str
    """Registry name (``methray models``)."""
    task: str
    """``methylation`` or ``multilabel`` (:mod:`methray.tasks`)."""
    window_length: int
    """Input window length, bp."""
    exclude_cpg: bool = False
    """Whether the window leaves out the CpG's own two bases (MRCNN)."""
    n_outputs: int
    params: dict = {}
    """Constructor overrides."""
    # --- what it was trained on
    genome: str | None = None
    run_name: str | None = None
    tissue: str | None = None
    """Methylation models: the tissue of the training sites."""
    classes: list[str] | None = None
    """Multilabel models: the class of each output."""
    stride: int | None = None
    """Regulatory models: the label grid step, bp."""
    n_train_windows: int | None = None
    budget: str | None = None
    """Regulatory models: the compute budget line."""
    # --- filled by training
    epoch: int | None = None
    """Epoch of the best validation loss (1-based)."""
    val_loss: float | None = None
    # --- methray compare: the facts that decide whether a checkpoint is reused
    compare_budget: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    max_epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    train_seconds: float | None = None
    epochs_run: int | None = None
    init_from: str | None = None
    """Fine-tuned models: the checkpoint whose weights started training (``train.init_from``)."""

    @property
    def window(self) -> WindowSpec:
        """The input window of the model."""
        return WindowSpec(self.window_length, self.exclude_cpg)


def write_meta(directory: str | os.PathLike, meta: CheckpointMeta) -> None:
    """Write ``<directory>/meta.json`` atomically (local or ``s3://``); unset keys are left out."""
    with storage.atomic_write(storage.join(str(directory), "meta.json")) as fh:
        fh.write(meta.model_dump_json(indent=2, exclude_none=True))


def read_meta(directory: str) -> CheckpointMeta:
    """The checkpoint's ``meta.json``.

    Raises
    ------
    MethrayError
        ``directory`` is not a checkpoint (no ``model.pt`` or ``meta.json``), or its
        ``meta.json`` lacks a required key.
    """
    meta_path = storage.join(directory, "meta.json")
    if not storage.exists(meta_path) or not storage.exists(storage.join(directory, "model.pt")):
        raise MethrayError(f"{directory}: not a methray checkpoint (needs model.pt and meta.json)")
    fs, p = storage.filesystem(meta_path)
    with fs.open(p, "r") as fh:
        text = fh.read()
    try:
        return CheckpointMeta.model_validate_json(text)
    except ValueError as exc:
        raise MethrayError(f"{meta_path}: not a methray checkpoint's metadata ({exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc})") from None


def save(directory: str | os.PathLike, model: torch.nn.Module, meta: CheckpointMeta) -> None:
    """Write ``model``'s state dict and ``meta`` into the local ``directory`` (created if needed)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), Path(directory, "model.pt"))
    write_meta(directory, meta)


def load(directory: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model of a checkpoint in eval mode.

    Returns
    -------
    (torch.nn.Module, CheckpointMeta)
        The model on ``device`` and its metadata.

    Raises
    ------
    MethrayError
        Missing / incomplete checkpoint or an unknown model name.
    """
    meta = read_meta(directory)
    model = models.build(meta.model, window_length=meta.window_length, n_outputs=meta.n_outputs, **meta.params)
    weights = storage.local_copy(storage.join(directory, "model.pt"))
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval(), meta


def check_loads(directory: str) -> CheckpointMeta:
    """Load a checkpoint once in the driver and return its metadata.

    Jobs call this before starting actors, so that a bad checkpoint fails here with one line
    rather than in actors that Ray retries.

    Raises
    ------
    MethrayError
        A missing checkpoint, or a ``model.pt`` that torch cannot load (torch raises many kinds).
    """
    try:
        return load(directory, "cpu")[1]
    except MethrayError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of torch.load is the checkpoint's
        raise MethrayError(f"{directory}: cannot load the checkpoint ({type(exc).__name__}: {exc})") from exc
