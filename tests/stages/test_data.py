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
    def smaller_test(raw: dict) -> None:
        for name in ("banking77_mini", "banking77_mini_decoy"):  # a decoy ceiling twin keeps the decoy dataset's slicing
            raw["data"]["datasets"][name].update(max_test_per_label=10, min_test=200)

    edit_params(workdir, smaller_test)
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


DECOY = "banking77_mini_decoy"  # the default profile's positive control; its ceiling twin is banking77_mini


def test_a_decoy_dataset_plants_one_decoy_per_sentence_and_writes_the_test_copies(workdir):
    from pipeline.artifacts import decoy_test_file
    from pipeline.data.decoy import TEST_VARIANTS, decoy_positions

    data.main(DECOY)
    data.main("banking77_mini")
    folder = workdir / "data" / "datasets" / DECOY
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["train.parquet", "validation.parquet", "test.parquet"] + [decoy_test_file(DECOY, v).name for v in TEST_VARIANTS]
    )
    words = load_params().data.datasets[DECOY].decoy.words
    twin = {split: pl.read_parquet(workdir / "data" / "datasets" / "banking77_mini" / f"{split}.parquet")
            for split in ("train", "validation", "test")}
    for split in ("train", "validation"):
        decoyed = pl.read_parquet(folder / f"{split}.parquet")
        assert decoyed["id"].to_list() == twin[split]["id"].to_list()
        assert decoyed["label"].to_list() == twin[split]["label"].to_list()
        sentences = [t.split() for t in decoyed["text"]]
        positions = decoy_positions(sentences, words.values())
        # rate 1.0: every sentence carries its own label's decoy, and removing it gives the clean sentence back
        assert all(s[p] == words[y] for s, p, y in zip(sentences, positions, decoyed["label"]))
        # (as words: planting re-joins the words with single spaces, and every consumer splits on whitespace)
        assert [s[:p] + s[p + 1:] for s, p in zip(sentences, positions)] == [t.split() for t in twin[split]["text"]]
        assert decoyed["decoy"].to_list() == decoyed["label"].to_list()  # the planted decoy's label (eX2L's confounder)
    test = pl.read_parquet(folder / "test.parquet")
    assert test.equals(twin["test"])  # the clean test is the ceiling's
    copies = {v: pl.read_parquet(decoy_test_file(DECOY, v)) for v in TEST_VARIANTS}
    planted = {v: [s[p] for s, p in zip(sentences, decoy_positions(sentences, words.values()))]
               for v, frame in copies.items() for sentences in [[t.split() for t in frame["text"]]]}
    gold = [words[y] for y in test["label"]]
    assert planted["matched"] == gold
    assert all([words[y] for y in copies[v]["decoy"]] == planted[v] for v in TEST_VARIANTS)
    assert all(w != g for w, g in zip(planted["swapped"], gold))
    assert 0.1 < sum(w == g for w, g in zip(planted["randomised"], gold)) / len(gold) < 0.35  # 1 in 5 by chance
    # the copies share the insertion position: they differ in the planted word only
    for v in ("randomised", "swapped"):
        for a, b in zip(copies["matched"]["text"], copies[v]["text"]):
            assert sum(x != y for x, y in zip(a.split(), b.split(), strict=True)) <= 1


def test_a_decoy_dataset_and_its_ceiling_twin_draw_the_same_k_shot_sentences(workdir):
    from stages import fewshot

    for name in (DECOY, "banking77_mini"):
        data.main(name)
        fewshot.main(name)
    decoyed, clean = (pl.read_parquet(workdir / "data" / "fewshot" / name / "k5-seed0.parquet")
                      for name in (DECOY, "banking77_mini"))
    assert decoyed.select("id", "label").equals(clean.select("id", "label")) and len(clean) == 25
    assert (decoyed["text"] != clean["text"]).all()


def test_a_decoy_word_that_occurs_in_the_data_leaves_no_artifact(workdir):
    def natural_decoy(raw: dict) -> None:
        raw["data"]["datasets"][DECOY]["decoy"]["words"]["exchange_rate"] = "Card"

    edit_params(workdir, natural_decoy)
    result = subprocess.run([sys.executable, "-m", "stages.data", DECOY], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert f"data.datasets.{DECOY}.decoy.words: decoy word 'card' occurs in train row 'train-" in result.stderr
    assert not (workdir / "data").exists()


def test_a_decoy_map_missing_a_label_leaves_no_artifact(workdir):
    edit_params(workdir, lambda raw: raw["data"]["datasets"][DECOY]["decoy"]["words"].pop("exchange_rate"))
    result = subprocess.run([sys.executable, "-m", "stages.data", DECOY], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert f"data.datasets.{DECOY}.decoy.words: no decoy word for label 'exchange_rate'" in result.stderr
    assert not (workdir / "data").exists()
