"""Stage 1b: k-shot subsets: data/fewshot/<name>/k<K>-seed<S>.parquet (exactly K per label) and full.parquet."""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, dataset_split_file, fewshot_file
from pipeline.data.fewshot import fewshot_settings
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params


def main(dataset: str) -> None:
    """Write every configured setting of ``dataset`` under data/fewshot/<dataset>/."""
    params = load_params()
    train, validation = (read_parquet(dataset_split_file(dataset, split), schema=DATASET_SCHEMA)
                         for split in ("train", "validation"))
    for setting, frame in fewshot_settings(train, validation, params=params.fewshot).items():
        write_parquet(frame, fewshot_file(dataset, setting))
        print(f"{dataset}/{setting}: {len(frame)} rows")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
