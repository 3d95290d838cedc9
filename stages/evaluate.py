"""Stage 6b: evaluate one student: metrics/<dataset>/<setting>/<name>-seed<S>.json (a DVC metric).

Keys, all in percent like the paper: accuracy (test split), validation_accuracy (the split to tune
on, e.g. ``dvc exp run -S student.settings.guided.beta=0.3``; never report it as a result), and
ERASER comprehensiveness / sufficiency (AOPC) with the rationale = the top words by the
student's own Integrated Gradients toward its predicted label. Adversarial accuracy is the
``attack`` stage's (stages/attack.py).
"""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
import polars as pl
import torch
import typer

from pipeline.artifacts import DATASET_SCHEMA, DATASETS, model_name, student_dir, student_metrics_file
from pipeline.eraser import faithfulness
from pipeline.io import atomic_write, read_parquet
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import EvaluationParams, load_params
from pipeline.predict import predict_proba
from pipeline.priors.ig import ig_prior


def self_rationale(model, tokenizer, sentences: list[list[str]], *, params: EvaluationParams, max_length: int,
                   device: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """A student's class probabilities, shape (n, n_labels), and its own IG toward its prediction, one score per word."""
    probabilities = predict_proba(model, tokenizer, sentences, batch_size=params.batch_size, max_length=max_length, device=device)
    rationale = ig_prior(model, tokenizer, sentences=sentences, labels=torch.from_numpy(probabilities.argmax(axis=1)),
                         steps=params.ig_steps, internal_batch_size=params.batch_size, batch_size=params.batch_size,
                         max_length=max_length)
    return probabilities, rationale


def evaluate_student(model, tokenizer, *, test: pl.DataFrame, validation: pl.DataFrame,
                     params: EvaluationParams, max_length: int, device: str) -> dict[str, float]:
    """Accuracy and faithfulness of a trained student, and its validation accuracy (for tuning).

    Args:
        test: id, text, label of the test split.
        validation: the same columns of the validation split.

    Returns:
        the metrics dict described in the module docstring.
    """
    index = model.config.label2id

    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, [t.split() for t in texts], batch_size=params.batch_size,
                             max_length=max_length, device=device)

    def correct(frame: pl.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        return probabilities.argmax(axis=1) == np.array([index[label] for label in frame["label"]])

    sentences = [t.split() for t in test["text"]]
    probabilities, rationale = self_rationale(model, tokenizer, sentences, params=params, max_length=max_length, device=device)
    return {
        "accuracy": 100.0 * float(correct(test, probabilities).mean()),
        "validation_accuracy": 100.0 * float(correct(validation, predict(validation["text"].to_list())).mean()),
        **faithfulness(predict, sentences, rationale, fractions=params.fractions),
    }


def main(dataset: str, setting: str, objective: str, seed: int,
         prior: Annotated[str | None, typer.Option(help="the prior the student was trained with")] = None) -> None:
    """Evaluate models/<dataset>/<setting>/<objective>[.<prior>]-seed<seed> and write its metrics JSON."""
    params = load_params()
    device = resolve_device(params.device)
    name = model_name(objective, prior)
    model, tokenizer = load_trained_student(student_dir(dataset, setting, name, seed), device=device)
    test, validation = (
        read_parquet(DATASETS / dataset / f"{split}.parquet", schema=DATASET_SCHEMA) for split in ("test", "validation")
    )
    metrics = evaluate_student(model, tokenizer, test=test, validation=validation,
                               params=params.evaluation, max_length=params.student.max_length, device=device)
    with atomic_write(student_metrics_file(dataset, setting, name, seed)) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{dataset}/{setting}/{name}-seed{seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
