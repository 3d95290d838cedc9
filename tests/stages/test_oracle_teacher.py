import polars as pl
import pytest

from pipeline.data.fewshot import capped_pool
from pipeline.errors import ConfigError
from stages import data, oracle_teacher
from tests.conftest import edit_params


def test_the_oracle_teacher_trains_on_at_most_max_train_pool_sentences(workdir, monkeypatch, capsys):
    edit_params(workdir, lambda raw: raw["priors"]["oracle"].update(max_train=40))
    data.main("banking77_mini")
    trained = []
    monkeypatch.setattr(oracle_teacher, "fit_student", lambda params, *, sentences, **kwargs: trained.append(sentences) or (
        None, None, None, {}))
    monkeypatch.setattr(oracle_teacher, "save_student", lambda folder, **kwargs: None)

    oracle_teacher.main("banking77_mini")
    (sentences,) = trained
    train = pl.read_parquet(workdir / "data/datasets/banking77_mini/train.parquet")
    validation = pl.read_parquet(workdir / "data/datasets/banking77_mini/validation.parquet")
    assert len(sentences) == 40 < len(train) - len(validation)
    assert sentences["id"].is_in(train["id"].implode()).all() and not sentences["id"].is_in(validation["id"].implode()).any()
    assert f"trains on 40 of {len(train) - len(validation)} pool sentences" in capsys.readouterr().err

    edit_params(workdir, lambda raw: raw["priors"]["oracle"].update(max_train=25))  # = 5 labels x k=5
    with pytest.raises(ConfigError, match=r"^priors.oracle.max_train: 25 is no larger than the k-shot draws"):
        oracle_teacher.main("banking77_mini")


def test_a_capped_pool_is_a_seeded_draw_and_an_uncapped_one_the_pool_itself():
    pool = pl.DataFrame({"id": [f"{i:03d}" for i in range(100)][::-1], "text": ["w"] * 100, "label": ["a", "b"] * 50})
    draw = capped_pool(pool, max_rows=10, seed=0)
    assert len(draw) == 10 and draw["id"].is_sorted()
    assert draw.equals(capped_pool(pool.sample(fraction=1.0, shuffle=True, seed=1), max_rows=10, seed=0))  # not row order
    assert not draw.equals(capped_pool(pool, max_rows=10, seed=1))
    assert capped_pool(pool, max_rows=100, seed=0) is pool and capped_pool(pool, max_rows=None, seed=0) is pool
