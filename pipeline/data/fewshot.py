"""K-shot draws and the training pool they are drawn from."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.errors import DataError
from pipeline.params import FewshotParams, parse_setting, setting_names


def training_pool(train: pl.DataFrame, validation: pl.DataFrame) -> pl.DataFrame:
    """Train rows that are not validation rows (validation drawn from train stays out of training)."""
    return train.filter(~pl.col("id").is_in(validation["id"].implode()))


def capped_pool(pool: pl.DataFrame, *, max_rows: int | None, seed: int) -> pl.DataFrame:
    """At most ``max_rows`` rows of ``pool``: ``pool`` itself when it is no larger (or ``max_rows`` is None), else a
    uniform draw for ``seed`` from id order, so it depends only on the data and the seed, returned in id order."""
    if max_rows is None or len(pool) <= max_rows:
        return pool
    return pool.sort("id").sample(n=max_rows, seed=seed).sort("id")


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


def fewshot_settings(train: pl.DataFrame, validation: pl.DataFrame, *, params: FewshotParams) -> dict[str, pl.DataFrame]:
    """Every configured setting's training sentences: a k-shot draw per k<K>-seed<S>, the whole pool for ``full``.

    Args:
        train: id, text, label of the dataset's train split.
        validation: its validation split (kept out of every setting).
        params: the shots, seeds and ``full`` switch.

    Returns:
        setting name -> frame (id, text, label), in ``setting_names`` order.

    Raises:
        DataError: a label has fewer rows than a setting's K.
    """
    pool = training_pool(train, validation)
    settings = {}
    for setting in setting_names(params):
        k, seed = parse_setting(setting)
        settings[setting] = pool if k is None else k_shot(pool, k=k, seed=seed)
    return settings
