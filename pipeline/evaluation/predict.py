"""Batched class probabilities of a trained student (evaluation, attacks, heatmaps)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipeline.attribution.attribution import encode_words, length_batches
from pipeline.progress import progress


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
        batch_size: sentences per forward pass (batched by length; rows come back in input order).
        device: where to run.
        max_length: tokens per sentence.

    Returns:
        (N, C) float64 probabilities.
    """
    was_training = model.training
    model.to(device).eval()
    out = np.zeros((len(sentences), model.config.num_labels))
    with progress(total=len(sentences), desc="prediction", unit="sentences") as update:
        for rows in length_batches(sentences, batch_size=batch_size):
            encoding, _ = encode_words(tokenizer, [sentences[i] for i in rows], max_length=max_length, device=device)
            logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
            out[rows] = logits.float().softmax(-1).cpu().double().numpy()
            update(len(rows))
    model.train(was_training)
    return out
