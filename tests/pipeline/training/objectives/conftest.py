import polars as pl
import pytest

from pipeline.training.objectives.base import Task
from pipeline.training.training import Example, train_student

SENTIMENT = ("negative", "positive")
CATEGORIES = ("books", "dvd", "electronics", "kitchen")
TASK = Task(num_labels=2, column_values={"category": CATEGORIES})


@pytest.fixture(scope="module")
def movies(shared_data):
    """movies_sst2 training sentences of at most 12 words, a seeded sample: 32 positives, 16 negatives."""
    frame = pl.read_parquet(shared_data / "sentiment" / "movies_sst2" / "train.parquet")
    frame = frame.filter(pl.col("text").str.split(" ").list.len() <= 12)
    return {label: frame.filter(pl.col("label") == label).sample(32 if label == "positive" else 16, seed=0)["text"].to_list()
            for label in SENTIMENT}


@pytest.fixture(scope="module")
def products(shared_data):
    """Eight products_amazon reviews, one per label x category cell, with their category."""
    frame = pl.read_parquet(shared_data / "sentiment" / "products_amazon" / "train.parquet")
    rows = frame.group_by("label", "category", maintain_order=True).head(1).sort("category", "label")
    return [
        Example(text.split(), int(label == "positive"), columns={"category": category})
        for text, label, category in rows.select("text", "label", "category").iter_rows()
    ]


@pytest.fixture(scope="module")
def sentiment_student(make_minilm):
    """A two-label MiniLM and its initial weights; every training run restores them first."""
    return make_minilm(2)


@pytest.fixture(scope="module")
def train(sentiment_student):
    """Train the sentiment student from its initial weights: ``train(examples, objective, **loop settings)``.

    Returns:
        a function -> (model, log, modules).
    """

    def run(examples: list[Example], objective, *, epochs=1, lr=1e-4, batch_size=4, seed=0, task=TASK, **loop):
        model, tokenizer, initial = sentiment_student
        model.load_state_dict(initial)
        return train_student(
            model=model, tokenizer=tokenizer, train=examples, objective=objective, task=task, epochs=epochs,
            lr=lr, batch_size=batch_size, warmup_fraction=loop.pop("warmup_fraction", 0.1), seed=seed, device="cpu", **loop,
        )

    return run


@pytest.fixture(scope="module")
def train_products(train, products):
    """Train an objective on ``products`` (4 sentences a step, 32 tokens each): (objective, epochs=1) -> (model, log, modules)."""

    def run(objective, *, epochs=1):
        return train(products, objective, epochs=epochs, warmup_fraction=0.0, max_length=32)

    return run
