import polars as pl
import pytest

from pipeline.data.fewshot import k_shot
from pipeline.errors import DataError
from stages import data, fewshot
from tests.conftest import edit_params


def test_k5_banking77_is_exactly_five_per_label_and_byte_identical(workdir):
    data.main("banking77")
    fewshot.main("banking77")
    path = workdir / "data" / "fewshot" / "banking77" / "k5-seed0.parquet"
    frame = pl.read_parquet(path)
    assert len(frame) == 385
    assert frame.group_by("label").len()["len"].unique().to_list() == [5]
    first = path.read_bytes()
    fewshot.main("banking77")
    assert path.read_bytes() == first
    validation = pl.read_parquet(workdir / "data" / "datasets" / "banking77" / "validation.parquet")
    assert not frame["id"].is_in(validation["id"].implode()).any()


def test_seeds_differ_and_full_setting(workdir):
    edit_params(workdir, lambda raw: raw["fewshot"].update(full=True))
    data.main("banking77_mini")
    fewshot.main("banking77_mini")
    folder = workdir / "data" / "fewshot" / "banking77_mini"
    seed0, seed1 = (pl.read_parquet(folder / f"k5-seed{s}.parquet") for s in (0, 1))
    assert set(seed0["id"]) != set(seed1["id"])
    full = pl.read_parquet(folder / "full.parquet")
    datasets = workdir / "data" / "datasets" / "banking77_mini"
    train, validation = (pl.read_parquet(datasets / f"{split}.parquet") for split in ("train", "validation"))
    assert len(full) == len(train) - len(validation) > 0  # train minus the validation drawn from it
    assert not full["id"].is_in(validation["id"].implode()).any()


def test_too_few_examples_for_k():
    pool = pl.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": ["p", "p", "q"]})
    with pytest.raises(DataError, match="label 'q' has 1 training rows, fewer than k=2"):
        k_shot(pool, k=2, seed=0)
