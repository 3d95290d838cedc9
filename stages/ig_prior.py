"""Stage 3b: the IG prior from the fine-tuned baseline student: data/priors/<dataset>/<setting>/ig.parquet.

Integrated Gradients (captum's LayerIntegratedGradients on the embedding layer) of the true-label
logit over the setting's train set, subword scores summed into whitespace words.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, MODELS, PRIORS, priors_frame
from pipeline.io import read_parquet, write_parquet
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import Params, load_params
from pipeline.priors.ig import ig_prior


def teacher_ig(params: Params, dataset: str, setting: str, sentences: pl.DataFrame) -> list[np.ndarray]:
    """IG of each sentence's true-label logit under baseline-seed<priors.ig.teacher_seed>, one score per word.

    Args:
        sentences: text and label columns.

    Returns:
        Per sentence, float array of shape (n_words,).
    """
    folder = MODELS / dataset / setting / f"baseline-seed{params.priors.ig.teacher_seed}"
    model, tokenizer = load_trained_student(folder, device=resolve_device(params.device))
    return ig_prior(model, tokenizer, sentences=[text.split() for text in sentences["text"]],
                    labels=torch.tensor([model.config.label2id[label] for label in sentences["label"]]),
                    steps=params.priors.ig.steps, internal_batch_size=params.priors.ig.internal_batch_size,
                    batch_size=16, max_length=params.student.max_length)


def main(dataset: str, setting: str) -> None:
    """Write data/priors/<dataset>/<setting>/ig.parquet from baseline-seed<priors.ig.teacher_seed>."""
    params = load_params()
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    scores = teacher_ig(params, dataset, setting, sentences)
    words = [text.split() for text in sentences["text"]]
    write_parquet(priors_frame(sentences["id"].to_list(), words, scores), PRIORS / dataset / setting / "ig.parquet")
    print(f"{dataset}/{setting}/ig: {len(words)} sentences from baseline-seed{params.priors.ig.teacher_seed}")

if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
