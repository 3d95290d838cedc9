import polars as pl
import pytest

from pipeline.scoring.transformers_backend import TransformersScorer


@pytest.fixture(scope="session")
def smollm() -> TransformersScorer:
    """The real SmolLM2-135M-Instruct teacher (float32, CPU), loaded once for every scoring test."""
    return TransformersScorer(model="smollm2-135m-instruct", batch_size=4)


@pytest.fixture(scope="session")
def banking(shared_data) -> tuple[list[str], pl.DataFrame]:
    """Banking77's 77 label names and 11 training rows spread over the labels (text, label)."""
    labels = (shared_data / "banking77" / "labels.txt").read_text().split()
    return labels, pl.read_parquet(shared_data / "banking77" / "train.parquet").gather_every(1000)
