"""Figures of the interpretation report: motif logos (logomaker), t-SNE (scikit-learn), attribution tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLORS = {"hypo": "#2166ac", "mid": "#999999", "hyper": "#b2182b"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def information_logo(ax, ppm: np.ndarray, title: str = "") -> None:
    """Draw a PPM ``(L, 4)`` as an information-content logo (bits) with logomaker."""
    import logomaker

    df = pd.DataFrame(np.asarray(ppm, float), columns=list("ACGT"))
    info = logomaker.transform_matrix(df, from_type="probability", to_type="information")
    logomaker.Logo(info, ax=ax, color_scheme="classic")
    ax.set_ylabel("bits")
    ax.set_ylim(0, 2)
    ax.set_title(title, fontsize=8)


def motif_logos(path: str, motifs: list[tuple[str, np.ndarray, np.ndarray | None, str]]) -> None:
    """One row per motif: its logo and, when matched, the best JASPAR match's logo.

    Parameters
    ----------
    motifs
        ``(title, ppm (L, 4), match ppm (M, 4) or None, match title)``.
    """
    plt = _plt()
    n = max(1, len(motifs))
    fig, axes = plt.subplots(n, 2, figsize=(10, 1.8 * n), squeeze=False)
    for row, (title, ppm, match, mtitle) in zip(axes, motifs):
        information_logo(row[0], ppm, title)
        if match is not None:
            information_logo(row[1], match, mtitle)
        else:
            row[1].axis("off")
            row[1].text(0.5, 0.5, mtitle, ha="center", va="center", fontsize=8)
    if not motifs:
        axes[0, 0].text(0.5, 0.5, "no motifs", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tsne_panels(path: str, x: np.ndarray, rep: np.ndarray, groups: np.ndarray, seed: int = 0) -> None:
    """t-SNE of raw one-hot inputs vs the learned representation, coloured by group (MRCNN Fig. 5).

    Parameters
    ----------
    x
        One-hot windows ``(N, L, 4)``.
    rep
        Learned representation ``(N, D)``.
    groups
        Group per window, ``(N,)``.
    """
    from sklearn.manifold import TSNE

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    for ax, data, title in ((axes[0], x.reshape(len(x), -1).astype(np.float32), "one-hot input"), (axes[1], rep, "learned representation")):
        emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(data)
        for g, col in COLORS.items():
            sel = groups == g
            ax.scatter(emb[sel, 0], emb[sel, 1], s=8, c=col, label=f"{g} ({sel.sum()})")
        ax.set_title(f"t-SNE of the {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def attribution_tracks(path: str, tracks: list[tuple[str, np.ndarray, np.ndarray]], offsets: np.ndarray) -> None:
    """Attribution tracks: the window's bases drawn with height = contribution (logomaker).

    Parameters
    ----------
    tracks
        ``(title, one-hot (L, 4), contributions (L, 4))`` per CpG.
    offsets
        Offset of each window position from the C, ``(L,)`` (x axis).
    """
    import logomaker

    plt = _plt()
    n = max(1, len(tracks))
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.6 * n), squeeze=False)
    for ax, (title, x, attr) in zip(axes[:, 0], tracks):
        df = pd.DataFrame(np.asarray(x, float) * np.asarray(attr, float), columns=list("ACGT"), index=offsets)
        logomaker.Logo(df, ax=ax, color_scheme="classic")
        ax.axvline(0.5, color="k", lw=0.5, ls=":")
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("DeepLIFT")
    axes[-1, 0].set_xlabel("position relative to the CpG's C (bp)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
