"""Models registered by name, so that a run config picks one with ``model.name``.

Every sequence model follows one convention:

- input ``(N, L, 4) float32`` one-hot windows (A, C, G, T; N = zeros), L = window length;
- output ``(N, n_outputs) float32`` raw scores (no final activation); the task head
  (:mod:`methray.tasks`) applies the loss and the output transform.

A model class is registered with :func:`register`, which records its default window, number
of outputs and citation. Constructors take ``window_length`` and ``n_outputs`` keyword
arguments plus their own hyper-parameters (all with the published defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..encoding import WindowSpec
from ..errors import MethrayError


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model.

    Attributes
    ----------
    name : str
        Registry name used in configs (``mrcnn``, ``deepsea``, ...).
    cls : type[nn.Module]
        The model class.
    window : WindowSpec | None
        Default input window for sequence models; None for non-sequence models.
    n_outputs : int
        Default number of outputs as published.
    paper : str
        Short citation.
    methylation : bool
        Whether the model is meant for the per-CpG methylation task by default.
    lr : float
        Default Adam learning rate (``train.lr`` overrides it). 1e-3 as MRCNN; 1e-4 for the
        large 1 kb models, whose ~50,000-input dense layers diverge at 1e-3 under MSE (measured
        on IMR90: DeepSEA's loss jumped from 0.48 to 18,608 in one step).
    context_features : int
        ``F`` > 0 for context models: their forward is ``model(x, context)`` with ``context``
        ``(N, F) float32`` from :func:`methray.context.context_features` (computed from the
        reference around each CpG); 0 for window-only models (``model(x)``).
    extra : dict
        ``{"example": {...}}`` for non-sequence models: constructor arguments used by
        :func:`model_table` (e.g. ``n_cpgs=100`` for ``deepmethygene``).
    """

    name: str
    cls: type
    window: WindowSpec | None
    n_outputs: int
    paper: str
    methylation: bool = True
    lr: float = 1e-3
    extra: dict = field(default_factory=dict)
    context_features: int = 0


_REGISTRY: dict[str, ModelInfo] = {}


def register(
    name: str,
    *,
    window_length: int | None,
    n_outputs: int,
    paper: str,
    exclude_cpg: bool = False,
    methylation: bool = True,
    lr: float = 1e-3,
    example: dict | None = None,
    context_features: int = 0,
) -> Callable[[type], type]:
    """Class decorator that registers a model under ``name``.

    ``window_length=None`` marks a non-sequence model; its required constructor arguments
    are then passed to :func:`build` as keyword arguments, and ``example`` gives values for
    them that :func:`model_table` uses (e.g. ``{"n_cpgs": 100}``). ``context_features=F``
    marks a context model (see :class:`ModelInfo`).
    """

    def deco(cls: type) -> type:
        window = WindowSpec(window_length, exclude_cpg) if window_length else None
        extra = {"example": dict(example)} if example else {}
        _REGISTRY[name] = ModelInfo(name, cls, window, n_outputs, paper, methylation, lr, extra, context_features)
        return cls

    return deco


def names() -> list[str]:
    """Registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; raises :class:`MethrayError` for unknown names."""
    _load_all()
    if name not in _REGISTRY:
        raise MethrayError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, *, window_length: int | None = None, n_outputs: int | None = None, **kwargs) -> nn.Module:
    """Instantiate model ``name`` with its published defaults, overridden by the arguments."""
    info = get(name)
    args = dict(kwargs)
    if info.window is not None:
        args["window_length"] = window_length or info.window.length
    args["n_outputs"] = n_outputs or info.n_outputs
    try:
        return info.cls(**args)
    except TypeError as exc:
        raise MethrayError(f"model {name!r}: bad override ({exc})") from exc


def n_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def model_table() -> list[dict]:
    """One row per registered model, sorted by name, for ``methray models``.

    Each model is built with its defaults (a non-sequence model with its registered
    ``example`` arguments) on the ``meta`` device, so no weights are allocated.

    Returns
    -------
    list[dict]
        Keys: ``name``; ``window`` (window length in bp, or ``"-"``); ``exclude_cpg``;
        ``n_outputs``; ``task`` (``methylation`` or ``multilabel``, the default task);
        ``parameters`` (int); ``example`` (the arguments used to build a non-sequence model,
        e.g. ``"n_cpgs=100"``, else ``""``); ``paper`` (citation).
    """
    import torch

    rows = []
    for name in names():
        info = get(name)
        example = info.extra.get("example", {})
        with torch.device("meta"):
            model = build(name, **example)
        rows.append(
            {
                "name": name,
                "window": info.window.length if info.window is not None else "-",
                "exclude_cpg": bool(info.window is not None and info.window.exclude_cpg),
                "n_outputs": info.n_outputs,
                "task": "methylation" if info.methylation else "multilabel",
                "parameters": n_parameters(model),
                "example": ", ".join(f"{k}={v}" for k, v in example.items()),
                "paper": info.paper,
            }
        )
    return rows


def _load_all() -> None:
    # Importing the package imports every model module, which registers them.
    from .. import models  # noqa: F401
