"""Stage 1b: k-shot subsets: data/fewshot/<name>/k<K>-seed<S>.parquet (exactly K per label) and full.parquet."""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, DATASETS, FEWSHOT
from pipeline.fewshot import k_shot, training_pool
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params, setting_names


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
