"""Compute budgets: caps that make a job fit a machine, stated in every table it writes.

A :class:`Budget` caps training, validation and evaluation rows (sites or windows) and epochs;
:func:`cap_rows` is the one rule that picks the capped subset. ``methray compare`` picks a named
budget (``--budget cpu``); the regulatory job reads one from its config's ``budget`` section.
"""

from __future__ import annotations

import numpy as np
from pydantic import AliasChoices, Field

from .config import Section


class Budget(Section):
    """Caps on rows and epochs; None = no cap.

    The regulatory config's keys ``note``, ``max_train_windows``, ``max_val_windows`` and
    ``max_eval_windows`` are accepted for ``name``, ``max_train``, ``max_val`` and ``max_eval``.
    """

    name: str = Field("full scale", validation_alias=AliasChoices("name", "note"), description="stated in every table header")
    epochs: int | None = Field(None, ge=1, description="at most this many epochs per model (None: train.epochs)")
    max_train: int | None = Field(None, ge=1, validation_alias=AliasChoices("max_train", "max_train_windows"),
                                  description="training rows, for models not in max_train_per_model")
    max_train_per_model: dict[str, int] = Field(default_factory=dict, description="model -> training rows")
    max_val: int | None = Field(None, ge=1, validation_alias=AliasChoices("max_val", "max_val_windows"), description="validation rows")
    max_eval: int | None = Field(None, ge=1, validation_alias=AliasChoices("max_eval", "max_eval_windows"),
                                 description="evaluated (test) rows, per evaluated region")

    def train_cap(self, model: str) -> int | None:
        """Training rows of ``model``: its own cap, else ``max_train``."""
        return self.max_train_per_model.get(model, self.max_train)

    def is_uncapped(self) -> bool:
        return self == Budget(name=self.name)

    def describe(self, models: list[str], unit: str = "sites") -> str:
        """One line for a table header, e.g. ``budget: cpu; at most 3 epochs per model; ...``."""
        if self.is_uncapped():
            return f"budget: {self.name} (no caps: all {unit}, train.epochs)"
        parts = [f"budget: {self.name}"]
        if self.epochs:
            parts.append(f"at most {self.epochs} epochs per model")
        caps = [f"{m} {self.train_cap(m):,}" for m in models if self.train_cap(m)]
        if caps:
            parts.append(f"training {unit} at most " + ", ".join(caps))
        if self.max_val:
            parts.append(f"validation {unit} {self.max_val:,}")
        if self.max_eval:
            parts.append(f"test {unit} {self.max_eval:,}")
        return "; ".join(parts)


def cap_rows(index: np.ndarray, limit: int | None, seed: int = 0, keep: np.ndarray | None = None) -> np.ndarray:
    """At most ``limit`` of the row numbers ``index``, sorted.

    The rows are a prefix of one seeded random order, so with the same ``index`` and seed a
    smaller cap's rows are a subset of a larger cap's (models compared under different caps
    share their sites). ``keep`` (row numbers, a subset of ``index``) are always kept (e.g. the
    inside-training block of the regulatory job) and the rest is filled up to ``limit``.

    Parameters
    ----------
    index
        ``(n,) int`` row numbers.
    limit
        Cap; None = all of ``index``.
    seed
        Seed of the random order.
    keep
        Rows always kept.

    Returns
    -------
    np.ndarray
        ``(min(n, limit),) int64`` (more if ``keep`` is larger than ``limit``), ascending.
    """
    index = np.asarray(index, dtype=np.int64)
    if limit is None or len(index) <= limit:
        return index
    keep = np.asarray(keep if keep is not None else [], dtype=np.int64)
    rest = np.setdiff1d(index, keep)
    order = np.random.default_rng(seed).permutation(len(rest))
    pick = rest[order[: max(limit - len(keep), 0)]]
    return np.sort(np.concatenate([keep, pick]))
