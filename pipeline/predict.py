"""Batched class probabilities of a trained student (evaluation, attacks, heatmaps)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipeline.attribution import encode_words


@torch.no_grad()
def predict_proba(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[Sequence[str]],
    *,
    batch_size: int,
    device: str | torch.device,
    max_length: int = 128,
) -> np.ndarray:
    """Class probabilities for pre-split sentences, in float32 on every device (no autocast):
    small probability differences feed the faithfulness metrics.

    Args:
        model: a sequence classifier (put in eval mode, restored afterwards).
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        batch_size: sentences per forward pass.
        device: where to run.
        max_length: tokens per sentence.

    Returns:
        (N, C) float64 probabilities.
    """
    was_training = model.training
    model.to(device).eval()
    out = []
    for start in range(0, len(sentences), batch_size):
        encoding, _ = encode_words(tokenizer, sentences[start : start + batch_size], max_length=max_length, device=device)
        logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
        out.append(logits.float().softmax(-1).cpu().double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))
