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
    """

    name: str
    cls: type
    window: WindowSpec | None
    n_outputs: int
    paper: str
    methylation: bool = True
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}


def register(
    name: str,
    *,
    window_length: int | None,
    n_outputs: int,
    paper: str,
    exclude_cpg: bool = False,
    methylation: bool = True,
) -> Callable[[type], type]:
    """Class decorator that registers a model under ``name``."""

    def deco(cls: type) -> type:
        window = WindowSpec(window_length, exclude_cpg) if window_length else None
        _REGISTRY[name] = ModelInfo(name, cls, window, n_outputs, paper, methylation)
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


def _load_all() -> None:
    # Importing the package imports every model module, which registers them.
    from .. import models  # noqa: F401
