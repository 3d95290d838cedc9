"""Text Grad-CAM over the last hidden states of a BERT-style sequence classifier.

Grad-CAM (Selvaraju et al.) weights a layer's feature maps by the gradients of a class score
averaged over positions. Text form (SIBLINGS.md §3): H = the last hidden states (B, T, D),
w_k = mean over the non-padding tokens t of dz_k / dH_t, G_k,t = ReLU(H_t · w_k), divided by its
maximum over the real tokens (not special, not padding); special and padding tokens get 0.

With a BERT pooler the score reads H only through [CLS], so w_k is dz_k / dH_[CLS] divided by the
sentence length and G_k,t is how far token t's state points along the direction that raises z_k.
The map is differentiable in the parameters when ``create_graph`` is set (eX2L's Dice penalty,
ALIGN's alignment term back-propagate through it). eX2L and ALIGN share this one implementation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel


def hidden_and_pooled(
    model: PreTrainedModel, *, attention_mask: Tensor, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The encoder's last hidden states and the pooled representation the classifier head reads.

    For ``BertForSequenceClassification`` the logits are ``model.classifier(model.dropout(pooled))``;
    the pooled vector is ``model.base_model.pooler(H)`` (dense + tanh on [CLS]).

    Args:
        model: a BERT-style sequence classifier (its base model has a pooler).
        attention_mask: (B, T).
        input_ids: (B, T) token ids, or
        inputs_embeds: (B, T, D) word embeddings (the model adds positions itself).

    Returns:
        (hidden, pooled): (B, T, D) and (B, D).
    """
    pooler = getattr(model.base_model, "pooler", None)
    if not isinstance(pooler, nn.Module):
        raise TypeError(f"{type(model).__name__} has no pooler on its base model; text Grad-CAM here needs a BERT-style head")
    hidden = model.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
    return hidden, pooler(hidden)


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
