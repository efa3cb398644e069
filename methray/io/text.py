"""Reading delimited text tables (local or ``s3://``, optionally gzipped) with line-precise errors."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from .. import storage
from ..errors import MethrayError

HEADER_PREFIXES = ("track", "browser", "#")


def read_table(
    path: str,
    names: list[str],
    *,
    min_columns: int | None = None,
    int_columns: tuple | list = (),
    float_columns: tuple | list = (),
    sep: str = "\t",
) -> pd.DataFrame:
    """Read a headerless delimited file into named columns, validating types.

    Leading ``track`` / ``browser`` / ``#`` lines are skipped. Extra columns beyond ``names``
    are ignored.

    Returns
    -------
    pd.DataFrame
        The named columns (``chrom`` as str, ``int_columns`` as int64, ``float_columns`` as
        float64, others as str) plus ``line``: the 1-based line number in the file.

    Raises
    ------
    MethrayError
        The file is missing, or a line has too few fields or a non-numeric value where a
        number is expected; the message names the file and line.
    """
    if not storage.exists(path):
        raise MethrayError(f"{path}: file not found")
    fs, p = storage.filesystem(path)
    compression = "gzip" if str(path).endswith(".gz") else None
    with fs.open(p, "rb", compression=compression) as fh:
        data = fh.read()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MethrayError(f"{path}:{line}: not a text table (binary or non-ASCII data)") from exc
    skip = 0
    for raw in io.StringIO(text):
        if raw.startswith(HEADER_PREFIXES) or not raw.strip():
            skip += 1
        else:
            break
    need = min_columns or len(names)
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, skiprows=skip, dtype=str, comment=None,
            keep_default_na=False, engine="c",
        )
    except pd.errors.EmptyDataError:
        df = pd.DataFrame(columns=range(len(names)))
    except pd.errors.ParserError as exc:
        raise MethrayError(f"{path}: malformed table ({exc})") from exc
    if df.shape[1] < need:
        raise MethrayError(f"{path}:{skip + 1}: expected at least {need} tab-separated columns ({', '.join(names[:need])}), found {df.shape[1]}")
    df = df.iloc[:, : len(names)]
    df.columns = names[: df.shape[1]]
    df["line"] = np.arange(skip + 1, skip + 1 + len(df), dtype=np.int64)
    blank = df[names[:need]].eq("").any(axis=1).to_numpy()
    if blank.any():
        raise MethrayError(f"{path}:{df['line'].iloc[np.argmax(blank)]}: expected {need} tab-separated columns ({', '.join(names[:need])})")
    for col in (*int_columns, *float_columns):
        if col not in df:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna().to_numpy() & (df[col] != "").to_numpy()
        if col in int_columns:
            bad |= values.notna().to_numpy() & (values % 1 != 0).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            kind = "an integer" if col in int_columns else "a number"
            raise MethrayError(f"{path}:{df['line'].iloc[i]}: expected {kind} in column '{col}', got {df[col].iloc[i]!r}")
        df[col] = values.astype(np.int64) if col in int_columns else values.astype(np.float64)
    return df
