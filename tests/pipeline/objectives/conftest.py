import polars as pl
import pytest

from pipeline.models import load_student
from pipeline.objectives.base import Task
from pipeline.training import Example, train_student

CATEGORIES = ("books", "dvd", "electronics", "kitchen")
TASK = Task(num_labels=2, column_values={"category": CATEGORIES})


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
def sentiment_student():
    """A two-label MiniLM and its initial weights; every training test restores them first."""
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    return model, tokenizer, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def train_products(sentiment_student, products):
    """Train an objective on ``products`` from the initial weights (4 sentences a step, 32 tokens each).

    Returns:
        a function (objective, epochs=1) -> (model, log, modules).
    """
    model, tokenizer, initial = sentiment_student

    def run(objective, *, epochs=1):
        model.load_state_dict(initial)
        return train_student(
            model=model, tokenizer=tokenizer, train=products, objective=objective, task=TASK, epochs=epochs, lr=1e-4,
            batch_size=4, warmup_fraction=0.0, seed=0, device="cpu", max_length=32,
        )

    return run
