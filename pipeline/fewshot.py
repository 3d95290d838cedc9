"""K-shot draws and the training pool they are drawn from."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.errors import DataError


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
