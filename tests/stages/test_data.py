import os
import subprocess
import sys

import polars as pl

from pipeline.params import load_params
from stages import data
from tests.conftest import REPO, edit_params


def test_writes_the_three_splits(workdir):
    data.main("banking77_mini")
    folder = workdir / "data" / "datasets" / "banking77_mini"
    assert sorted(p.name for p in folder.iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]
    train = pl.read_parquet(folder / "train.parquet")
    configured = load_params().data.datasets["banking77_mini"].labels
    assert train.columns == ["id", "text", "label"] and sorted(train["label"].unique()) == sorted(configured)


def test_bad_dataset_leaves_no_artifact(workdir, tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mirror")
    (mirror / "toy").mkdir()
    pl.DataFrame({"text": ["hi", "bye"], "label": ["a", "b"]}).write_parquet(mirror / "toy" / "train.parquet")
    pl.DataFrame({"text": ["hi", ""], "label": ["a", "b"]}).write_parquet(mirror / "toy" / "test.parquet")
    edit_params(workdir, lambda raw: raw["data"]["datasets"].update(toy={"path": str(mirror / "toy")}))
    result = subprocess.run([sys.executable, "-m", "stages.data", "toy"], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "toy/test.parquet: row 1: empty or whitespace-only text" in result.stderr
    assert not (workdir / "data").exists()


def test_misspelled_param_fails_in_one_line(workdir):
    edit_params(workdir, lambda raw: raw["data"].update(mirorr="x"))
    result = subprocess.run([sys.executable, "-m", "stages.data", "banking77"], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "capflow: error: params.yaml: unknown key 'data.mirorr' "
        "(allowed here: mirror, validation_fraction, split_seed, datasets)"
    )


def test_mirror_from_environment(workdir, shared_data, monkeypatch):
    edit_params(workdir, lambda raw: raw["data"].update(mirror="/nonexistent"))
    monkeypatch.setenv("CAPFLOW_DATA_MIRROR", str(shared_data))
    data.main("banking77_mini")
    assert (workdir / "data" / "datasets" / "banking77_mini" / "test.parquet").is_file()


def test_a_test_split_smaller_than_the_profile_asks_for_is_refused(workdir):
    edit_params(workdir, lambda raw: raw["data"]["datasets"]["banking77_mini"].update(max_test_per_label=10, min_test=200))
    result = subprocess.run([sys.executable, "-m", "stages.data", "banking77_mini"], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "data.datasets.banking77_mini.min_test: the test split of" in result.stderr
    assert "has 50 rows after slicing, fewer than the 200 asked for" in result.stderr
    assert not (workdir / "data").exists()


def _with_products(raw: dict) -> None:
    raw["data"]["datasets"]["products"] = {"path": "sentiment/products_amazon", "columns": ["category"]}


def test_a_declared_column_reaches_the_splits_and_the_k_shot_files(workdir):
    from stages import fewshot

    edit_params(workdir, _with_products)
    data.main("products")
    fewshot.main("products")
    train = pl.read_parquet(workdir / "data" / "datasets" / "products" / "train.parquet")
    assert train.columns == ["id", "text", "label", "category"]
    assert sorted(train["category"].unique()) == ["books", "dvd", "electronics", "kitchen"]
    k5 = pl.read_parquet(workdir / "data" / "fewshot" / "products" / "k5-seed0.parquet")
    assert k5.columns == train.columns and len(k5) == 10
    assert k5.join(train, on="id", how="left", suffix="_train").select(
        (pl.col("category") == pl.col("category_train")).all()
    ).item()  # the k-shot rows are the dataset's rows, unchanged


def test_a_missing_declared_column_leaves_no_artifact(workdir, tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mirror")
    (mirror / "toy").mkdir()
    test = pl.DataFrame({"text": ["hi", "bye"], "label": ["a", "b"]})
    test.with_columns(group=pl.lit("x")).write_parquet(mirror / "toy" / "train.parquet")
    test.write_parquet(mirror / "toy" / "test.parquet")
    edit_params(workdir, lambda raw: raw["data"]["datasets"].update(toy={"path": str(mirror / "toy"), "columns": ["group"]}))
    result = subprocess.run([sys.executable, "-m", "stages.data", "toy"], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "toy/test.parquet: missing column 'group'" in result.stderr
    assert not (workdir / "data").exists()


def _with_waterbirds(test_per_cell: int):
    def edit(raw: dict) -> None:
        raw["data"]["datasets"]["waterbirds"] = {
            "path": "sentiment/products_amazon", "columns": ["category"],
            "spurious": {"column": "category", "majority": {"books": "positive", "dvd": "positive",
                                                           "electronics": "negative", "kitchen": "negative"},
                         "share": 0.9, "train_per_group": 50, "test_per_cell": test_per_cell},
        }
        raw["fewshot"].update(full=True)
    return edit


def test_the_full_setting_of_a_spurious_dataset_keeps_its_skew(workdir):
    from stages import fewshot

    edit_params(workdir, _with_waterbirds(test_per_cell=10))
    data.main("waterbirds")
    fewshot.main("waterbirds")
    full = pl.read_parquet(workdir / "data" / "fewshot" / "waterbirds" / "full.parquet")
    cells = {(y, g): n for y, g, n in full.group_by("label", "category").len().iter_rows()}
    # 45 / 5 per group drawn, minus validation's 4 / 0 (a tenth, rounded, at least one where a cell has two rows)
    assert cells == {("positive", "books"): 41, ("positive", "dvd"): 41, ("negative", "electronics"): 41,
                     ("negative", "kitchen"): 41, ("negative", "books"): 4, ("negative", "dvd"): 4,
                     ("positive", "electronics"): 4, ("positive", "kitchen"): 4}


def test_a_too_small_spurious_cell_leaves_no_artifact(workdir):
    edit_params(workdir, _with_waterbirds(test_per_cell=300))
    result = subprocess.run([sys.executable, "-m", "stages.data", "waterbirds"], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "data.datasets.waterbirds.spurious: test split: cell label='negative', category='books' has 250 rows" in result.stderr
    assert not (workdir / "data").exists()
