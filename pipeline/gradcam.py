"""Text Grad-CAM over the last hidden states of a BERT- or RoBERTa-style sequence classifier.

Grad-CAM (Selvaraju et al.) weights a layer's feature maps by the gradients of a class score
averaged over positions. Text form (SIBLINGS.md §3): H = the last hidden states (B, T, D),
w_k = mean over the non-padding tokens t of dz_k / dH_t, G_k,t = ReLU(H_t · w_k), divided by its
maximum over the real tokens (not special, not padding); special and padding tokens get 0.

Both heads read H only through the first token ([CLS], <s>): BERT's pooler (dense + tanh) on the
base model, RoBERTa's the same dense + tanh inside its classification head (``roberta-base`` has
no pooler). So w_k is dz_k / dH_first divided by the sentence length and G_k,t is how far token
t's state points along the direction that raises z_k. ``sequence_head`` splits either head into
that pooled vector and the last linear layer, where eX2L's confounder head reads the same vector.
The map is differentiable in the parameters when ``create_graph`` is set (eX2L's Dice penalty,
ALIGN's alignment term back-propagate through it). eX2L and ALIGN share this one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel


@dataclass(frozen=True)
class SequenceHead:
    """A sequence classifier's head as pool -> dropout -> out: ``logits = out(dropout(pool(H)))``, in either mode.

    Attributes:
        pool: (B, T, D) last hidden states -> (B, D) the pooled vector (the first token's dense + tanh).
        dropout: the dropout before the last layer (identity in eval mode).
        out: the last linear layer, D -> classes; a sibling head (eX2L's confounder head) replaces it.
    """

    pool: Callable[[Tensor], Tensor]
    dropout: nn.Module
    out: nn.Linear


def sequence_head(model: PreTrainedModel) -> SequenceHead:
    """Split ``model``'s classification head (BERT: pooler + classifier; RoBERTa: ``RobertaClassificationHead``).

    Args:
        model: a ``BertForSequenceClassification`` or ``RobertaForSequenceClassification`` (or one shaped alike).

    Returns:
        Its :class:`SequenceHead`.

    Raises:
        TypeError: the model has neither head.
    """
    classifier = getattr(model, "classifier", None)
    pooler = getattr(model.base_model, "pooler", None)
    if isinstance(pooler, nn.Module) and isinstance(classifier, nn.Linear):  # BERT: the pooler sits on the base model
        return SequenceHead(pool=pooler, dropout=model.dropout, out=classifier)
    if all(isinstance(getattr(classifier, name, None), nn.Module) for name in ("dense", "dropout", "out_proj")):
        # RoBERTa: out_proj(dropout(tanh(dense(dropout(H[:, 0]))))), all inside the head
        return SequenceHead(pool=lambda hidden: torch.tanh(classifier.dense(classifier.dropout(hidden[:, 0]))),
                            dropout=classifier.dropout, out=classifier.out_proj)
    raise TypeError(f"{type(model).__name__}: neither a BERT pooler + classifier nor a RoBERTa classification head; "
                    "text Grad-CAM reads one of them")


def hidden_and_pooled(
    model: PreTrainedModel, *, attention_mask: Tensor, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The encoder's last hidden states and the pooled representation the classifier head reads.

    The logits are ``head.out(head.dropout(pooled))`` with ``head = sequence_head(model)``; in train
    mode the pooled vector carries the head's dropout draws (RoBERTa's first dropout) like the logits.

    Args:
        model: a BERT- or RoBERTa-style sequence classifier (:func:`sequence_head`).
        attention_mask: (B, T).
        input_ids: (B, T) token ids, or
        inputs_embeds: (B, T, D) word embeddings (the model adds positions itself).

    Returns:
        (hidden, pooled): (B, T, D) and (B, D).
    """
    head = sequence_head(model)
    hidden = model.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
    return hidden, head.pool(hidden)


def text_grad_cam(
    *, hidden: Tensor, scores: Tensor, target: Tensor, attention_mask: Tensor, real: Tensor, create_graph: bool
) -> Tensor:
    """Grad-CAM map of the ``target`` class score over the tokens.

    Sentences must not interact inside the score (no batch statistics): the gradient of the summed
    target scores then gives each sentence's own gradient.

    Args:
        hidden: H, (B, T, D), part of the graph that computed ``scores``.
        scores: z, (B, K) class scores (logits) computed from ``hidden``.
        target: (B,) the class k of each sentence.
        attention_mask: (B, T), 1 on non-padding tokens (the tokens averaged into w_k).
        real: (B, T) bool, the tokens the map is defined on (not special, not padding).
        create_graph: keep the graph so the map is differentiable in the parameters.

    Returns:
        G, (B, T) in [0, 1]: 0 off ``real``; the maximum over each sentence's real tokens is 1
        unless the whole map is 0.
    """
    picked = scores.float().gather(1, target.unsqueeze(1)).sum()
    # retain_graph: the same H serves several heads, and the caller back-propagates through it
    (grad,) = torch.autograd.grad(picked, hidden, create_graph=create_graph, retain_graph=True)
    keep = attention_mask.unsqueeze(-1).to(grad.dtype)
    weights = (grad * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)
    cam = torch.relu((hidden * weights.unsqueeze(1)).sum(-1)) * real
    peak = cam.amax(1, keepdim=True)
    return cam / peak.clamp(min=torch.finfo(cam.dtype).tiny)
