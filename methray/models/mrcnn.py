"""MRCNN: methylation regression CNN (Tian et al. 2019, BMC Genomics 20:192, Fig. 1)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "mrcnn",
    window_length=400,
    exclude_cpg=True,
    n_outputs=1,
    paper="Tian Q, et al. MRCNN: a deep learning model for regression of genome-wide DNA methylation. BMC Genomics 20:192 (2019)",
)
class MRCNN(nn.Module):
    """MRCNN as published (Tian et al. 2019, Fig. 1 and Methods).

    Input is the 200 bp upstream and 200 bp downstream of a CpG, the CpG's own two bases
    left out (:class:`~methray.encoding.WindowSpec` ``(400, exclude_cpg=True)``).

    Layers (shapes for one window; "linear" = no activation, as in the paper):

    ====================  =======================  ==================
    layer                 parameters               output
    ====================  =======================  ==================
    input                                          400 x 4
    conv 1x4, linear      16 maps (one per base)   400 x 16
    reshape (seq. order)                           16 x 20 x 20
    conv 3x3, ReLU        32 maps, valid           32 x 18 x 18
    max-pool 3x3, s 3                              32 x 6 x 6
    conv 3x3, linear      48 maps, valid           48 x 4 x 4
    conv 3x3, linear      64 maps, valid           64 x 2 x 2
    flatten                                        256
    fully connected       256, linear              256
    fully connected       80, linear               80
    dropout               p = 0.5                  80
    fully connected       1                        1
    ====================  =======================  ==================

    Trained with MSE loss and Adam (lr 1e-3); predictions are clipped to [0, 1] at
    inference (the ``methylation`` task head, :mod:`methray.tasks`).

    Parameters
    ----------
    window_length
        Must be a perfect square times 1 (400 = 20 x 20 as published).
    n_outputs
        Number of outputs (1 = beta value).
    dropout
        Dropout before the output layer (0.5).

    Shapes
    ------
    ``forward``: ``(N, 400, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(self, window_length: int = 400, n_outputs: int = 1, dropout: float = 0.5):
        super().__init__()
        side = int(round(window_length**0.5))
        if side * side != window_length or side < 14:
            raise ValueError(f"MRCNN needs a square window length >= 196 (400 = 20 x 20), got {window_length}")
        self.side = side
        self.base_conv = nn.Conv2d(1, 16, kernel_size=(1, 4))  # the paper's 1x4 conv over each base
        self.features = nn.Sequential(
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=3),
            nn.Conv2d(32, 48, 3),
            nn.Conv2d(48, 64, 3),
        )
        n_flat = 64 * ((side - 2) // 3 - 4) ** 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, 256),
            nn.Linear(256, 80),
            nn.Dropout(dropout),
            nn.Linear(80, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = self.base_conv(x.unsqueeze(1))  # (N, 16, L, 1)
        h = h.squeeze(-1).transpose(1, 2)  # (N, L, 16), sequence order
        h = h.reshape(n, self.side, self.side, 16).permute(0, 3, 1, 2)  # (N, 16, 20, 20)
        return self.head(self.features(h))
