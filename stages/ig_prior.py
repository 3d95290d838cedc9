"""Stage 3b: the IG prior from the fine-tuned baseline student: data/priors/<dataset>/<setting>/ig.parquet.

Integrated Gradients (captum's LayerIntegratedGradients on the embedding layer) of the true-label
logit over the setting's train set, subword scores summed into whitespace words.
"""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, fewshot_file, prior_file, student_dir
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.ig import checkpoint_ig_priors


def main(dataset: str, setting: str) -> None:
    """Write data/priors/<dataset>/<setting>/ig.parquet from baseline-seed<priors.ig.teacher_seed>."""
    params = load_params()
    sentences = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA)
    teacher = student_dir(dataset, setting, "baseline", params.priors.ig.teacher_seed)
    write_parquet(checkpoint_ig_priors(teacher, sentences, params=params), prior_file(dataset, setting, "ig"))
    print(f"{dataset}/{setting}/ig: {len(sentences)} sentences from baseline-seed{params.priors.ig.teacher_seed}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
