"""A trained student's evaluation: accuracy, adversarial accuracy and ERASER faithfulness of its own rationale.

Keys, all in percent like the paper: accuracy (test split), validation_accuracy (the split to tune
on, e.g. ``dvc exp run -S student.beta=0.3``; never report it as a result), adv_add_accuracy,
adv_replace_accuracy, adv_accuracy (both attacked sets together; the true label is unchanged by the
attacks), and ERASER comprehensiveness / sufficiency (AOPC) with the rationale = the top words by
the student's own Integrated Gradients toward its predicted label.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from pipeline.artifacts import ATTACKS
from pipeline.eraser import faithfulness
from pipeline.params import EvaluationParams
from pipeline.priors.ig import ig_prior
from pipeline.training import predict_proba


def self_rationale(model, tokenizer, sentences: list[list[str]], *, params: EvaluationParams, max_length: int,
                   device: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """A student's class probabilities and its own IG toward its prediction.

    Args:
        model: the trained classifier.
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        params: ``evaluation`` (batch size, IG steps).
        max_length: tokens per sentence.
        device: where the model runs.

    Returns:
        probabilities of shape (N, n_labels), and per sentence one score per word.
    """
    probabilities = predict_proba(model, tokenizer, sentences, batch_size=params.batch_size, max_length=max_length, device=device)
    rationale = ig_prior(model, tokenizer, sentences=sentences, labels=torch.from_numpy(probabilities.argmax(axis=1)),
                         steps=params.ig_steps, internal_batch_size=params.batch_size, batch_size=params.batch_size,
                         max_length=max_length)
    return probabilities, rationale


def evaluate_student(model, tokenizer, *, test: pl.DataFrame, validation: pl.DataFrame, attacked: dict[str, pl.DataFrame],
                     params: EvaluationParams, max_length: int, device: str) -> dict[str, float]:
    """Accuracy, adversarial accuracy and faithfulness of a trained student, and its validation accuracy (for tuning).

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        test: id, text, label of the test split.
        validation: the same columns of the validation split.
        attacked: {"add": frame, "replace": frame} (``ATTACKS``) with text and (true) label.
        params: ``evaluation`` (batch size, IG steps, ERASER fractions).
        max_length: tokens per sentence.
        device: where the model runs.

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
    add, replace = (correct(attacked[name], predict(attacked[name]["text"].to_list())) for name in ATTACKS)
    return {
        "accuracy": 100.0 * float(correct(test, probabilities).mean()),
        "validation_accuracy": 100.0 * float(correct(validation, predict(validation["text"].to_list())).mean()),
        "adv_add_accuracy": 100.0 * float(add.mean()),
        "adv_replace_accuracy": 100.0 * float(replace.mean()),
        "adv_accuracy": 100.0 * float(np.concatenate([add, replace]).mean()),
        **faithfulness(predict, sentences, rationale, fractions=params.fractions),
    }
