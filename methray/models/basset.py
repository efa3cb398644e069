"""Basset (Kelley, Snoek & Rinn 2016, Genome Research 26:990)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "basset",
    lr=1e-4,
    window_length=600,
    n_outputs=164,
    methylation=False,
    paper="Kelley DR, Snoek J, Rinn JL. Basset: learning the regulatory code of the accessible genome with deep convolutional neural networks. Genome Research 26:990-999 (2016)",
)
class Basset(nn.Module):
    """Basset as published (Kelley et al. 2016, Fig. 1 and Methods; hyper-parameters of the
    best model in Supplementary Table 1).

    Input is 600 bp (``WindowSpec(600)``); the 164 outputs are DNase-seq accessibility in
    164 cell types (logits; the ``multilabel`` task head applies the sigmoid).

    Layers (defaults, shapes for one window, "valid" convolutions; BN = batch normalisation,
    applied before the ReLU as in the released Torch model):

    ===========================  ==========================  ==========
    layer                        parameters                  output
    ===========================  ==========================  ==========
    input                                                    600 x 4
    conv1, BN, ReLU              300 kernels x 19            582 x 300
    max-pool                     3, stride 3                 194 x 300
    conv2, BN, ReLU              200 kernels x 11            184 x 200
    max-pool                     4, stride 4                 46 x 200
    conv3, BN, ReLU              200 kernels x 7             40 x 200
    max-pool                     4, stride 4                 10 x 200
    flatten                                                  2000
    fully connected, BN, ReLU    1000                        1000
    dropout                      p = 0.3                     1000
    fully connected, BN, ReLU    1000                        1000
    dropout                      p = 0.3                     1000
    fully connected              n_outputs (164)             164
    ===========================  ==========================  ==========

    Parameters
    ----------
    window_length
        Input length L (600).
    n_outputs
        Number of outputs (164).
    n_kernels
        Kernels of the three convolutions, ``(300, 200, 200)``.
    kernel_sizes
        Their widths, ``(19, 11, 7)``.
    pool_sizes
        Width and stride of the three max-pools, ``(3, 4, 4)``.
    n_hidden
        Units of the two fully connected layers (1000).
    dropout
        Dropout after each fully connected layer (0.3).

    Shapes
    ------
    ``forward``: ``(N, 600, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 600,
        n_outputs: int = 164,
        n_kernels: tuple[int, int, int] = (300, 200, 200),
        kernel_sizes: tuple[int, int, int] = (19, 11, 7),
        pool_sizes: tuple[int, int, int] = (3, 4, 4),
        n_hidden: int = 1000,
        dropout: float = 0.3,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels, length = 4, window_length
        for k, w, p in zip(n_kernels, kernel_sizes, pool_sizes):
            layers += [nn.Conv1d(channels, k, w), nn.BatchNorm1d(k), nn.ReLU(), nn.MaxPool1d(p)]
            channels, length = k, (length - w + 1) // p
        if length < 1:
            raise ValueError(f"basset: window of {window_length} bp is too short for its layers")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.convs = [m for m in layers if isinstance(m, nn.Conv1d)]
        self.n_flat = channels * length
        self.head = nn.Sequential(
            nn.Linear(self.n_flat, n_hidden),
            nn.BatchNorm1d(n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden),
            nn.BatchNorm1d(n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.transpose(1, 2)))
