import polars as pl
import pytest

from pipeline.errors import ArtifactError
from pipeline.io import atomic_write, read_parquet, write_parquet

SCHEMA = {"id": pl.String, "score": pl.Float64}


def test_roundtrip_and_byte_identical(tmp_path):
    frame = pl.DataFrame({"id": ["a", "b"], "score": [1.0, 2.5]})
    write_parquet(frame, tmp_path / "x.parquet")
    first = (tmp_path / "x.parquet").read_bytes()
    write_parquet(frame, tmp_path / "x.parquet")
    assert (tmp_path / "x.parquet").read_bytes() == first
    assert read_parquet(tmp_path / "x.parquet", schema=SCHEMA).equals(frame)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "sub" / "x.parquet"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half an artifact")
            raise RuntimeError("crash midway")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_parquet_write_keeps_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"
    write_parquet(pl.DataFrame({"id": ["a"], "score": [1.0]}), target)
    before = target.read_bytes()

    def broken(self, path, **kwargs):
        open(path, "wb").write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(OSError):
        write_parquet(pl.DataFrame({"id": ["b"], "score": [2.0]}), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_corrupted_file_is_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(ArtifactError, match="bad.parquet: not a readable Parquet"):
        read_parquet(bad, schema=SCHEMA)


def test_foreign_file_is_named(tmp_path):
    write_parquet(pl.DataFrame({"id": ["a"], "other": [1]}), tmp_path / "f.parquet")
    with pytest.raises(ArtifactError, match="f.parquet: missing column 'score'"):
        read_parquet(tmp_path / "f.parquet", schema=SCHEMA)
    write_parquet(pl.DataFrame({"id": ["a"], "score": ["x"]}), tmp_path / "g.parquet")
    with pytest.raises(ArtifactError, match="g.parquet: column 'score' is String"):
        read_parquet(tmp_path / "g.parquet", schema=SCHEMA)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="nope.parquet: file not found"):
        read_parquet(tmp_path / "nope.parquet", schema=SCHEMA)
