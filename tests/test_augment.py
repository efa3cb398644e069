"""Reverse complement of one-hot windows (A, C, G, T columns)."""

from __future__ import annotations

import numpy as np
import torch

from methray.augment import random_reverse_complement, reverse_complement
from methray.encoding import one_hot, reverse_complement_codes, sequence_to_codes


def test_matches_the_reverse_complement_of_the_sequence():
    codes = sequence_to_codes("ACGTTNCA")
    x = torch.from_numpy(one_hot(codes[None, :]))
    expected = one_hot(reverse_complement_codes(codes)[None, :])
    np.testing.assert_array_equal(reverse_complement(x).numpy(), expected)
    assert torch.equal(reverse_complement(reverse_complement(x)), x)


def test_random_half_is_reverse_complemented_per_window():
    torch.manual_seed(0)
    x = torch.from_numpy(one_hot(np.stack([sequence_to_codes("AACCGT")] * 64)))
    out = random_reverse_complement(x)
    flipped = np.array([torch.equal(o, reverse_complement(w[None])[0]) for o, w in zip(out, x)])
    kept = np.array([torch.equal(o, w) for o, w in zip(out, x)])
    assert (flipped ^ kept).all() and 16 < flipped.sum() < 48
