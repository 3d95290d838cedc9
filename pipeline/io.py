"""Artifact IO: Parquet (zstd) through polars, every write atomic, every read schema-checked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ArtifactError

if TYPE_CHECKING:  # imported where read: pipeline.models imports this module, and scoring needs no polars
    import polars as pl


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or exception inside the block leaves no file at ``path`` (and removes the temporary),
    so a reader never sees half an artifact. The rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp creates 0600; artifacts are ordinary readable files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` (and whatever was there) only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    """Write ``frame`` to ``path`` as zstd Parquet, atomically."""
    with atomic_write(path) as tmp:
        # statistics off and one row group: identical input gives byte-identical files
        frame.write_parquet(tmp, compression="zstd", statistics=False, row_group_size=max(len(frame), 1))


def write_json(record: dict, path: str | Path) -> None:
    """Write ``record`` to ``path`` as indented JSON with a final newline, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def read_parquet(path: str | Path, *, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read a Parquet artifact and check that it has (at least) the expected columns and dtypes.

    Args:
        path: the file.
        schema: column name -> polars dtype that must be present; other columns are kept.

    Raises:
        ArtifactError: the file is missing, not Parquet, or lacks a column / has a wrong dtype.
    """
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found (run the stage that produces it)")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for corrupt files
        raise ArtifactError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    for column, dtype in schema.items():
        if column not in frame.columns:
            raise ArtifactError(f"{path}: missing column {column!r} (has {frame.columns})")
        if frame.schema[column] != dtype:
            raise ArtifactError(f"{path}: column {column!r} is {frame.schema[column]}, expected {dtype}")
    return frame
