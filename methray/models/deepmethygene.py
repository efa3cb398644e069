"""DeepMethyGene (BMC Bioinformatics 2025): gene expression from CpG methylation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register


class ResidualBlock(nn.Module):
    """Two conv1d (kernel 3, padding 1) with LeakyReLU(0.01) and an identity skip:
    ``y = leaky(conv2(leaky(conv1(x))) + x)``; shape ``(N, C, n)`` is kept."""

    def __init__(self, channels: int, slope: float = 0.01):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), self.slope)
        return F.leaky_relu(self.conv2(h) + x, self.slope)


@register(
    "deepmethygene",
    window_length=None,
    n_outputs=1,
    example={"n_cpgs": 100},
    paper="DeepMethyGene: a deep-learning model to predict gene expression using DNA methylations. BMC Bioinformatics (2025)",
)
class DeepMethyGene(nn.Module):
    """DeepMethyGene: regression of one gene's expression from the methylation of its n
    nearby CpGs (BMC Bioinformatics 2025, Methods "Model architecture").

    Not a sequence model: the input is a vector of CpG M-values (``log2(beta / (1 - beta))``)
    whose length ``n = n_cpgs`` differs per gene, so one model is built per gene. Channel
    counts scale with n: ``c1 = min(64, n // 10)`` and ``c2 = min(32, n // 20)``, each at
    least 1 (our guard for genes with fewer than 20 CpGs).

    Layers (shapes for one sample, n = 100: c1 = 10, c2 = 5):

    ============================  =============================  ==========
    layer                         parameters                     output
    ============================  =============================  ==========
    input (as one channel)                                       1 x n
    conv1d, LeakyReLU(0.01)       c1 kernels x 3, padding 1      c1 x n
    residual block                2 x (c1 kernels x 3), skip     c1 x n
    conv1d, LeakyReLU(0.01)       c2 kernels x 3, padding 1      c2 x n
    residual block                2 x (c2 kernels x 3), skip     c2 x n
    flatten                                                      c2 * n
    fully connected, LeakyReLU    512                            512
    fully connected               n_outputs (1)                  1
    ============================  =============================  ==========

    Parameters
    ----------
    n_cpgs
        Number of CpGs n (required; the registry table uses n = 100).
    n_outputs
        Number of outputs (1 = expression value, trained with MSE).
    n_hidden
        Units of the fully connected layer (512).
    slope
        Negative slope of the LeakyReLUs (0.01).

    Shapes
    ------
    ``forward``: ``(N, n) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(self, n_cpgs: int, n_outputs: int = 1, n_hidden: int = 512, slope: float = 0.01):
        super().__init__()
        if n_cpgs < 1:
            raise ValueError(f"deepmethygene: n_cpgs must be >= 1, got {n_cpgs}")
        self.n_cpgs = n_cpgs
        self.channels = (max(1, min(64, n_cpgs // 10)), max(1, min(32, n_cpgs // 20)))
        c1, c2 = self.channels
        self.slope = slope
        self.conv1 = nn.Conv1d(1, c1, 3, padding=1)
        self.res1 = ResidualBlock(c1, slope)
        self.conv2 = nn.Conv1d(c1, c2, 3, padding=1)
        self.res2 = ResidualBlock(c2, slope)
        self.fc = nn.Linear(c2 * n_cpgs, n_hidden)
        self.out = nn.Linear(n_hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_cpgs:
            raise ValueError(f"deepmethygene: expected input (N, {self.n_cpgs}), got {tuple(x.shape)}")
        h = self.res1(F.leaky_relu(self.conv1(x.unsqueeze(1)), self.slope))
        h = self.res2(F.leaky_relu(self.conv2(h), self.slope))
        return self.out(F.leaky_relu(self.fc(h.flatten(1)), self.slope))
