"""Atomic directory replacement (``storage.staging_dir`` + ``storage.replace_dir``)."""

from __future__ import annotations

from pathlib import Path

from methray import storage


def test_replace_dir_swaps_a_finished_directory_in(tmp_path):
    final = tmp_path / "out" / "table"
    work = storage.staging_dir(final)
    (Path(work) / "a.parquet").write_text("new")
    storage.replace_dir(work, final)
    assert (final / "a.parquet").read_text() == "new"
    # again over an existing directory: the old content is gone, no temporary left beside it
    work = storage.staging_dir(final)
    (Path(work) / "b.parquet").write_text("newer")
    storage.replace_dir(work, final)
    assert sorted(p.name for p in final.iterdir()) == ["b.parquet"]
    assert [p.name for p in final.parent.iterdir()] == ["table"]
