"""The one table writer: TSV (4 decimals, optional ``#`` header) and Parquet, read back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from methray.tables import read_result, write_table


def test_tsv_and_parquet_carry_the_same_table_and_header(tmp_path):
    df = pd.DataFrame({"model": ["mrcnn", "cpg_density"], "n": [24786, 24786], "auroc": [0.64312345, np.nan]})
    stem = str(tmp_path / "metrics")
    write_table(df, stem, ["budget: cpu; epochs <= 1"])
    text = (tmp_path / "metrics.tsv").read_text()
    assert text.splitlines()[:3] == ["# budget: cpu; epochs <= 1", "model\tn\tauroc", "mrcnn\t24786\t0.6431"]
    header, tsv = read_result(stem + ".tsv")
    assert header == ["budget: cpu; epochs <= 1"] and tsv["auroc"].iloc[0] == 0.6431 and np.isnan(tsv["auroc"].iloc[1])
    header, parquet = read_result(stem + ".parquet")
    assert header == ["budget: cpu; epochs <= 1"]
    pd.testing.assert_frame_equal(parquet, df)  # full precision
    assert not list(tmp_path.glob("*.tmp-*"))


def test_without_header_the_tsv_starts_with_the_columns(tmp_path):
    write_table(pd.DataFrame({"a": [1.0]}), str(tmp_path / "t"))
    assert (tmp_path / "t.tsv").read_text() == "a\n1.0000\n"
    assert b"methray.header" not in (pq.read_schema(tmp_path / "t.parquet").metadata or {})
    assert read_result(str(tmp_path / "t.tsv"))[0] == []


def test_a_column_of_numbers_and_text_is_text_in_parquet(tmp_path):
    df = pd.DataFrame({"model": ["mrcnn", "cpg_density"], "epochs": [3, "-"]})
    write_table(df, str(tmp_path / "comparison"))
    assert (tmp_path / "comparison.tsv").read_text().splitlines()[1:] == ["mrcnn\t3", "cpg_density\t-"]
    assert read_result(str(tmp_path / "comparison.parquet"))[1]["epochs"].tolist() == ["3", "-"]
