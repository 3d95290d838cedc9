"""Stage 3b: the IG prior from the fine-tuned baseline student: data/priors/<dataset>/<setting>/ig.parquet.

Integrated Gradients (captum's LayerIntegratedGradients on the embedding layer) of the true-label
logit over the setting's train set, subword scores summed into whitespace words.
"""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, PRIORS, priors_frame, student_dir
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.ig import checkpoint_ig


def main(dataset: str, setting: str) -> None:
    """Write data/priors/<dataset>/<setting>/ig.parquet from baseline-seed<priors.ig.teacher_seed>."""
    params = load_params()
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    scores = checkpoint_ig(student_dir(dataset, setting, "baseline", params.priors.ig.teacher_seed), sentences, params=params)
    words = [text.split() for text in sentences["text"]]
    write_parquet(priors_frame(sentences["id"].to_list(), words, scores), PRIORS / dataset / setting / "ig.parquet")
    print(f"{dataset}/{setting}/ig: {len(words)} sentences from baseline-seed{params.priors.ig.teacher_seed}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
