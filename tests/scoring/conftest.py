import polars as pl
import pytest


@pytest.fixture(scope="session")
def banking(shared_data) -> tuple[list[str], pl.DataFrame]:
    """Banking77's 77 label names and 11 training rows spread over the labels (text, label)."""
    labels = (shared_data / "banking77" / "labels.txt").read_text().split()
    return labels, pl.read_parquet(shared_data / "banking77" / "train.parquet").gather_every(1000)
