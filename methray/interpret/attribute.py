"""Attributions of sequence models with tangermeme: DeepLIFT-SHAP and in-silico mutagenesis (ISM).

methray models take ``(N, L, 4)`` one-hot windows; tangermeme takes ``(N, 4, L)``:
:class:`ChannelsFirst` adapts one to the other. Attributions are of the model's raw first
output (before the task's clipping to [0, 1], which has no gradient outside it).

- **DeepLIFT-SHAP** (Lundberg & Lee 2017; Shrikumar et al. 2017), tangermeme's
  ``deep_lift_shap`` with ``n_shuffles`` dinucleotide-shuffled references per window: the
  hypothetical contributions ``(N, L, 4)`` (what each base would contribute at each
  position, the input of TF-MoDISco), and the actual contributions = hypothetical x one-hot,
  whose sum over a window equals ``f(x) - mean f(reference)`` (the DeepLIFT summation rule).
- **ISM** (tangermeme ``saturation_mutagenesis``, hypothetical): for every position and base,
  prediction with that base minus the prediction with the original, centred on the mean over
  the four bases at the position, ``(N, L, 4)``.
- Models trained with reverse-complement augmentation (checkpoint meta ``rc_augment``):
  both are averaged over the window and its reverse complement (flipped back).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..predictor import CheckpointPredictor


class ChannelsFirst(nn.Module):
    """``(N, 4, L)`` -> a methray model's ``(N, L, 4)`` input; returns its raw ``(N, n_outputs)``.

    The wrapped model is a copy with its ``Dropout`` modules replaced by identities: dropout
    is the identity at inference anyway, and with MRCNN's dropout layer in place tangermeme's
    DeepLIFT sums did not match the output differences (measured: 0.007 vs 0.03), without it
    they match to 1e-7.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = _without_dropout(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2))


def _without_dropout(model: nn.Module) -> nn.Module:
    import copy

    model = copy.deepcopy(model).eval()
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.dropout._DropoutNd):
            setattr(model, name, nn.Identity())
        else:
            setattr(model, name, _without_dropout(child))
    return model


def reverse_complement(x: np.ndarray) -> np.ndarray:
    """Reverse complement of one-hot (or attribution) arrays ``(N, L, 4)`` in A, C, G, T order
    (:func:`methray.augment.reverse_complement` on numpy arrays)."""
    from ..augment import reverse_complement as rc

    return np.ascontiguousarray(rc(torch.from_numpy(np.ascontiguousarray(x))).numpy())


def deep_lift_shap(model: nn.Module, x: np.ndarray, *, n_shuffles: int = 20, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Hypothetical DeepLIFT-SHAP contributions with dinucleotide-shuffled references.

    Parameters
    ----------
    model
        A methray sequence model in eval mode, ``(N, L, 4) -> (N, n_outputs)``; output 0 is explained.
    x
        One-hot windows, ``(N, L, 4)`` (uint8 or float32; N rows = all-zero stay zero).
    n_shuffles
        References per window (dinucleotide shuffles of the window, tangermeme ``dinucleotide_shuffle``).
    seed
        Random state of the shuffles.

    Returns
    -------
    np.ndarray
        ``(N, L, 4) float32`` hypothetical contributions; multiply by ``x`` for the actual ones.
    """
    from tangermeme.deep_lift_shap import deep_lift_shap as dls

    X = torch.from_numpy(np.asarray(x, np.float32)).transpose(1, 2).contiguous()
    with torch.enable_grad():
        hyp = dls(ChannelsFirst(model).eval(), X, target=0, n_shuffles=n_shuffles, hypothetical=True,
                  random_state=seed, batch_size=batch_size, warning_threshold=1e-3, only_warn=True)
    return hyp.detach().transpose(1, 2).numpy().astype(np.float32)


def ism(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Hypothetical ISM: per position and base, ``f(x with that base) - f(x)``, mean-centred over the bases.

    Parameters
    ----------
    model
        A methray sequence model, ``(N, L, 4) -> (N, n_outputs)``; output 0 is explained.
    x
        One-hot windows, ``(N, L, 4)``.

    Returns
    -------
    np.ndarray
        ``(N, L, 4) float32``.
    """
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    X = torch.from_numpy(np.asarray(x, np.float32)).transpose(1, 2).contiguous()
    with torch.inference_mode(False), torch.no_grad():
        out = saturation_mutagenesis(ChannelsFirst(model).eval(), X, target=0, hypothetical=True, batch_size=batch_size)
    return out.detach().float().transpose(1, 2).numpy().astype(np.float32)


def representation(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's learned representation: the input of its last ``nn.Linear`` layer, ``(N, D) float32``.

    For MRCNN this is the 80-unit layer before the output (Tian et al. 2019, Fig. 5 uses the
    last hidden layer's features for t-SNE).
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    got = []
    handle = last.register_forward_hook(lambda mod, inp, out: got.append(inp[0].detach().reshape(len(inp[0]), -1)))
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.asarray(x, np.float32)))
    finally:
        handle.remove()
    return got[0].numpy().astype(np.float32)


class Attributor(CheckpointPredictor):
    """Ray Data callable class: attributions of a batch of CpG windows, model loaded once per actor
    (a :class:`methray.predictor.CheckpointPredictor`).

    Parameters
    ----------
    checkpoint_dir
        A methray checkpoint.
    reference
        FASTA path.
    n_shuffles, seed
        DeepLIFT-SHAP references (see :func:`deep_lift_shap`).
    with_ism
        Also compute ISM (400 x 3 forward passes per window for MRCNN).
    rc_average
        Average over both strands (for models trained with reverse-complement augmentation).
    threads
        torch CPU threads.

    ``__call__`` takes ``chrom`` ``(B,)``, ``pos`` ``(B,) int64`` and passes every input column
    through; it adds ``x`` ``(B, L, 4) uint8``, ``dls_hyp`` and (with ISM) ``ism`` ``(B, L, 4)
    float32``, ``repr`` ``(B, D) float32`` and ``pred`` ``(B,) float32`` (the task's prediction).
    Attributions run on the CPU copy of the model (tangermeme moves batches to the model's device).
    """

    def __init__(self, checkpoint_dir: str, reference: str, n_shuffles: int = 20, seed: int = 0, with_ism: bool = True,
                 rc_average: bool = False, threads: int = 1):
        super().__init__(checkpoint_dir, reference, int(threads))
        self.n_shuffles, self.seed, self.with_ism = n_shuffles, seed, with_ism
        self.rc = bool(rc_average)

    def _both_strands(self, fn, x: np.ndarray) -> np.ndarray:
        a = fn(self.model, x)
        if self.rc:
            a = (a + reverse_complement(fn(self.model, reverse_complement(x)))) / 2
        return a.astype(np.float32)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..windows import encode_batch

        x = encode_batch(batch, self.reference, self.meta.window_length, self.meta.exclude_cpg)["x"]
        out = {k: np.asarray(v) for k, v in batch.items()}
        out["x"] = x
        out["dls_hyp"] = self._both_strands(lambda m, v: deep_lift_shap(m, v, n_shuffles=self.n_shuffles, seed=self.seed), x)
        if self.with_ism:
            out["ism"] = self._both_strands(ism, x)
        out["repr"] = representation(self.model, x)
        out["pred"] = self.predict(x)[:, 0].astype(np.float32)
        return out
