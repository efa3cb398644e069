"""Plain CNN baseline of the MRCNN paper (Tian et al. 2019, BMC Genomics 20:192)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "cnn_baseline",
    window_length=400,
    exclude_cpg=True,
    n_outputs=1,
    paper="Tian Q, et al. MRCNN: a deep learning model for regression of genome-wide DNA methylation. BMC Genomics 20:192 (2019), CNN baseline",
)
class CNNBaseline(nn.Module):
    """Two-layer 1-D CNN regressor, the "simple CNN" baseline compared against MRCNN.

    Tian et al. (2019, Results, comparison with other models) only outline this baseline
    (conv -> max-pool -> conv -> max-pool -> fully connected -> dropout -> output on the same
    400 bp window as MRCNN); the sizes below are our choice, in the range of the paper's own
    layers (16-64 maps, a 256-unit dense layer, dropout 0.5). It takes the same input as
    :class:`~methray.models.mrcnn.MRCNN`: 200 bp either side of the CpG with the CpG's own
    two bases left out (``WindowSpec(400, exclude_cpg=True)``), and is trained with MSE.

    Layers (defaults, shapes for one window, "valid" convolutions):

    ====================  ==========================  ==========
    layer                 parameters                  output
    ====================  ==========================  ==========
    input                                             400 x 4
    conv1, ReLU           64 kernels x 8              393 x 64
    max-pool              4, stride 4                 98 x 64
    conv2, ReLU           128 kernels x 8             91 x 128
    max-pool              4, stride 4                 22 x 128
    flatten                                           2816
    fully connected, ELU  256                         256
    dropout               p = 0.5                     256
    fully connected       n_outputs (1)               1
    ====================  ==========================  ==========

    Parameters
    ----------
    window_length
        Input length L (400).
    n_outputs
        Number of outputs (1 = beta value, raw; the ``methylation`` head clips it).
    n_kernels
        Kernels of the two convolutions, ``(64, 128)``.
    kernel_size
        Width of both convolutions (8).
    pool_size
        Width and stride of both max-pools (4).
    n_hidden
        Units of the fully connected layer (256).
    dropout
        Dropout before the output layer (0.5).

    Shapes
    ------
    ``forward``: ``(N, 400, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 400,
        n_outputs: int = 1,
        n_kernels: tuple[int, int] = (64, 128),
        kernel_size: int = 8,
        pool_size: int = 4,
        n_hidden: int = 256,
        dropout: float = 0.5,
    ):
        super().__init__()
        k1, k2 = n_kernels
        length = ((window_length - kernel_size + 1) // pool_size - kernel_size + 1) // pool_size
        if length < 1:
            raise ValueError(f"cnn_baseline: window of {window_length} bp is too short for its layers")
        self.conv1 = nn.Conv1d(4, k1, kernel_size)
        self.conv2 = nn.Conv1d(k1, k2, kernel_size)
        self.features = nn.Sequential(
            self.conv1,
            nn.ReLU(),
            nn.MaxPool1d(pool_size),
            self.conv2,
            nn.ReLU(),
            nn.MaxPool1d(pool_size),
            nn.Flatten(),
        )
        self.n_flat = k2 * length
        self.head = nn.Sequential(
            nn.Linear(self.n_flat, n_hidden),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.transpose(1, 2)))  # (N, L, 4) -> (N, 4, L) for Conv1d
