"""The per-gene models: DeepMethyGene (torch) and the scikit-learn baselines, behind one interface.

Every model is an estimator with ``fit(X, y)`` / ``predict(X)`` on standardised inputs;
:class:`GeneModel` adds what is fitted on the training samples only (feature standardisation
with missing-value imputation, target centring and scaling) and is what a fold trains and what
``expression-predict`` loads.

Baselines (DeepMethyGene paper, Table 2): ElasticNetCV (the geneEXPLORE family), random forest,
SVR with an RBF kernel; plus the training-fold mean (R^2 <= 0 by construction on held-out data).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import ElasticNetCV
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from ..models.deepmethygene import DeepMethyGene
from .config import ExpressionConfig


def channels(n_cpgs: int) -> tuple[int, int]:
    """DeepMethyGene's channel counts for ``n_cpgs`` CpGs: ``(min(64, n // 10), min(32, n // 20))``,
    each clamped to at least 1 (genes with fewer than 20 CpGs)."""
    return DeepMethyGene(n_cpgs).channels if n_cpgs >= 1 else (0, 0)


def inner_split(n: int, groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` training samples into (fit, validation) indices by whole groups.

    Groups are drawn in random order until the validation part holds at least
    ``round(fraction * n)`` samples (at least one group, never all of them).
    """
    uniq = rng.permutation(np.unique(groups))
    want = max(1, round(fraction * n))
    val_groups, size = [], 0
    for g in uniq[:-1]:
        if size >= want:
            break
        val_groups.append(g)
        size += int((groups == g).sum())
    is_val = np.isin(groups, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class DeepMethyGeneRegressor:
    """DeepMethyGene trained as in the paper: Adam, MSE, full batch, early stopping.

    Each epoch is one full-batch step on the fit part of the training samples (a few dozen
    samples); training stops after ``patience`` epochs without a lower validation MSE and the
    weights of the best epoch are kept.

    Parameters
    ----------
    lr, max_epochs, patience, val_fraction, weight_decay
        See :class:`methray.expression.config.DeepMethyGeneConfig`.
    seed
        Seeds the weight initialisation and the inner validation split.
    device
        ``"cpu"`` or ``"cuda"``.

    Attributes (after ``fit``)
    --------------------------
    net_ : DeepMethyGene
        The network (on CPU once fitted, for pickling).
    epochs_ : int
        Epochs run; ``best_epoch_``: the epoch whose weights are kept.
    """

    def __init__(self, *, lr=1e-3, max_epochs=700, patience=90, val_fraction=0.2, weight_decay=0.0, seed=0, device="cpu"):
        self.lr, self.max_epochs, self.patience = lr, max_epochs, patience
        self.val_fraction, self.weight_decay, self.seed, self.device = val_fraction, weight_decay, seed, device

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "DeepMethyGeneRegressor":
        """Fit on ``X`` ``(N, n) float32`` (standardised M-values) and ``y`` ``(N,)`` (standardised)."""
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        n = len(y)
        fit_idx, val_idx = inner_split(n, np.arange(n) if groups is None else groups, self.val_fraction, rng)
        dev = torch.device(self.device)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
        yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
        x_fit, y_fit, x_val, y_val = Xt[fit_idx], yt[fit_idx], Xt[val_idx], yt[val_idx]
        net = DeepMethyGene(X.shape[1]).to(dev)
        # fused Adam: one kernel for all parameters; per-step overhead dominates these tiny models
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=True)
        params = list(net.parameters())
        best, best_state, best_epoch, epoch = math.inf, [p.detach().clone() for p in params], 0, 0
        for epoch in range(1, self.max_epochs + 1):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(x_fit).squeeze(1), y_fit).backward()
            opt.step()
            with torch.no_grad():
                val = F.mse_loss(net(x_val).squeeze(1), y_val).item()
            if val < best:
                best, best_epoch = val, epoch
                for b, p in zip(best_state, params):
                    b.copy_(p.detach())
            elif epoch - best_epoch >= self.patience:
                break
        with torch.no_grad():
            for b, p in zip(best_state, params):
                p.copy_(b)
        self.net_ = net.cpu().eval()
        self.epochs_, self.best_epoch_, self.best_val_mse_ = epoch, best_epoch, best
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X`` ``(N, n)`` -> ``(N,) float64`` (standardised target units)."""
        with torch.no_grad():
            return self.net_(torch.as_tensor(X, dtype=torch.float32)).squeeze(1).double().numpy()


def make_estimator(name: str, cfg: ExpressionConfig, seed: int, groups: np.ndarray, device: str = "cpu"):
    """A fresh estimator for model ``name`` (a name of :data:`methray.expression.config.MODELS`).

    ``groups`` ``(N,)`` are the training samples' group labels: the inner splits (ElasticNetCV's
    alpha / l1_ratio search, DeepMethyGene's validation split) keep a group together.
    """
    if name == "deepmethygene":
        c = cfg.deepmethygene
        return DeepMethyGeneRegressor(lr=c.lr, max_epochs=c.max_epochs, patience=c.patience, val_fraction=c.val_fraction,
                                      weight_decay=c.weight_decay, seed=seed, device=device)
    if name == "elasticnet":
        c = cfg.elasticnet
        k = min(c.inner_folds, len(np.unique(groups)))
        splits = list(GroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(groups)), groups=groups))
        return ElasticNetCV(l1_ratio=c.l1_ratio, alphas=c.n_alphas, cv=splits, max_iter=c.max_iter, random_state=seed)
    if name == "random_forest":
        c = cfg.random_forest
        return RandomForestRegressor(n_estimators=c.n_estimators, max_features=c.max_features,
                                     min_samples_leaf=c.min_samples_leaf, n_jobs=1, random_state=seed)
    if name == "svr":
        c = cfg.svr
        return SVR(kernel="rbf", C=c.C, epsilon=c.epsilon, gamma=c.gamma)
    if name == "mean":
        return DummyRegressor(strategy="mean")
    raise ValueError(f"unknown model {name!r}")


class GeneModel:
    """One gene's fitted model with its training-sample preprocessing.

    Fitted on training samples only: the per-probe mean and standard deviation of the M-values
    (a missing M-value is replaced by its probe's training mean, i.e. 0 after standardisation;
    a probe with no training value is 0 too) and the target's mean and standard deviation (the
    estimator learns the standardised log2 expression; predictions are scaled back).

    Parameters
    ----------
    estimator
        From :func:`make_estimator`.
    probes
        The gene's probe ids, in feature order (checked again at prediction time).
    """

    def __init__(self, estimator, probes: list[str] | None = None):
        self.estimator = estimator
        self.probes = list(probes or [])

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "GeneModel":
        """``X`` ``(N, n) float32`` M-values (NaN allowed), ``y`` ``(N,)`` log2 expression."""
        self.scaler_ = StandardScaler().fit(X)
        self.y_mean_ = float(np.mean(y))
        sd = float(np.std(y))
        self.y_sd_ = sd if sd > 0 else 1.0
        Z = self.transform(X)
        t = (y - self.y_mean_) / self.y_sd_
        if isinstance(self.estimator, DeepMethyGeneRegressor):
            self.estimator.fit(Z, t, groups)
        else:
            self.estimator.fit(Z, t)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise with the training statistics; missing -> 0 (the training mean). ``(N, n) float32``."""
        return np.nan_to_num(self.scaler_.transform(X), nan=0.0).astype(np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X`` ``(N, n)`` M-values -> ``(N,) float64`` predicted log2 expression."""
        return self.estimator.predict(self.transform(X)) * self.y_sd_ + self.y_mean_

    @property
    def epochs(self) -> int | None:
        return getattr(self.estimator, "epochs_", None)
