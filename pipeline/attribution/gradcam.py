"""Text Grad-CAM over a hidden layer of a BERT- or RoBERTa-style sequence classifier.

Grad-CAM (Selvaraju et al.) weights a layer's feature maps by the gradients of a class score
averaged over positions. Text form (SIBLINGS.md §3): H = a layer's hidden states (B, T, D),
w_k = mean over the non-padding tokens t of dz_k / dH_t, G_k,t = ReLU(H_t · w_k), divided by its
maximum over the real tokens (not special, not padding); special and padding tokens get 0.

Which layer. Both heads read the encoder only through the first token ([CLS], <s>): BERT's pooler
(dense + tanh) on the base model, RoBERTa's the same dense + tanh inside its classification head
(``roberta-base`` has no pooler). On the *last* layer dz_k / dH_t is therefore 0 for every t but
the first, w_k is the first token's gradient divided by the length, and G_k,t only says how far
token t's state happens to point along that one direction. No map is empty on a fresh MiniLM, but
training can turn them all off cheaply: eX2L's Dice emptied nearly every label map within 6 steps,
and even ERM leaves half the held-out label maps empty there (issue 22,
``bench/siblings_defects.py ex2l-maps``). On the layer before it (``layer=-2``, the default of eX2L
and ALIGN) every position reaches the logits through the last layer's attention, so w_k averages
real per-token gradients and G_k,t is the usual Grad-CAM (ERM: 8-17 % of held-out label maps empty).
``sequence_head`` splits either head into the pooled vector and the last linear layer, where eX2L's
confounder head reads the same vector. The map is differentiable in the parameters when
``create_graph`` is set (eX2L's Dice penalty, ALIGN's alignment term back-propagate through it).
eX2L and ALIGN share this one implementation.
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
    model: PreTrainedModel, *, attention_mask: Tensor, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None,
    layer: int = -1,
) -> tuple[Tensor, Tensor]:
    """One layer's hidden states and the pooled representation the classifier head reads.

    The logits are ``head.out(head.dropout(pooled))`` with ``head = sequence_head(model)``; in train
    mode the pooled vector carries the head's dropout draws (RoBERTa's first dropout) like the logits.

    Args:
        model: a BERT- or RoBERTa-style sequence classifier (:func:`sequence_head`).
        attention_mask: (B, T).
        input_ids: (B, T) token ids, or
        inputs_embeds: (B, T, D) word embeddings (the model adds positions itself).
        layer: which hidden states to return, indexed as ``output_hidden_states`` (0 = the embedding
            block's output, -1 = the last layer's, -2 = the layer before it).

    Returns:
        (hidden, pooled): (B, T, D) the chosen layer's states and (B, D), pooled from the last layer.
    """
    head = sequence_head(model)
    out = model.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           output_hidden_states=layer != -1)
    hidden = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    return hidden, head.pool(out.last_hidden_state)


def grad_cam_scores(*, hidden: Tensor, scores: Tensor, target: Tensor, attention_mask: Tensor, create_graph: bool) -> Tensor:
    """Grad-CAM's per-token scores before the ReLU: c_t = H_t · w_k, w_k = mean over non-padding t of dz_k / dH_t.

    Sentences must not interact inside the score (no batch statistics): the gradient of the summed
    target scores then gives each sentence's own gradient.

    Args:
        hidden: H, (B, T, D), part of the graph that computed ``scores`` (any layer).
        scores: z, (B, K) class scores (logits) computed from ``hidden``.
        target: (B,) the class k of each sentence.
        attention_mask: (B, T), 1 on non-padding tokens (the tokens averaged into w_k).
        create_graph: keep the graph so the scores are differentiable in the parameters.

    Returns:
        c, (B, T).
    """
    picked = scores.float().gather(1, target.unsqueeze(1)).sum()
    # retain_graph: the same H serves several heads, and the caller back-propagates through it
    (grad,) = torch.autograd.grad(picked, hidden, create_graph=create_graph, retain_graph=True)
    keep = attention_mask.unsqueeze(-1).to(grad.dtype)
    weights = (grad * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)
    return (hidden * weights.unsqueeze(1)).sum(-1)


def grad_cam_map(raw: Tensor, *, real: Tensor, shift: bool = False) -> Tensor:
    """G = ReLU(c) / its maximum over the real tokens, 0 off them.

    Args:
        raw: c, (B, T) from :func:`grad_cam_scores`.
        real: (B, T) bool, the tokens the map is defined on (not special, not padding).
        shift: subtract c's minimum over the real tokens before the ReLU (a floor at the least
            supporting token): the map then spans [0, 1] on every sentence whose tokens do not all
            score the same, and cannot be switched off by pushing every score below 0.

    Returns:
        G, (B, T) in [0, 1]; the maximum over each sentence's real tokens is 1 unless the whole map is 0.
    """
    if shift:
        raw = raw - raw.masked_fill(~real, torch.inf).amin(1, keepdim=True).nan_to_num(0.0, posinf=0.0)
    cam = torch.relu(raw) * real
    peak = cam.amax(1, keepdim=True)
    return cam / peak.clamp(min=torch.finfo(cam.dtype).tiny)


def text_grad_cam(
    *, hidden: Tensor, scores: Tensor, target: Tensor, attention_mask: Tensor, real: Tensor, create_graph: bool,
    shift: bool = False,
) -> Tensor:
    """Grad-CAM map of the ``target`` class score over the tokens: :func:`grad_cam_map` of :func:`grad_cam_scores`.

    Returns:
        G, (B, T) in [0, 1]: 0 off ``real``; the maximum over each sentence's real tokens is 1
        unless the whole map is 0.
    """
    raw = grad_cam_scores(hidden=hidden, scores=scores, target=target, attention_mask=attention_mask,
                          create_graph=create_graph)
    return grad_cam_map(raw, real=real, shift=shift)


def empty_maps(values: Tensor, *, real: Tensor) -> Tensor:
    """(B,) bool: the sentences with real tokens where no real token is positive, i.e. whose plain (unshifted)
    Grad-CAM map is all zero. ``values``: (B, T) Grad-CAM scores c or a plain map G."""
    return real.any(1) & ~((values > 0) & real).any(1)
