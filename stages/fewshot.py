"""Stage 1b: k-shot subsets: data/fewshot/<name>/k<K>-seed<S>.parquet (exactly K per label) and full.parquet."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.artifacts import DATASET_SCHEMA, DATASETS, FEWSHOT
from pipeline.errors import DataError
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params, setting_names


def training_pool(train: pl.DataFrame, validation: pl.DataFrame) -> pl.DataFrame:
    """Train rows that are not validation rows (validation drawn from train stays out of training)."""
    return train.filter(~pl.col("id").is_in(validation["id"].implode()))


def k_shot(pool: pl.DataFrame, *, k: int, seed: int) -> pl.DataFrame:
    """Draw exactly ``k`` rows per label, deterministically for ``seed``.

    Labels are visited in sorted order and rows in id order, so the draw depends only on the data
    and the seed. Returns the rows sorted by label, then id.

    Raises:
        DataError: a label has fewer than ``k`` rows.
    """
    rng = np.random.default_rng(seed)
    picked = []
    for label, group in sorted(pool.sort("id").group_by("label", maintain_order=True), key=lambda g: g[0][0]):
        if len(group) < k:
            raise DataError(f"label {label[0]!r} has {len(group)} training rows, fewer than k={k}")
        picked.append(group[np.sort(rng.choice(len(group), size=k, replace=False))])
    return pl.concat(picked)


def main(dataset: str) -> None:
    """Write every configured setting of ``dataset`` under data/fewshot/<dataset>/."""
    params = load_params()
    train = read_parquet(DATASETS / dataset / "train.parquet", schema=DATASET_SCHEMA)
    validation = read_parquet(DATASETS / dataset / "validation.parquet", schema=DATASET_SCHEMA)
    pool = training_pool(train, validation)
    for setting in setting_names(params.fewshot):
        if setting == "full":
            frame = pool
        else:
            k, seed = (int(part) for part in setting[1:].split("-seed"))
            frame = k_shot(pool, k=k, seed=seed)
        write_parquet(frame, FEWSHOT / dataset / f"{setting}.parquet")
        print(f"{dataset}/{setting}: {len(frame)} rows")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
