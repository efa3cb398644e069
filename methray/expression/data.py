"""Inputs of the expression job: M-values, the genes and their CpGs, the cross-validation folds.

A gene's CpGs are the probes annotated to it (``probe_genes``: probe -> gene symbol); the
symbol is mapped to its Ensembl id through the gene table, and the Ensembl id to its row of
log2 expression. Probe coordinates are not part of the data, so a gene's CpGs keep the order of
the methylation matrix's rows (DeepMethyGene's convolutions run along that order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from .. import storage
from ..errors import MethrayError
from .config import ExpressionConfig

log = logging.getLogger(__name__)


def m_values(beta: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Beta values -> M-values, ``M = log2(beta / (1 - beta))`` (Du et al. 2010).

    Parameters
    ----------
    beta
        Beta values in [0, 1], any shape; NaN = not measured (kept as NaN).
    eps
        Beta is clipped to ``[eps, 1 - eps]`` first, so 0 and 1 map to finite M-values
        ``-/+ log2((1 - eps) / eps)`` (+-9.97 for the default 1e-3).

    Returns
    -------
    np.ndarray
        Same shape, float32.

    Raises
    ------
    ValueError
        If a (non-missing) beta value lies outside [0, 1].
    """
    b = np.asarray(beta, dtype=np.float64)
    finite = b[~np.isnan(b)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(f"beta values must lie in [0, 1]; found {finite.min():g} .. {finite.max():g}")
    b = np.clip(b, eps, 1 - eps)
    return np.log2(b / (1 - b)).astype(np.float32)


def read_matrix(path: str, what: str) -> pd.DataFrame:
    """A features x samples TSV (gzipped or not; first column the row id) as float64.

    Raises
    ------
    MethrayError
        Missing file, no sample columns, duplicated row ids or a value that is not a number.
    """
    if not storage.exists(path):
        raise MethrayError(f"{path}: {what} file not found")
    with storage.s3_errors(path):
        df = pd.read_csv(path, sep="\t", index_col=0)
    if df.shape[1] == 0:
        raise MethrayError(f"{path}: expected a tab-separated {what} matrix (row id, then one column per sample)")
    if df.index.duplicated().any():
        dup = df.index[df.index.duplicated()][0]
        raise MethrayError(f"{path}: row id {dup!r} appears twice")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        col = bad[0]
        values = pd.to_numeric(df[col], errors="coerce")
        row = int(np.flatnonzero(values.isna() & df[col].notna())[0])
        raise MethrayError(f"{path}:{row + 2}: column {col!r}: expected a number, got {df[col].iloc[row]!r}")
    df.index = df.index.astype(str)
    return df.astype(np.float64)


def _read_table(path: str, what: str, columns: list[str]) -> pd.DataFrame:
    if not storage.exists(path):
        raise MethrayError(f"{path}: {what} file not found")
    with storage.s3_errors(path):
        df = pd.read_csv(path, sep="\t", dtype=str)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MethrayError(f"{path}:1: expected columns {columns}, missing {missing}")
    return df


@dataclass
class Gene:
    """One gene and its CpGs (probe ids, in methylation-matrix row order)."""

    gene_id: str  # Ensembl id, the row of the expression matrix
    symbol: str
    probes: list[str]

    @property
    def n_cpgs(self) -> int:
        return len(self.probes)


@dataclass
class ExpressionData:
    """Everything the models need, aligned on the same samples.

    Attributes
    ----------
    samples
        Sample ids, the column order of ``mvalues`` and ``expression``.
    mvalues
        ``(n_probes, n_samples)`` float32 M-values of the probes used by any gene (NaN = missing).
    expression
        ``(n_genes, n_samples)`` float64 log2 expression of the kept genes.
    genes
        The kept genes (``min_cpgs`` and the other rules of :func:`select_genes`).
    sheet
        The sample sheet rows of ``samples`` (empty frame when none was given).
    report
        ``{reason: count}`` for probes and genes kept / dropped, in reading order.
    """

    samples: list[str]
    mvalues: pd.DataFrame
    expression: pd.DataFrame
    genes: list[Gene]
    sheet: pd.DataFrame
    report: dict[str, int] = field(default_factory=dict)

    def gene_matrix(self, gene: Gene) -> tuple[np.ndarray, np.ndarray]:
        """``X`` ``(n_samples, n_cpgs) float32`` M-values and ``y`` ``(n_samples,) float64``."""
        X = self.mvalues.loc[gene.probes].to_numpy(np.float32).T
        return np.ascontiguousarray(X), self.expression.loc[gene.gene_id].to_numpy(np.float64)


def select_genes(
    probe_genes: pd.DataFrame,
    gene_table: pd.DataFrame,
    expression: pd.DataFrame,
    probes: pd.Index,
    *,
    min_cpgs: int,
    include: list[str] | None = None,
    max_genes: int | None = None,
) -> tuple[list[Gene], dict[str, int]]:
    """The genes to model and why the others are not.

    Parameters
    ----------
    probe_genes
        Columns ``probe``, ``gene_symbol``: the annotation (a probe may appear for several genes).
    gene_table
        Columns ``ensembl_gene_id``, ``gene_symbol``.
    expression
        Log2 expression, Ensembl id x samples.
    probes
        Probe ids usable as features (in the methylation matrix, not dropped for missing values),
        in matrix row order: a gene's probes keep this order.
    min_cpgs
        Minimum number of probes of a gene.
    include, max_genes
        Optional restriction to named genes (symbol or Ensembl id) / to the first N eligible.

    Returns
    -------
    genes : list[Gene]
        Sorted by Ensembl id.
    report : dict[str, int]
        Counts of annotated symbols by outcome (``genes annotated``, ``dropped: ...``, ``genes kept``).
    """
    report: dict[str, int] = {}
    ann = probe_genes.dropna(subset=["probe", "gene_symbol"]).drop_duplicates(["probe", "gene_symbol"])
    report["genes annotated (symbols in probe_genes)"] = ann["gene_symbol"].nunique()
    order = {p: i for i, p in enumerate(probes)}  # row order of the methylation matrix
    ids_by_symbol = gene_table.dropna(subset=["gene_symbol"]).groupby("gene_symbol")["ensembl_gene_id"].unique()
    constant = set(expression.index[expression.std(axis=1, ddof=0) == 0])
    reasons = {
        "dropped: symbol not in the gene table": 0,
        "dropped: symbol has several Ensembl ids": 0,
        "dropped: no expression row": 0,
        "dropped: constant expression": 0,
        f"dropped: fewer than min_cpgs={min_cpgs} probes": 0,
    }
    genes: list[Gene] = []
    for symbol, rows in ann.groupby("gene_symbol", sort=True):
        ids = ids_by_symbol.get(symbol)
        if ids is None:
            reasons["dropped: symbol not in the gene table"] += 1
            continue
        if len(ids) > 1:
            reasons["dropped: symbol has several Ensembl ids"] += 1
            continue
        gid = str(ids[0])
        if gid not in expression.index:
            reasons["dropped: no expression row"] += 1
            continue
        if gid in constant:
            reasons["dropped: constant expression"] += 1
            continue
        usable = [p for p in rows["probe"] if p in order]
        if len(usable) < min_cpgs:
            reasons[f"dropped: fewer than min_cpgs={min_cpgs} probes"] += 1
            continue
        genes.append(Gene(gid, str(symbol), sorted(usable, key=order.__getitem__)))
    report.update(reasons)
    genes.sort(key=lambda g: g.gene_id)
    if include:
        wanted = set(include)
        unknown = wanted - {g.symbol for g in genes} - {g.gene_id for g in genes}
        if unknown:
            raise MethrayError(f"genes.include: not eligible genes: {sorted(unknown)}")
        n = len(genes)
        genes = [g for g in genes if g.symbol in wanted or g.gene_id in wanted]
        report["left out: not in genes.include"] = n - len(genes)
    if max_genes is not None and len(genes) > max_genes:
        report["left out: beyond genes.max_genes"] = len(genes) - max_genes
        genes = genes[:max_genes]
    report["genes kept"] = len(genes)
    return genes, report


def load_data(cfg: ExpressionConfig) -> ExpressionData:
    """Read the inputs, turn beta into M-values, apply the missing-value rule, select the genes.

    Raises
    ------
    MethrayError
        A missing or malformed input, beta values outside [0, 1], no sample shared by the
        methylation and expression matrices, samples absent from the sample sheet, or no gene
        left to model.
    """
    inp = cfg.inputs
    beta = read_matrix(inp.methylation, "methylation (beta)")
    expr = read_matrix(inp.expression, "expression (log2)")
    probe_genes = _read_table(inp.probe_genes, "probe -> gene", ["probe", "gene_symbol"])
    gene_table = _read_table(inp.genes, "gene table", ["ensembl_gene_id", "gene_symbol"])
    report: dict[str, int] = {}

    samples = [s for s in beta.columns if s in set(expr.columns)]
    report["samples (in both matrices)"] = len(samples)
    report["samples dropped: methylation only"] = beta.shape[1] - len(samples)
    report["samples dropped: expression only"] = expr.shape[1] - len(samples)
    if len(samples) < cfg.cv.n_folds:
        raise MethrayError(f"{inp.expression}: {len(samples)} samples shared with {inp.methylation}; need >= cv.n_folds={cfg.cv.n_folds}")
    sheet = pd.DataFrame()
    if inp.samples:
        need = ["sample"] + [c for c in (cfg.cv.group_by, cfg.cv.stratify_by) if c]
        sheet = _read_table(inp.samples, "sample sheet", need).drop_duplicates("sample").set_index("sample")
        absent = [s for s in samples if s not in sheet.index]
        if absent:
            raise MethrayError(f"{inp.samples}: {len(absent)} sample(s) not in the sheet, e.g. {absent[0]!r}")
        sheet = sheet.loc[samples]

    try:
        mv = pd.DataFrame(m_values(beta[samples].to_numpy(), cfg.features.eps), index=beta.index, columns=samples)
    except ValueError as exc:
        raise MethrayError(f"{inp.methylation}: {exc}") from None
    n_clipped = int(((beta[samples] < cfg.features.eps) | (beta[samples] > 1 - cfg.features.eps)).to_numpy().sum())
    report[f"beta values clipped to [{cfg.features.eps:g}, {1 - cfg.features.eps:g}]"] = n_clipped
    report["probes in the methylation matrix"] = len(mv)
    report["probe -> gene rows with a probe not in the matrix"] = int((~probe_genes["probe"].isin(mv.index)).sum())
    has_missing = mv.isna().any(axis=1)
    report["probes with missing values"] = int(has_missing.sum())
    if cfg.features.missing == "drop_probe":
        mv = mv[~has_missing]
        report["probes dropped: missing values (features.missing=drop_probe)"] = int(has_missing.sum())

    genes, gene_report = select_genes(
        probe_genes, gene_table, expr[samples], mv.index,
        min_cpgs=cfg.genes.min_cpgs, include=cfg.genes.include, max_genes=cfg.genes.max_genes,
    )
    report.update(gene_report)
    report["genes kept with clamped deepmethygene channels (n < 20)"] = sum(g.n_cpgs < 20 for g in genes)
    if not genes:
        raise MethrayError(f"{inp.probe_genes}: no gene has >= genes.min_cpgs={cfg.genes.min_cpgs} probes with expression")
    row = {p: i for i, p in enumerate(mv.index)}
    used = sorted({p for g in genes for p in g.probes}, key=row.__getitem__)
    return ExpressionData(
        samples=samples,
        mvalues=mv.loc[used].astype(np.float32),
        expression=expr.loc[[g.gene_id for g in genes], samples],
        genes=genes,
        sheet=sheet,
        report=report,
    )


def make_folds(
    n_samples: int,
    n_folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Assign every sample to one of ``n_folds`` held-out folds (the same for every gene and model).

    Parameters
    ----------
    n_samples
        Number of samples.
    n_folds
        k.
    seed
        Shuffling seed.
    groups
        ``(n_samples,)`` labels whose samples must share a fold (e.g. the patient, so that a
        tumour and its matched normal are never split between training and held-out).
    strata
        ``(n_samples,)`` labels balanced across folds (e.g. tumour / normal).

    Returns
    -------
    np.ndarray
        ``(n_samples,) int64`` fold index 0 .. k-1.

    Raises
    ------
    MethrayError
        Fewer groups (or samples) than folds.
    """
    X = np.zeros((n_samples, 1))
    n_units = len(np.unique(groups)) if groups is not None else n_samples
    if n_units < n_folds:
        raise MethrayError(f"cv.n_folds={n_folds}: only {n_units} {'groups' if groups is not None else 'samples'}")
    if groups is not None and strata is not None:
        splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(X, strata, groups)
    elif groups is not None:
        splitter = GroupKFold(n_folds, shuffle=True, random_state=seed).split(X, groups=groups)
    elif strata is not None:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, strata)
    else:
        splitter = KFold(n_folds, shuffle=True, random_state=seed).split(X)
    folds = np.full(n_samples, -1, dtype=np.int64)
    for k, (_, test) in enumerate(splitter):
        folds[test] = k
    return folds


def data_folds(cfg: ExpressionConfig, data: ExpressionData) -> tuple[np.ndarray, np.ndarray]:
    """The job's folds and groups: ``(folds, groups)``, each ``(n_samples,)``.

    ``groups`` are the ``cv.group_by`` labels as integer codes (every sample its own group when
    ``group_by`` is null); models use them for their inner splits.
    """
    n = len(data.samples)
    groups = pd.factorize(data.sheet[cfg.cv.group_by])[0] if cfg.cv.group_by else np.arange(n)
    strata = data.sheet[cfg.cv.stratify_by].to_numpy() if cfg.cv.stratify_by else None
    folds = make_folds(n, cfg.cv.n_folds, cfg.cv.seed, groups if cfg.cv.group_by else None, strata)
    return folds, np.asarray(groups, dtype=np.int64)
