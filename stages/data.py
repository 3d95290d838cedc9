"""Stage 1a: resolve, validate and write one dataset as data/datasets/<name>/{train,validation,test}.parquet.

A decoy benchmark (``data.datasets.<name>.decoy``) gets its decoys planted in train and validation, and
test_{matched,randomised,swapped}.parquet beside the clean test split (``pipeline.data.decoy``).
"""

from __future__ import annotations

from pipeline.artifacts import dataset_split_file
from pipeline.data.datasets import build_dataset
from pipeline.io import write_parquet
from pipeline.params import load_params


def main(dataset: str) -> None:
    """Write data/datasets/<dataset>/{train,validation,test}.parquet (and a decoy benchmark's test copies)."""
    splits = build_dataset(load_params(), dataset)  # everything validated before the first write
    for split, frame in splits.items():
        write_parquet(frame, dataset_split_file(dataset, split))
        print(f"{dataset}/{split}: {len(frame)} rows, {frame['label'].n_unique()} labels")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
