"""Stage 1a: resolve, validate and write one dataset as data/datasets/<name>/{train,validation,test}.parquet."""

from __future__ import annotations

import polars as pl

from pipeline.artifacts import DATASETS
from pipeline.datasets import prepare_dataset
from pipeline.errors import ConfigError
from pipeline.io import write_parquet
from pipeline.params import Params, load_params, mirror_dir


def build_dataset(params: Params, name: str) -> dict[str, pl.DataFrame]:
    """Return the validated splits of dataset ``name`` (columns id, text, label)."""
    if name not in params.data.datasets:
        raise ConfigError(f"dataset {name!r} is not in data.datasets ({', '.join(params.data.datasets)})")
    return prepare_dataset(
        name,
        params.data.datasets[name],
        mirror=mirror_dir(params),
        validation_fraction=params.data.validation_fraction,
        split_seed=params.data.split_seed,
    )


def main(dataset: str) -> None:
    """Write data/datasets/<dataset>/{train,validation,test}.parquet."""
    splits = build_dataset(load_params(), dataset)  # everything validated before the first write
    for split, frame in splits.items():
        write_parquet(frame, DATASETS / dataset / f"{split}.parquet")
        print(f"{dataset}/{split}: {len(frame)} rows, {frame['label'].n_unique()} labels")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
