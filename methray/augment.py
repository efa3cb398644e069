"""Sequence augmentation on one-hot windows (beside :mod:`methray.encoding`).

One-hot windows are ``(N, L, 4)`` with the columns in A, C, G, T order, so the complement of a
base is the column read backwards: reversing the length axis and the base axis together gives
the reverse complement (A<->T, C<->G, read 3'->5'). An all-zero row (N) stays all zeros.
"""

from __future__ import annotations

import torch


def reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of one-hot windows.

    Parameters
    ----------
    x
        ``(N, L, 4)`` one-hot windows (A, C, G, T), any dtype.

    Returns
    -------
    torch.Tensor
        ``(N, L, 4)``, same dtype: ``x`` flipped along L and along the bases.
    """
    return x.flip(dims=(1, 2))


def random_reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """Replace a random half of the windows by their reverse complement (training augmentation).

    Parameters
    ----------
    x
        ``(N, L, 4)`` one-hot windows (A, C, G, T).

    Returns
    -------
    torch.Tensor
        ``(N, L, 4)``: each window independently reverse-complemented with probability 0.5
        (``torch.rand`` on ``x``'s device; seed with ``torch.manual_seed``).
    """
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None], reverse_complement(x), x)
