"""Stage 3d: the control priors of a setting: data/priors/<dataset>/<setting>/{oracle,random}.parquet.

``oracle``: IG of the full-pool teacher (stages/oracle_teacher.py) on the setting's train
sentences; ``random``: a seeded uniform score per word (``pipeline.priors.controls``).
"""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, PRIORS, oracle_teacher_dir, priors_frame
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.controls import random_prior
from pipeline.priors.ig import checkpoint_ig


def main(dataset: str, setting: str) -> None:
    """Write the setting's oracle and random priors."""
    params = load_params()
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    ids, words = sentences["id"].to_list(), [text.split() for text in sentences["text"]]
    controls = {
        "oracle": checkpoint_ig(oracle_teacher_dir(dataset, params.priors.ig.teacher_seed), sentences, params=params),
        "random": random_prior(ids, words, seed=params.priors.seed),
    }
    for name, scores in controls.items():
        write_parquet(priors_frame(ids, words, scores), PRIORS / dataset / setting / f"{name}.parquet")
    print(f"{dataset}/{setting}: oracle and random priors of {len(ids)} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
