"""DeepCpG DNA module (Angermueller et al. 2017, Genome Biology 18:67)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "deepcpg_dna",
    lr=1e-4,
    window_length=1001,
    n_outputs=1,
    paper="Angermueller C, et al. DeepCpG: accurate prediction of single-cell DNA methylation states using deep learning. Genome Biology 18:67 (2017), DNA module CnnL2h128",
)
class DeepCpGDNA(nn.Module):
    """The DNA module of DeepCpG, architecture ``CnnL2h128`` (Angermueller et al. 2017,
    Methods "DNA module" and Fig. 1).

    Input is 1001 bp centred on the CpG's C (``WindowSpec(1001)``: the C at index 500).

    Layers (defaults, shapes for one window, "valid" convolutions):

    ====================  ==========================  ==========
    layer                 parameters                  output
    ====================  ==========================  ==========
    input                                             1001 x 4
    conv1, ReLU           128 kernels x 11            991 x 128
    max-pool              4, stride 4                 247 x 128
    conv2, ReLU           256 kernels x 3             245 x 256
    max-pool              2, stride 2                 122 x 256
    flatten                                           31232
    fully connected, ReLU 128                         128
    dropout               p = 0.0                     128
    fully connected       n_outputs (1)               1
    ====================  ==========================  ==========

    DeepCpG trains the DNA module on binary CpG states with a sigmoid output per cell; here
    the output is raw (the task head decides: beta regression or logits).

    Parameters
    ----------
    window_length
        Input length L (1001).
    n_outputs
        Number of outputs (1).
    n_hidden
        Units of the fully connected layer (128, the "h128" of the name).
    dropout
        Dropout after the fully connected layer. Default 0.0: the paper describes dropout as a
        tunable regulariser, and the released DeepCpG code (``dna_models`` and the
        ``dcpg_train.py`` ``--dropout`` option) defaults to 0.0; set e.g. 0.2 to regularise.

    Shapes
    ------
    ``forward``: ``(N, 1001, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(self, window_length: int = 1001, n_outputs: int = 1, n_hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        length = ((window_length - 10) // 4 - 2) // 2
        if length < 1:
            raise ValueError(f"deepcpg_dna: window of {window_length} bp is too short for its layers")
        self.conv1 = nn.Conv1d(4, 128, 11)
        self.conv2 = nn.Conv1d(128, 256, 3)
        self.features = nn.Sequential(
            self.conv1,
            nn.ReLU(),
            nn.MaxPool1d(4),
            self.conv2,
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
        )
        self.n_flat = 256 * length
        self.head = nn.Sequential(
            nn.Linear(self.n_flat, n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.transpose(1, 2)))
