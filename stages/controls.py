"""Stage 3d: the control priors of a setting: data/priors/<dataset>/<setting>/{oracle,random,decoy_truth}.parquet.

``oracle``: IG of the full-pool teacher (stages/oracle_teacher.py) on the setting's train
sentences; ``random``: a seeded uniform score per word; ``decoy_truth``: 0 on a decoy benchmark's
planted word, 1 elsewhere (``pipeline.priors.controls``).
"""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, fewshot_file, oracle_teacher_dir, prior_file
from pipeline.data.decoy import decoy_words
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.controls import control_priors


def main(dataset: str, setting: str) -> None:
    """Write the setting's control priors."""
    params = load_params()
    sentences = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA)
    teacher = oracle_teacher_dir(dataset, params.priors.ig.teacher_seed)
    controls = control_priors(sentences, teacher=teacher, params=params, decoys=decoy_words(params, dataset))
    for name, frame in controls.items():
        write_parquet(frame, prior_file(dataset, setting, name))
    print(f"{dataset}/{setting}: {', '.join(controls)} priors of {len(sentences)} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
