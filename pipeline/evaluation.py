"""A trained student's evaluation: accuracy and ERASER faithfulness of its own rationale; adversarial accuracy.

``evaluate_student``'s keys, all in percent like the paper: accuracy (test split),
validation_accuracy (the split to tune on, e.g. ``dvc exp run -S student.settings.guided.beta=0.3``;
never report it as a result), and ERASER comprehensiveness / sufficiency (AOPC) with the rationale =
the top words by the student's own Integrated Gradients toward its predicted label.
``adversarial_accuracy``'s: adv_add_accuracy, adv_replace_accuracy, adv_accuracy (both attacked sets
together; the true label is unchanged by the attacks).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from pipeline.artifacts import ATTACKS
from pipeline.eraser import faithfulness
from pipeline.params import EvaluationParams
from pipeline.predict import predict_proba
from pipeline.priors.ig import ig_prior


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


def evaluate_student(model, tokenizer, *, test: pl.DataFrame, validation: pl.DataFrame,
                     params: EvaluationParams, max_length: int, device: str) -> dict[str, float]:
    """Accuracy and faithfulness of a trained student, and its validation accuracy (for tuning).

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        test: id, text, label of the test split.
        validation: the same columns of the validation split.
        params: ``evaluation`` (batch size, IG steps, ERASER fractions).
        max_length: tokens per sentence.
        device: where the model runs.

    Returns:
        accuracy, validation_accuracy, comprehensiveness, sufficiency.
    """
    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, [t.split() for t in texts], batch_size=params.batch_size,
                             max_length=max_length, device=device)

    sentences = [t.split() for t in test["text"]]
    probabilities, rationale = self_rationale(model, tokenizer, sentences, params=params, max_length=max_length, device=device)
    return {
        "accuracy": _accuracy(model, test, probabilities),
        "validation_accuracy": _accuracy(model, validation, predict(validation["text"].to_list())),
        **faithfulness(predict, sentences, rationale, fractions=params.fractions),
    }


def adversarial_accuracy(model, tokenizer, attacked: dict[str, pl.DataFrame], *, batch_size: int, max_length: int,
                         device: str) -> dict[str, float]:
    """Accuracy on each attacked set and on both together.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        attacked: ``ATTACKS`` -> frame with text and the (true) label.
        batch_size, max_length, device: as ``predict_proba``.

    Returns:
        adv_add_accuracy, adv_replace_accuracy, adv_accuracy, in percent.
    """
    correct = {}
    for name in ATTACKS:
        frame = attacked[name]
        probabilities = predict_proba(model, tokenizer, [t.split() for t in frame["text"]], batch_size=batch_size,
                                      max_length=max_length, device=device)
        correct[name] = _correct(model, frame, probabilities)
    return {f"adv_{name}_accuracy": 100.0 * float(correct[name].mean()) for name in ATTACKS} | {
        "adv_accuracy": 100.0 * float(np.concatenate([correct[name] for name in ATTACKS]).mean())
    }


def _correct(model, frame: pl.DataFrame, probabilities: np.ndarray) -> np.ndarray:
    index = model.config.label2id
    return probabilities.argmax(axis=1) == np.array([index[label] for label in frame["label"]])


def _accuracy(model, frame: pl.DataFrame, probabilities: np.ndarray) -> float:
    return 100.0 * float(_correct(model, frame, probabilities).mean())
