import polars as pl
import pytest

from pipeline.models import load_student
from pipeline.objectives.base import Task
from pipeline.training import Example, train_student

SENTIMENT = ("negative", "positive")


@pytest.fixture(scope="module")
def movies(shared_data):
    """movies_sst2 training sentences of at most 12 words, a seeded sample: 32 positives, 16 negatives."""
    frame = pl.read_parquet(shared_data / "sentiment" / "movies_sst2" / "train.parquet")
    frame = frame.filter(pl.col("text").str.split(" ").list.len() <= 12)
    return {label: frame.filter(pl.col("label") == label).sample(32 if label == "positive" else 16, seed=0)["text"].to_list()
            for label in SENTIMENT}


@pytest.fixture(scope="module")
def sentiment_student():
    """A two-label MiniLM and its initial weights; ``train`` restores them before every run."""
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    return model, tokenizer, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def train(sentiment_student):
    """Train the sentiment student from its initial weights: ``train(examples, objective, **loop settings)``."""

    def run(examples: list[Example], objective, *, epochs=1, lr=1e-4, batch_size=4, seed=0):
        model, tokenizer, initial = sentiment_student
        model.load_state_dict(initial)
        return train_student(
            model=model, tokenizer=tokenizer, train=examples, objective=objective, task=Task(num_labels=2), epochs=epochs,
            lr=lr, batch_size=batch_size, warmup_fraction=0.1, seed=seed, device="cpu",
        )[:2]

    return run
