import polars as pl
import pytest

from pipeline.data.datasets import build_dataset, prepare_dataset, read_hub, validate_split
from pipeline.errors import ConfigError, DataError
from pipeline.params import DatasetParams, load_params
from tests.conftest import REPO


def _prepare(name, mirror, **config):
    return prepare_dataset(name, DatasetParams(**config), mirror=mirror, validation_fraction=0.1, split_seed=0)


def _write_folder(folder, *, train, test, fmt="parquet", labels=None):
    folder.mkdir(parents=True)
    for split, frame in (("train", train), ("test", test)):
        if fmt == "csv":
            frame.write_csv(folder / f"{split}.csv")
        else:
            frame.write_parquet(folder / f"{split}.parquet")
    if labels is not None:
        (folder / "labels.txt").write_text("\n".join(labels) + "\n")


def _toy(n_per_label=4):
    labels = ["greet", "bye"]
    return pl.DataFrame({"text": [f"{label} message number {i}" for label in labels for i in range(n_per_label)],
                         "label": [label for label in labels for _ in range(n_per_label)]})


def test_banking77_from_the_mirror(shared_data):
    splits = _prepare("banking77", shared_data)
    assert len(splits["train"]) == 10_003 and splits["train"]["label"].n_unique() == 77
    assert len(splits["test"]) == 3_080
    assert splits["train"]["id"].is_unique().all()
    # validation drawn from train, stratified: every label present, ~10 %, ids are train ids
    validation = splits["validation"]
    assert validation["label"].n_unique() == 77
    assert 0.09 < len(validation) / 10_003 < 0.11
    assert validation["id"].is_in(splits["train"]["id"].implode()).all()


def test_ids_are_stable_across_runs(shared_data):
    first = _prepare("hwu64", shared_data)
    second = _prepare("hwu64", shared_data)
    for split in ("train", "validation", "test"):
        assert first[split].equals(second[split])
    assert first["validation"]["id"][0].startswith("validation-")  # hwu64 has its own validation


def test_a_slice_by_labels_and_test_cap(shared_data):
    splits = _prepare("mini", shared_data, path="banking77", labels=["card_arrival", "exchange_rate"], max_test_per_label=7,
                      max_validation_per_label=3)
    assert set(splits["train"]["label"]) == {"card_arrival", "exchange_rate"}
    assert len(splits["test"]) == 14
    assert splits["validation"]["label"].value_counts()["count"].to_list() == [3, 3]


def test_max_words_keeps_the_first_words_of_every_split(tmp_path):
    train = pl.DataFrame({"text": ["one two  three\tfour five", "short", "a b c"] * 2, "label": ["x"] * 3 + ["y"] * 3})
    _write_folder(tmp_path / "toy", train=train, test=train)
    splits = _prepare("toy", tmp_path, max_words=3)
    for frame in splits.values():
        assert set(frame["text"]) <= {"one two  three", "short", "a b c"}
    assert splits["test"]["text"].to_list()[:3] == ["one two  three", "short", "a b c"]


def test_new_folder_in_the_documented_format_works_by_configuration(tmp_path):
    _write_folder(tmp_path / "toy", train=_toy(), test=_toy(2), fmt="csv")
    splits = _prepare("toy", tmp_path)
    assert len(splits["train"]) == 8 and len(splits["validation"]) == 2
    assert splits["train"].columns == ["id", "text", "label"]


def test_build_dataset_reads_the_configured_mirror_and_refuses_an_unconfigured_name(tmp_path, monkeypatch):
    _write_folder(tmp_path / "toy", train=_toy(), test=_toy(2))
    params = load_params(REPO / "params.yaml")
    params = params.model_copy(update={"data": params.data.model_copy(update={"datasets": {"toy": DatasetParams()}})})
    monkeypatch.setenv("CAPFLOW_DATA_MIRROR", str(tmp_path))
    splits = build_dataset(params, "toy")
    assert {split: len(frame) for split, frame in splits.items()} == {"train": 8, "validation": 2, "test": 4}
    with pytest.raises(ConfigError, match=r"dataset 'banking77' is not in data.datasets \(toy\)"):
        build_dataset(params, "banking77")


def test_nested_folder_by_path(shared_data):
    splits = _prepare("movies", shared_data, path="sentiment/movies_sst2")
    assert set(splits["train"]["label"]) == {"negative", "positive"}


def test_empty_text_names_file_and_row(tmp_path):
    train = _toy().with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("   ")).otherwise(pl.col("text")).alias("text"))
    _write_folder(tmp_path / "toy", train=train, test=_toy(2))
    with pytest.raises(DataError, match=r"toy/train.parquet: row 3: empty or whitespace-only text"):
        _prepare("toy", tmp_path)


def test_label_outside_label_set(tmp_path):
    shout = pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("shout")).otherwise(pl.col("label"))
    test = _toy(2).with_columns(shout.alias("label"))
    _write_folder(tmp_path / "toy", train=_toy(), test=test, labels=["bye", "greet"])
    with pytest.raises(DataError, match=r"toy/test.parquet: row 1: label 'shout' is not in the label set"):
        _prepare("toy", tmp_path)


def test_missing_split(tmp_path):
    (tmp_path / "toy").mkdir()
    _toy().write_parquet(tmp_path / "toy" / "train.parquet")
    with pytest.raises(DataError, match=r"toy: missing split 'test'"):
        _prepare("toy", tmp_path)


def test_non_parquet_file(tmp_path):
    _write_folder(tmp_path / "toy", train=_toy(), test=_toy(2))
    (tmp_path / "toy" / "test.parquet").write_text("text,label\nhello,greet\n")
    with pytest.raises(DataError, match=r"toy/test.parquet: not a readable Parquet file"):
        _prepare("toy", tmp_path)


def test_duplicate_ids(tmp_path):
    train = _toy().with_columns(pl.lit("same").alias("id"))
    _write_folder(tmp_path / "toy", train=train, test=_toy(2))
    with pytest.raises(DataError, match=r"toy/train.parquet: row 1: duplicate id 'same'"):
        _prepare("toy", tmp_path)


def test_non_utf8_csv_names_line(tmp_path):
    _write_folder(tmp_path / "toy", train=_toy(), test=_toy(2), fmt="csv")
    path = tmp_path / "toy" / "test.csv"
    path.write_bytes(path.read_bytes().replace(b"bye message number 1", b"bye m\xe9ssage"))
    with pytest.raises(DataError, match=r"toy/test.csv: line 5: not UTF-8"):
        _prepare("toy", tmp_path)


def test_missing_text_column(tmp_path):
    bad = pl.DataFrame({"sentence": ["a"], "label": ["x"]})
    with pytest.raises(DataError, match="where.parquet: missing column 'text'"):
        validate_split(bad, where="where.parquet", split="train", label_set={"x"})


def test_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot download PolyAI/banking77 from the Hugging Face hub"):
        read_hub("banking77", repo=None)


def test_extra_columns_are_kept_after_the_label(shared_data):
    splits = _prepare("products", shared_data, path="sentiment/products_amazon", columns=["category"])
    source = pl.read_parquet(shared_data / "sentiment" / "products_amazon" / "test.parquet")
    for split in ("train", "validation", "test"):
        assert splits[split].columns == ["id", "text", "label", "category"]
    assert splits["test"]["category"].to_list() == source["category"].to_list()
    assert splits["validation"]["category"].n_unique() == 4


def test_missing_extra_column_names_file_and_column(tmp_path):
    _write_folder(tmp_path / "toy", train=_toy().with_columns(pl.lit("a").alias("group")), test=_toy(2))
    with pytest.raises(DataError, match=r"toy/test.parquet: missing column 'group'"):
        _prepare("toy", tmp_path, columns=["group"])


@pytest.mark.parametrize("value", [None, " "])
def test_empty_extra_value_names_file_and_row(tmp_path, value):
    group = pl.when(pl.int_range(pl.len()) == 2).then(pl.lit(value, dtype=pl.String)).otherwise(pl.lit("a"))
    test = _toy(2).with_columns(pl.lit("b").alias("group"))
    _write_folder(tmp_path / "toy", train=_toy().with_columns(group.alias("group")), test=test)
    with pytest.raises(DataError, match=r"toy/train.parquet: row 2: empty 'group' value"):
        _prepare("toy", tmp_path, columns=["group"])


def test_a_reserved_extra_column_is_refused():
    with pytest.raises(ValueError, match="'label' is always kept"):
        DatasetParams(columns=["label"])


WATERBIRDS = {"column": "category", "share": 0.9, "train_per_group": 100, "test_per_cell": 25, "seed": 3,
              "majority": {"books": "positive", "dvd": "positive", "electronics": "negative", "kitchen": "negative"}}


def _cells(frame):
    return {(y, g): n for y, g, n in frame.group_by("label", "category").len().iter_rows()}


def test_a_spurious_subset_has_exact_cell_counts(shared_data):
    def prepare():
        return _prepare("waterbirds", shared_data, path="sentiment/products_amazon", columns=["category"],
                        spurious=WATERBIRDS)

    splits = prepare()
    majority = {(label, group) for group, label in WATERBIRDS["majority"].items()}
    cells = {(y, g) for y in ("negative", "positive") for g in WATERBIRDS["majority"]}
    assert _cells(splits["train"]) == {cell: 90 if cell in majority else 10 for cell in cells}
    assert _cells(splits["test"]) == dict.fromkeys(cells, 25)
    # validation: a tenth of every training cell, so it carries the same skew; its rows stay in train
    assert _cells(splits["validation"]) == {cell: 9 if cell in majority else 1 for cell in cells}
    assert splits["validation"]["id"].is_in(splits["train"]["id"].implode()).all()
    again = prepare()
    assert all(again[split].equals(splits[split]) for split in splits)


def test_a_too_small_spurious_cell_names_the_key(shared_data):
    with pytest.raises(DataError, match=r"^data.datasets.waterbirds.spurious: test split: cell label='negative', "
                                        r"category='books' has 250 rows, fewer than the 251 asked for$"):
        _prepare("waterbirds", shared_data, path="sentiment/products_amazon", columns=["category"],
                 spurious=WATERBIRDS | {"test_per_cell": 251})


def test_a_spurious_group_column_must_be_kept():
    with pytest.raises(ValueError, match=r"spurious.column: 'category' must be one of columns \[\]"):
        DatasetParams(spurious=WATERBIRDS)
