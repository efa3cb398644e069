"""DeepSEA (Zhou & Troyanskaya 2015, Nature Methods 12:931)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "deepsea",
    lr=1e-4,
    window_length=1000,
    n_outputs=919,
    methylation=False,
    paper="Zhou J, Troyanskaya OG. Predicting effects of noncoding variants with deep learning-based sequence model. Nature Methods 12:931-934 (2015)",
)
class DeepSEA(nn.Module):
    """DeepSEA as published (Zhou & Troyanskaya 2015, Online Methods "Deep learning model",
    Supplementary Fig. 1 / Supplementary Table 1).

    Input is 1000 bp (``WindowSpec(1000)``, centred on the site); the 919 outputs are
    chromatin features (125 DNase, 690 TF, 104 histone marks). Outputs are logits: the
    ``multilabel`` task head applies the sigmoid. With ``n_outputs=1`` it serves the
    ``methylation`` task.

    Layers (defaults, shapes for one window, "valid" convolutions):

    ======================  ==========================  ==========
    layer                   parameters                  output
    ======================  ==========================  ==========
    input                                               1000 x 4
    conv1, ReLU             320 kernels x 8             993 x 320
    max-pool                4, stride 4                 248 x 320
    dropout                 p = 0.2
    conv2, ReLU             480 kernels x 8             241 x 480
    max-pool                4, stride 4                 60 x 480
    dropout                 p = 0.2
    conv3, ReLU             960 kernels x 8             53 x 960
    dropout                 p = 0.5
    flatten                                             50880
    fully connected, ReLU   925                         925
    fully connected         n_outputs (919)             919
    ======================  ==========================  ==========

    Parameters
    ----------
    window_length
        Input length L (1000).
    n_outputs
        Number of outputs (919).
    n_kernels
        Kernels of the three convolutions, ``(320, 480, 960)``.
    kernel_size
        Width of all convolutions (8).
    pool_size
        Width and stride of the two max-pools (4).
    n_hidden
        Units of the fully connected layer (925).
    dropout
        Dropout after conv1, conv2 and conv3, ``(0.2, 0.2, 0.5)``.

    Shapes
    ------
    ``forward``: ``(N, 1000, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 1000,
        n_outputs: int = 919,
        n_kernels: tuple[int, int, int] = (320, 480, 960),
        kernel_size: int = 8,
        pool_size: int = 4,
        n_hidden: int = 925,
        dropout: tuple[float, float, float] = (0.2, 0.2, 0.5),
    ):
        super().__init__()
        k1, k2, k3 = n_kernels
        d1, d2, d3 = dropout
        w = kernel_size - 1
        length = ((window_length - w) // pool_size - w) // pool_size - w
        if length < 1:
            raise ValueError(f"deepsea: window of {window_length} bp is too short for its layers")
        self.conv1 = nn.Conv1d(4, k1, kernel_size)
        self.conv2 = nn.Conv1d(k1, k2, kernel_size)
        self.conv3 = nn.Conv1d(k2, k3, kernel_size)
        self.features = nn.Sequential(
            self.conv1,
            nn.ReLU(),
            nn.MaxPool1d(pool_size),
            nn.Dropout(d1),
            self.conv2,
            nn.ReLU(),
            nn.MaxPool1d(pool_size),
            nn.Dropout(d2),
            self.conv3,
            nn.ReLU(),
            nn.Dropout(d3),
            nn.Flatten(),
        )
        self.n_flat = k3 * length
        self.head = nn.Sequential(nn.Linear(self.n_flat, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.transpose(1, 2)))
