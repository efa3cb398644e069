"""DeepGMAP conv4-FRSS (Onimaru, Nishimura & Kuraku 2020, PLoS Computational Biology 16:e1007616)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register


class FRSSBlock(nn.Module):
    """The two forward- and reverse-sequence scan (FRSS) layers of DeepGMAP.

    Every first-layer kernel ``W0`` also scans the input rotated by 180 degrees:
    ``W0rc = flip(W0)`` along length *and* along the A, C, G, T axis (reversing A,C,G,T gives
    T,G,C,A, the complement), so ``W0rc`` reads the reverse-complement strand. Both layers
    keep a single :class:`~torch.nn.Parameter` per kernel bank; the rotated kernels are
    derived with :func:`torch.flip` in ``forward``, so gradients from both strands update the
    same weights::

        X1   = pool(relu(conv(X0, W0)   + b0))
        X1rc = pool(relu(conv(X0, W0rc) + b0))
        X2   = pool(relu(conv(X1, W1) + b1) + relu(conv(X1rc, W1rc) + b1))

    Why ``W1rc`` flips the length only. Write R for reverse complement and ``rev`` for
    reversing positions. For a valid cross-correlation, ``conv(R x, W) = rev(conv(x, Wrot))``
    with ``Wrot`` = W flipped along length and input channels; so the first layer swaps its
    branches under R: ``X1(R x) = rev(X1rc(x))`` and ``X1rc(R x) = rev(X1(x))``. Channel ``c``
    of the rc branch *is* forward channel ``c`` (same kernel, rotated), so no channel
    permutation happens at the second layer, and ``conv(rev z, W) = rev(conv(z, flipL(W)))``.
    Hence with ``W1rc = flipL(W1)``::

        conv(X1(Rx), W1)     = rev(conv(X1rc(x), W1rc))
        conv(X1rc(Rx), W1rc) = rev(conv(X1(x), W1))

    and ``X2(R x) = rev(X2(x))``: the block is reverse-complement equivariant (exactly, when
    the pooling windows tile the conv outputs, e.g. 1000 bp: 992 / 2 and 488 / 2). Flipping
    W1's input channels too would map rc channel c onto forward channel ``k1 - 1 - c``,
    an unrelated kernel, and break the symmetry. DeepGMAP's own code does the same:
    ``tf.reverse(W_conv2, [0, 1])`` reverses length and a width-1 axis.

    Parameters
    ----------
    n_kernels
        Kernels of the two FRSS layers, ``(320, 480)``.
    kernel_size
        Width of both (9).
    pool_size
        Max-pool width and stride after each (2); windows that run past the end are kept
        (``ceil_mode``, as TensorFlow's ``SAME`` pooling in DeepGMAP).
    dropout
        Dropout after each layer's ReLU, ``(0.0, 0.2)`` (DeepGMAP keep_prob 1.0 and 0.8).

    Shapes
    ------
    ``forward``: ``(N, 4, L) float32`` -> ``(N, 480, L2) float32``, L2 = ``ceil((ceil((L - 8) / 2) - 8) / 2)``.
    """

    def __init__(
        self,
        n_kernels: tuple[int, int] = (320, 480),
        kernel_size: int = 9,
        pool_size: int = 2,
        dropout: tuple[float, float] = (0.0, 0.2),
    ):
        super().__init__()
        k1, k2 = n_kernels
        self.weight0 = nn.Parameter(torch.empty(k1, 4, kernel_size))
        self.bias0 = nn.Parameter(torch.empty(k1))
        self.weight1 = nn.Parameter(torch.empty(k2, k1, kernel_size))
        self.bias1 = nn.Parameter(torch.empty(k2))
        self.pool = nn.MaxPool1d(pool_size, ceil_mode=True)
        self.drop0 = nn.Dropout(dropout[0])
        self.drop1 = nn.Dropout(dropout[1])
        for w, b in ((self.weight0, self.bias0), (self.weight1, self.bias1)):
            # the default initialisation of nn.Conv1d
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(w.shape[1] * w.shape[2])
            nn.init.uniform_(b, -bound, bound)

    def rotated_kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W0rc, W1rc)``: W0 flipped along length and bases, W1 along length only."""
        return torch.flip(self.weight0, dims=(1, 2)), torch.flip(self.weight1, dims=(2,))

    def layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X1, X1rc, X2)`` for channels-first input ``(N, 4, L)``."""
        w0rc, w1rc = self.rotated_kernels()
        x1 = self.pool(self.drop0(F.relu(F.conv1d(x, self.weight0, self.bias0))))
        x1rc = self.pool(self.drop0(F.relu(F.conv1d(x, w0rc, self.bias0))))
        h = F.relu(F.conv1d(x1, self.weight1, self.bias1)) + F.relu(F.conv1d(x1rc, w1rc, self.bias1))
        return x1, x1rc, self.pool(self.drop1(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)[2]


@register(
    "conv4_frss",
    lr=1e-4,
    window_length=1000,
    n_outputs=1,
    methylation=False,
    paper="Onimaru K, Nishimura O, Kuraku S. Predicting gene regulatory regions with a convolutional neural network for processing double-strand genome sequence information. PLoS Computational Biology 16:e1007616 (2020), conv4-FRSS",
)
class Conv4FRSS(nn.Module):
    """DeepGMAP's conv4-FRSS (Onimaru et al. 2020, Fig. 1 and Methods "Network
    architectures"; layer sizes from the released ``conv4frss`` network constructor).

    Input is 1000 bp (``WindowSpec(1000)``); outputs are logits of binary labels (peaks of
    chromatin marks / TF binding; the ``multilabel`` task head applies the sigmoid). The
    first two convolutions are the :class:`FRSSBlock`, which scans both strands with shared
    weights.

    Layers (defaults, shapes for one window, "valid" convolutions, pooling keeps a partial
    last window):

    ==========================  ===============================  ==========
    layer                       parameters                       output
    ==========================  ===============================  ==========
    input                                                        1000 x 4
    FRSS conv1, ReLU (x2)       320 kernels x 9, shared          2 x 992 x 320
    max-pool                    2, stride 2                      2 x 496 x 320
    FRSS conv2, ReLU, sum       480 kernels x 9, shared          488 x 480
    dropout, max-pool           p = 0.2; 2, stride 2             244 x 480
    conv3, ReLU                 480 kernels x 7                  238 x 480
    dropout, max-pool           p = 0.2; 2, stride 2             119 x 480
    conv4, ReLU                 480 kernels x 8                  112 x 480
    dropout, max-pool           p = 0.2; 4, stride 4             28 x 480
    flatten                                                      13440
    fully connected, ReLU       925                              925
    dropout                     p = 0.5                          925
    fully connected             n_outputs (1)                    1
    ==========================  ===============================  ==========

    The number of outputs is set by the label set in DeepGMAP (one per ChIP-seq/DNase-seq
    data set); our default is 1.

    Parameters
    ----------
    window_length
        Input length L (1000).
    n_outputs
        Number of outputs (1).
    n_kernels
        Kernels of the FRSS layers and conv3, conv4, ``(320, 480, 480, 480)``.
    kernel_sizes
        Their widths, ``(9, 9, 7, 8)``.
    n_hidden
        Units of the fully connected layer (925).
    dropout
        Dropout after FRSS conv1, after FRSS conv2 / conv3 / conv4, and after the fully
        connected layer, ``(0.0, 0.2, 0.5)`` (DeepGMAP keep probabilities 1.0, 0.8, 0.5).

    Shapes
    ------
    ``forward``: ``(N, 1000, 4) float32`` -> ``(N, n_outputs) float32``.
    """

    def __init__(
        self,
        window_length: int = 1000,
        n_outputs: int = 1,
        n_kernels: tuple[int, int, int, int] = (320, 480, 480, 480),
        kernel_sizes: tuple[int, int, int, int] = (9, 9, 7, 8),
        n_hidden: int = 925,
        dropout: tuple[float, float, float] = (0.0, 0.2, 0.5),
    ):
        super().__init__()
        k1, k2, k3, k4 = n_kernels
        w1, w2, w3, w4 = kernel_sizes
        if w1 != w2:
            raise ValueError("conv4_frss: both FRSS layers need the same kernel width")
        d1, d2, d3 = dropout
        length = window_length
        for w, p in ((w1, 2), (w2, 2), (w3, 2), (w4, 4)):
            length = math.ceil((length - w + 1) / p)
        if length < 1:
            raise ValueError(f"conv4_frss: window of {window_length} bp is too short for its layers")
        self.frss = FRSSBlock((k1, k2), w1, 2, (d1, d2))
        self.conv3 = nn.Conv1d(k2, k3, w3)
        self.conv4 = nn.Conv1d(k3, k4, w4)
        self.features = nn.Sequential(
            self.conv3,
            nn.ReLU(),
            nn.Dropout(d2),
            nn.MaxPool1d(2, ceil_mode=True),
            self.conv4,
            nn.ReLU(),
            nn.Dropout(d2),
            nn.MaxPool1d(4, ceil_mode=True),
            nn.Flatten(),
        )
        self.n_flat = k4 * length
        self.head = nn.Sequential(
            nn.Linear(self.n_flat, n_hidden), nn.ReLU(), nn.Dropout(d3), nn.Linear(n_hidden, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.frss(x.transpose(1, 2))))
