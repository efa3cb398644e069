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


# --- Streaming: large call files are read in chunks of rows, never whole -------------------

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_ROWS = 1_000_000  # rows per chunk: bounded memory for files of any length
INT64_MAX = np.iinfo(np.int64).max


def open_binary(path: str):
    """Open a local or ``s3://`` file for reading bytes, decompressing gzip / bgzip by content.

    Compression is recognised from the first two bytes (the gzip magic ``1f 8b``), not the
    name; a name ending in ``.gz`` whose content is not gzip is refused.

    Raises
    ------
    MethrayError
        Missing file, or a ``.gz`` name on a file that is not gzip.
    """
    import gzip

    if not storage.exists(path):
        raise MethrayError(f"{path}: file not found")
    fs, p = storage.filesystem(path)
    raw = fs.open(p, "rb")
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if str(path).endswith(".gz") and head:
        raw.close()
        raise MethrayError(f"{path}: expected gzip data (the name ends in .gz), found bytes {head!r}; decompress or rename it")
    return raw


def read_errors(path: str, exc: BaseException, after_line: int) -> MethrayError:
    """The one-line error for a stream that fails while being read (truncated gzip, binary)."""
    import gzip
    import zlib

    where = f" (after line {after_line:,})" if after_line > 0 else ""
    if isinstance(exc, EOFError):
        return MethrayError(f"{path}: truncated gzip stream{where}: the file is incomplete; copy or download it again")
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return MethrayError(f"{path}: corrupt gzip data{where} ({exc})")
    if isinstance(exc, UnicodeDecodeError):
        return MethrayError(f"{path}: expected a text table, found binary or non-ASCII data{where}")
    return MethrayError(f"{path}: cannot read{where} ({type(exc).__name__}: {exc})")


def head_lines(path: str, n: int = 50, max_bytes: int = 1 << 16) -> list[str]:
    """The first ``n`` lines (at most ``max_bytes``) of a file, decompressed, as text.

    Raises
    ------
    MethrayError
        Missing file, not gzip despite the name, a broken gzip stream, or binary data.
    """
    with open_binary(path) as fh:
        try:
            data = fh.read(max_bytes)
        except Exception as exc:  # noqa: BLE001 - gzip / zlib / EOF errors have no common base
            raise read_errors(path, exc, 0) from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise MethrayError(f"{path}:{line}: expected a text table, found binary data")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MethrayError(f"{path}:{line}: expected a text table, found binary or non-ASCII data") from None
    lines = text.splitlines()
    if len(data) == max_bytes and lines:
        lines = lines[:-1]  # the last line may be cut
    return lines[:n]


def iter_chunks(path: str, *, skip: int, sep: str = "\t", chunk_rows: int | None = None):
    """Yield a delimited file's rows after ``skip`` leading lines, ``chunk_rows`` at a time.

    pandas' C reader with every column as ``str`` (typed afterwards, column by column, so that
    a bad value is reported with its line); blank lines are skipped but counted, so line
    numbers stay those of the file. Bytes are decoded as latin-1 so that binary data past the
    first lines (which :func:`head_lines` checks) fails as a bad value on its own line.

    Yields
    ------
    pd.DataFrame
        Columns ``0..k-1`` (str; a missing trailing field is ``""``) and ``line`` (int64,
        1-based line number in the file).

    Raises
    ------
    MethrayError
        Broken gzip stream, binary data, or a line with more fields than the first data line.
    """
    import csv
    import re

    first = skip + 1
    fh = open_binary(path)
    try:
        reader = pd.read_csv(
            fh, sep=sep, header=None, skiprows=skip, dtype=str, keep_default_na=False, na_values=[],
            skip_blank_lines=False, quoting=csv.QUOTE_NONE, encoding="latin-1", engine="c",
            chunksize=chunk_rows or CHUNK_ROWS,
        )
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            chunk["line"] = np.arange(first, first + len(chunk), dtype=np.int64)
            first += len(chunk)
            blank = (chunk.iloc[:, :-1] == "").all(axis=1).to_numpy()
            yield chunk[~blank] if blank.any() else chunk
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            line = int(m.group(2)) + (skip if int(m.group(2)) <= skip + 1 else 0)
            raise MethrayError(f"{path}:{line}: expected {m.group(1)} columns like the first data line, found {m.group(3)}") from None
        raise MethrayError(f"{path}: malformed table ({exc})") from None
    except (MethrayError, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001 - gzip / zlib / EOF errors have no common base
        raise read_errors(path, exc, first - 1) from None
    finally:
        try:
            fh.close()
        except Exception:  # noqa: BLE001 - closing a truncated gzip stream may fail again
            pass


def _looks_like_header(chunk: pd.DataFrame, i: int) -> bool:
    """Whether row ``i`` holds no number at all (a column-name line amid data)."""
    values = chunk.iloc[i, :-1]
    return not pd.to_numeric(values, errors="coerce").notna().any()


def _fail(path: str, chunk: pd.DataFrame, bad: np.ndarray, col, name: str, expected: str) -> None:
    i = int(np.argmax(bad))
    line = int(chunk["line"].iloc[i])
    if not all(v.isascii() and v.isprintable() for v in chunk.iloc[i, :-1].astype(str)):
        raise MethrayError(f"{path}:{line}: expected a text table, found binary or non-ASCII data")
    if _looks_like_header(chunk, i):
        shown = "\t".join(chunk.iloc[i, :-1].astype(str))[:60]
        raise MethrayError(f"{path}:{line}: expected a data row, found a header line ({shown!r})")
    raise MethrayError(f"{path}:{line}: expected {expected} in column '{name}', got {chunk[col].iloc[i]!r}")


def parse_int(path: str, chunk: pd.DataFrame, col, name: str, *, minimum: int | None = 0) -> np.ndarray:
    """Column ``col`` of a chunk as ``int64``, with a line-precise error for any bad value.

    Raises
    ------
    MethrayError
        Not an integer (``nan``, ``inf``, words, fractions), too large for int64, or below
        ``minimum``.
    """
    s = chunk[col]
    v = pd.to_numeric(s, errors="coerce")
    if v.dtype.kind == "i":
        out = v.to_numpy(np.int64)
    elif v.dtype.kind == "u":
        big = (v > INT64_MAX).to_numpy()
        if big.any():
            _fail(path, chunk, big, col, name, "a count that fits in int64 (at most 9,223,372,036,854,775,807)")
        out = v.to_numpy().astype(np.int64)
    else:
        f = v.to_numpy(np.float64)
        big = np.isfinite(f) & (np.abs(f) >= 2.0**63)
        if big.any():
            _fail(path, chunk, big, col, name, "a count that fits in int64 (at most 9,223,372,036,854,775,807)")
        bad = ~np.isfinite(f) | (np.mod(f, 1) != 0)
        if bad.any():
            _fail(path, chunk, bad, col, name, "an integer")
        out = f.astype(np.int64)
    if minimum is not None:
        low = out < minimum
        if low.any():
            _fail(path, chunk, low, col, name, f"an integer >= {minimum}")
    return out


def parse_float(path: str, chunk: pd.DataFrame, col, name: str) -> np.ndarray:
    """Column ``col`` of a chunk as finite ``float64`` (``nan`` / ``inf`` are errors)."""
    f = pd.to_numeric(chunk[col], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(f)
    if bad.any():
        _fail(path, chunk, bad, col, name, "a finite number")
    return f


def check_rows(path: str, chunk: pd.DataFrame, bad: np.ndarray, expected: str) -> None:
    """Raise ``<path>:<line>: expected <expected>`` for the first row where ``bad`` holds."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        raise MethrayError(f"{path}:{chunk['line'].iloc[i]}: expected {expected}")
