"""DanQ (Quang & Xie 2016, Nucleic Acids Research 44:e107) and DanQ with random dropout
(Li & Huang 2020, Intelligent Information Management 12:36)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


@register(
    "danq",
    lr=1e-4,
    window_length=1000,
    n_outputs=919,
    methylation=False,
    paper="Quang D, Xie X. DanQ: a hybrid convolutional and recurrent deep neural network for quantifying the function of DNA sequences. Nucleic Acids Research 44:e107 (2016)",
)
class DanQ(nn.Module):
    """DanQ as published (Quang & Xie 2016, Materials and Methods "DanQ model", Fig. 1).

    Input is 1000 bp (``WindowSpec(1000)``); the 919 outputs are DeepSEA's chromatin
    features (logits; the ``multilabel`` task head applies the sigmoid).

    PyTorch's LSTM has two bias vectors per gate where Keras (the published code) has one,
    so this model has 2 x 1280 = 2,560 parameters more than the original (46,929,039 vs
    46,926,479); the function is the same.

    Layers (defaults, shapes for one window, "valid" convolution):

    ======================  ===============================  ==========
    layer                   parameters                       output
    ======================  ===============================  ==========
    input                                                    1000 x 4
    conv, ReLU              320 kernels x 26                 975 x 320
    max-pool                13, stride 13                    75 x 320
    dropout                 p = 0.2                          75 x 320
    bidirectional LSTM      320 units per direction          75 x 640
    dropout                 p = 0.5                          75 x 640
    flatten                                                  48000
    fully connected, ReLU   925                              925
    fully connected         n_outputs (919)                  919
    ======================  ===============================  ==========

    Parameters
    ----------
    window_length
        Input length L (1000).
    n_outputs
        Number of outputs (919).
    n_kernels
        Convolution kernels (320).
    kernel_size
        Their width (26).
    pool_size
        Max-pool width and stride (13).
    lstm_units
        LSTM units per direction (320).
    n_hidden
        Units of the fully connected layer (925).
    dropout_pool, dropout_lstm
        Dropout after the max-pool (0.2) and after the LSTM (0.5).

    Shapes
    ------
    ``forward``: ``(N, 1000, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 1000,
        n_outputs: int = 919,
        n_kernels: int = 320,
        kernel_size: int = 26,
        pool_size: int = 13,
        lstm_units: int = 320,
        n_hidden: int = 925,
        dropout_pool: float = 0.2,
        dropout_lstm: float = 0.5,
    ):
        super().__init__()
        self.steps = (window_length - kernel_size + 1) // pool_size
        if self.steps < 1:
            raise ValueError(f"danq: window of {window_length} bp is too short for its layers")
        self.conv = nn.Conv1d(4, n_kernels, kernel_size)
        self.pool = nn.MaxPool1d(pool_size)
        self.drop_pool = nn.Dropout(dropout_pool)
        self.lstm = nn.LSTM(n_kernels, lstm_units, batch_first=True, bidirectional=True)
        self.drop_lstm = nn.Dropout(dropout_lstm)
        self.n_flat = self.steps * 2 * lstm_units
        self.head = nn.Sequential(nn.Linear(self.n_flat, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_outputs))

    def motifs(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution + pooling + dropout: ``(N, L, 4)`` -> ``(N, steps, n_kernels)``."""
        h = self.pool(torch.relu(self.conv(x.transpose(1, 2))))
        return self.drop_pool(h.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.motifs(x))  # (N, steps, 2 * lstm_units)
        return self.head(self.drop_lstm(h).flatten(1))


@register(
    "danq_random_dropout",
    lr=1e-4,
    window_length=1000,
    n_outputs=919,
    methylation=False,
    paper="Li D, Huang X. An improved deep learning model for predicting DNA sequence function. Intelligent Information Management 12:36-42 (2020)",
)
class DanQRandomDropout(DanQ):
    """DanQ whose two dropout rates are random (Li & Huang 2020, Section 2 "random dropout").

    Same layers as :class:`DanQ` (see its table), except that the dropout rate after the
    max-pool is drawn uniformly from ``pool_range`` = [0.1, 0.3] and the rate after the LSTM
    from ``lstm_range`` = [0.4, 0.6], around DanQ's fixed 0.2 and 0.5.

    With ``redraw="step"`` (default) both rates are drawn anew at every forward pass in
    training mode, i.e. every optimisation step; with ``redraw="run"`` they are drawn once,
    at construction. In eval mode dropout is off, so the model is the deterministic DanQ.
    Rates come from torch's CPU generator, so ``torch.manual_seed`` makes them reproducible.

    Parameters
    ----------
    window_length, n_outputs, n_kernels, kernel_size, pool_size, lstm_units, n_hidden
        As for :class:`DanQ` (1000, 919, 320, 26, 13, 320, 925).
    pool_range
        Range of the post-pooling dropout rate, ``(0.1, 0.3)``.
    lstm_range
        Range of the post-LSTM dropout rate, ``(0.4, 0.6)``.
    redraw
        ``"step"`` (default) or ``"run"``.

    Attributes
    ----------
    p_pool, p_lstm : float
        The dropout rates in use now.

    Shapes
    ------
    ``forward``: ``(N, 1000, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 1000,
        n_outputs: int = 919,
        n_kernels: int = 320,
        kernel_size: int = 26,
        pool_size: int = 13,
        lstm_units: int = 320,
        n_hidden: int = 925,
        pool_range: tuple[float, float] = (0.1, 0.3),
        lstm_range: tuple[float, float] = (0.4, 0.6),
        redraw: str = "step",
    ):
        if redraw not in ("step", "run"):
            raise ValueError(f"danq_random_dropout: redraw must be 'step' or 'run', got {redraw!r}")
        for lo, hi in (pool_range, lstm_range):
            if not 0.0 <= lo <= hi < 1.0:
                raise ValueError(f"danq_random_dropout: bad dropout range ({lo}, {hi})")
        super().__init__(window_length, n_outputs, n_kernels, kernel_size, pool_size, lstm_units, n_hidden)
        self.pool_range = tuple(pool_range)
        self.lstm_range = tuple(lstm_range)
        self.redraw = redraw
        self.draw_rates()

    @property
    def p_pool(self) -> float:
        return self.drop_pool.p

    @property
    def p_lstm(self) -> float:
        return self.drop_lstm.p

    def draw_rates(self) -> None:
        """Draw both dropout rates uniformly from their ranges."""
        # Explicit CPU device: also works when the model is built under torch.device("meta").
        u = torch.rand(2, device="cpu", dtype=torch.float64).tolist()
        self.drop_pool.p = self.pool_range[0] + u[0] * (self.pool_range[1] - self.pool_range[0])
        self.drop_lstm.p = self.lstm_range[0] + u[1] * (self.lstm_range[1] - self.lstm_range[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.redraw == "step":
            self.draw_rates()
        return super().forward(x)
