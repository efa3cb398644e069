"""context_cnn: a local window encoder fused with multi-scale regional composition (methray's own)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..context import N_FEATURES
from .registry import register


def kmer_spectrum(x: torch.Tensor, max_k: int = 4) -> torch.Tensor:
    """Counts of every k-mer, k = 1..``max_k``, in each one-hot window (a fixed, parameter-free layer).

    The same counts as :func:`methray.composition.kmer_counts` (the ``composition_gbm`` baseline's
    k-mer features): k-mers holding an N are not counted; columns ``A, C, G, T, AA, AC, ...,
    TTTT`` (:func:`methray.composition.kmer_names`).

    Parameters
    ----------
    x
        ``(N, L, 4) float32`` one-hot (A, C, G, T; N = zeros).
    max_k
        Longest k-mer.

    Returns
    -------
    torch.Tensor
        ``(N, 4 + 16 + ... + 4**max_k) float32`` counts (340 columns for ``max_k = 4``).
    """
    n, length, _ = x.shape
    called = x.sum(dim=2) > 0
    code = x.argmax(dim=2)
    blocks = []
    for k in range(1, max_k + 1):
        span = length - k + 1
        index = torch.zeros(n, span, dtype=torch.long, device=x.device)
        ok = torch.ones(n, span, dtype=torch.bool, device=x.device)
        for t in range(k):
            index = index * 4 + code[:, t : t + span]
            ok &= called[:, t : t + span]
        flat = (index + torch.arange(n, device=x.device)[:, None] * 4**k)[ok]
        counts = torch.zeros(n * 4**k, dtype=x.dtype, device=x.device)
        blocks.append(counts.index_add_(0, flat, torch.ones_like(flat, dtype=x.dtype)).view(n, 4**k))
    return torch.cat(blocks, dim=1)


@register(
    "context_cnn",
    window_length=400,
    exclude_cpg=True,
    n_outputs=1,
    lr=3e-4,
    context_features=N_FEATURES,
    paper=(
        "methray; local encoder after Tian Q, et al. MRCNN, BMC Genomics 20:192 (2019) (400 bp window) and "
        "Angermueller C, et al. DeepCpG DNA module, Genome Biology 18:67 (2017) (conv-pool stack); regional "
        "context: Lister R, et al. Nature 462:315 (2009) (IMR90 partially methylated domains), Zhou W, et al. "
        "Nature Genetics 50:591 (2018) (WCGW CpGs in PMDs)"
    ),
)
class ContextCNN(nn.Module):
    """A CpG's 400 bp window and its regional composition, one methylation output.

    Two inputs, because methylation depends on both: the bases around the CpG (motifs,
    local CpG density, the flanking bases: WCGW vs SCGS) and the region it sits in (partially
    methylated domains span hundreds of kb in IMR90, Lister et al. 2009; they are GC- and
    CpG-poor, and their WCGW CpGs lose methylation first, Zhou et al. 2018), which no 400 bp
    window can see. A gradient-boosted tree model on such composition features alone
    (``composition_gbm``) beats the window-only deep models on IMR90, and its predictions
    are weakly correlated with theirs: the two views are complementary.

    - **local encoder** (MRCNN's window: 200 bp either side of the CpG, its own two bases
      left out, so that the window of the other strand is exactly the reverse complement;
      a conv-pool stack as DeepCpG's DNA module): conv 11 -> ReLU -> max-pool 4 -> conv 7
      -> ReLU -> max-pool 4 -> conv 5 -> ReLU, then global max and mean pooling; plus the
      window's own summary computed from the one-hot input (GC fraction and CpG count of
      the central 100 bp and of the whole window, and the bases at -1 and +2 of the C: the
      WCGW / SCGS flank);
    - **k-mer spectrum** of the window (:func:`kmer_spectrum`: every 1- to 4-mer counted,
      340 counts, ``log1p``) -> fully connected ReLU. The counts are what the baseline's trees
      gain most from on IMR90: without them ``composition_gbm`` fell from AUROC 0.704 to 0.653
      on the validation sites, and the convolutions, trained on 30k sites, did not learn them
      (context_cnn without this path: 0.661 after 7 epochs; with it: see README);
    - **context MLP** over the ``F`` features of :mod:`methray.context` (GC, CpG o/e, CpG
      density and N fraction at 1 kb to 1 Mb);
    - **fusion**: concatenation -> fully connected ReLU -> dropout -> ``n_outputs``.

    Trained like every methylation model (MSE on the raw output, clipped to [0, 1] at
    inference; :mod:`methray.tasks`).

    Parameters
    ----------
    window_length
        Window length L (400); at least 100.
    n_outputs
        Number of outputs (1 = beta value).
    context_features
        ``F``, the number of context features (:data:`methray.context.N_FEATURES`).
    channels
        Filters of each convolution (64).
    hidden
        Units of the context MLP and of the fused layer (64).
    dropout
        Dropout before the output layer (0.5).

    Defaults (Adam lr 3e-4, dropout 0.5) chosen on the saliva validation split (1,000 sites;
    validation MSE after 4 epochs 0.061 vs 0.068 at lr 1e-3, dropout 0.2).

    Shapes
    ------
    ``forward(x, context)``: ``x`` ``(N, L, 4) float32`` one-hot (A, C, G, T; N = zeros),
    ``context`` ``(N, F) float32`` -> ``(N, n_outputs) float32``.
    """

    N_SUMMARY = 12
    MAX_K = 4

    def __init__(self, window_length: int = 400, n_outputs: int = 1, context_features: int = N_FEATURES, channels: int = 64, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        if window_length < 100:
            raise ValueError(f"context_cnn needs a window of at least 100 bp, got {window_length}")
        self.window_length, self.context_features = window_length, context_features
        self.conv = nn.Sequential(
            nn.Conv1d(4, channels, 11, padding=5),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(channels, channels, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(channels, channels, 5, padding=2),
            nn.ReLU(),
        )
        n_kmers = sum(4**k for k in range(1, self.MAX_K + 1))
        self.kmers = nn.Sequential(nn.Linear(n_kmers, hidden), nn.ReLU())
        self.context = nn.Sequential(nn.Linear(context_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(2 * channels + self.N_SUMMARY + 2 * hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """The window's own composition, ``(N, L, 4)`` -> ``(N, 12)``: GC fraction and CpGs per
        10 bp of the central 100 bp and of the window, one-hot bases at -1 and +2 of the C
        (indices ``L // 2 - 1`` and ``L // 2`` of a window without the CpG)."""
        c = x.shape[1] // 2
        out = []
        for lo, hi in ((c - 50, c + 50), (0, x.shape[1])):
            w = x[:, lo:hi]
            called = w.sum(dim=(1, 2)).clamp(min=1)
            gc = (w[:, :, 1] + w[:, :, 2]).sum(1) / called
            cpg = (w[:, :-1, 1] * w[:, 1:, 2]).sum(1) * 10 / called
            out += [gc, cpg]
        return torch.cat([torch.stack(out, 1), x[:, c - 1], x[:, c]], dim=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2))
        kmers = self.kmers(torch.log1p(kmer_spectrum(x, self.MAX_K)))
        local = torch.cat([h.amax(dim=2), h.mean(dim=2), self.summary(x), kmers], dim=1)
        return self.head(torch.cat([local, self.context(context)], dim=1))
