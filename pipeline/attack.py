"""Adversarial accuracy: a trained student's accuracy on the attacked test sets (true labels unchanged)."""

from __future__ import annotations

import numpy as np
import polars as pl
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipeline.predict import predict_proba

ATTACKS = ("add", "replace")  # the sets pipeline.adversarial.make_adversarial writes


def adversarial_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, attacked: dict[str, pl.DataFrame], *,
                         batch_size: int, max_length: int, device: str) -> dict[str, float]:
    """Accuracy in percent on each attacked set and on both together.

    Args:
        model: a trained student with ``config.label2id``.
        tokenizer: its tokenizer.
        attacked: ``ATTACKS`` -> frame with text and the (true) label.
        batch_size, max_length, device: as ``predict_proba``.

    Returns:
        adv_add_accuracy, adv_replace_accuracy, adv_accuracy (every attacked sentence).
    """
    index = model.config.label2id
    correct = {}
    for name in ATTACKS:
        frame = attacked[name]
        probabilities = predict_proba(model, tokenizer, [t.split() for t in frame["text"]], batch_size=batch_size,
                                      max_length=max_length, device=device)
        correct[name] = probabilities.argmax(axis=1) == np.array([index[label] for label in frame["label"]])
    return {f"adv_{name}_accuracy": 100.0 * float(correct[name].mean()) for name in ATTACKS} | {
        "adv_accuracy": 100.0 * float(np.concatenate([correct[name] for name in ATTACKS]).mean())
    }
