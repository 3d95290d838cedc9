"""eX2L: contrastive explanations against a confounder (SIBLINGS.md §3, text form).

A confounder head h_c (``nn.Linear(hidden, n_values)``) reads the same pooled representation as
the label head. Both heads' text Grad-CAM maps (``pipeline.attribution.gradcam``) are pushed apart:

    L = CE_y + mu * CE_c + lambda * Dice(G_y, G_c),
    Dice = 2 sum_t G_y G_c / (sum_t G_y^2 + sum_t G_c^2) over the real tokens, averaged over the batch,

with G_y the label head's map for the gold label y and G_c the confounder head's map for the
example's confounder value c. CE_y is the loop's cross-entropy; CE_c comes from a second
train-mode forward (dropout on, like CE_y); the maps from an eval-mode forward (dropout off, as
every auxiliary attribution here). With lambda = 0 the loss is exactly plain multitask learning
CE_y + mu * CE_c; the maps are then still computed, without a graph, to log the Dice.

Two choices against the degenerate optimum issue 22 found (the Dice met by all-zero maps: 50 % of a
batch's maps within 6 steps, every held-out label map after 30; bench/siblings_defects.py ex2l-maps):
- the maps are Grad-CAM on the layer before the last (``layer = -2``), where every token's state
  reaches the logits; on the last layer only [CLS]'s does (``pipeline.attribution.gradcam``);
- each map has a floor (``map_floor``): its minimum over the sentence's real tokens is subtracted
  before Grad-CAM's ReLU, so the least supporting token scores 0 and the most 1. A map can no longer
  be switched off by pushing every token's score below 0; the Dice is lowered only by ranking
  different tokens first in the two maps.
Logged: ``dice`` and ``empty_maps``, the share of the batch's label and confounder maps that are all
zero without the floor (the plain ReLU Grad-CAM on ``layer``, the quantity issue 22 measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution.gradcam import empty_maps, grad_cam_map, grad_cam_scores, hidden_and_pooled, sequence_head
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.training.objectives.base import Ablation, Batch, ExtraModule, Objective, Phase, Task


def dice(first: Tensor, second: Tensor, *, mask: Tensor) -> Tensor:
    """Soft Dice similarity of two non-negative maps per sentence (differentiable).

    Args:
        first, second: (B, T) maps.
        mask: (B, T) bool, the positions compared.

    Returns:
        (B,) 2 sum(a b) / (sum(a^2) + sum(b^2)): 1 for identical maps, 0 for disjoint ones
        (and for two all-zero maps).
    """
    a, b = first * mask, second * mask
    denominator = (a * a).sum(1) + (b * b).sum(1)
    return 2 * (a * b).sum(1) / denominator.clamp(min=1e-12)


@dataclass(frozen=True)
class Ex2l(Objective):
    """eX2L: CE_y + mu CE_c + lambda Dice(G_y, G_c) with a confounder head (the extra module ``confounder``).

    Attributes:
        confounder: the dataset column holding the confounder (e.g. ``category``), carried by the
            batches (``data.datasets.<name>.columns`` must keep it).
        mu: weight of the confounder head's cross-entropy.
        lam: lambda, weight of the Dice penalty; 0 is plain multitask learning.
        layer: the hidden states Grad-CAM reads, indexed as ``output_hidden_states`` (-1 = the last
            layer's, where only [CLS] reaches the logits; -2 = the layer before).
        map_floor: subtract each map's minimum over the real tokens before the ReLU (``text_grad_cam``'s
            ``shift``); False is SIBLINGS' literal map, which training empties.
    """

    display = "eX2L"
    ablation = Ablation("λ = 0 (multitask)", objective="ex2l-multitask")
    fit_terms = ("dice", "empty_maps")  # Dice met by switching the maps off is not met
    confounder: str = "category"
    mu: float = 1.0
    lam: float = 1.0
    layer: int = -2
    map_floor: bool = True

    def __post_init__(self) -> None:
        if not self.confounder:
            raise ConfigError("ex2l: confounder must name a dataset column")
        self._check_non_negative("mu", "lam")
        if self.layer >= 0:
            raise ConfigError(f"ex2l: layer counts from the last (-1, -2, ...), got {self.layer}")

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.confounder,)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return (Phase("main", updates=("model", "confounder")),)  # one step trains both heads and the encoder

    def modules(self, *, model: PreTrainedModel, task: Task) -> dict[str, ExtraModule]:
        """h_c: a linear head over the pooled representation, one output per confounder value."""
        n_values = len(task.column_values[self.confounder])
        if n_values < 2:
            raise ConfigError(f"ex2l: column {self.confounder!r} has {n_values} value(s); a confounder needs 2 or more")
        return {"confounder": ExtraModule(nn.Linear(model.config.hidden_size, n_values))}

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        head, confounders, real = modules["confounder"], batch.columns[self.confounder], batch.word_index >= 0
        classifier = sequence_head(model)  # BERT or RoBERTa: h_c takes the place of its last layer
        _, pooled = hidden_and_pooled(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        ce_confounder = F.cross_entropy(head(classifier.dropout(pooled)).float(), confounders)
        with eval_mode(model):
            hidden, pooled = hidden_and_pooled(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                               layer=self.layer)
            raws = [grad_cam_scores(hidden=hidden, scores=scores, target=target, attention_mask=batch.attention_mask,
                                    create_graph=self.lam > 0)
                    for scores, target in ((classifier.out(pooled), batch.labels), (head(pooled), confounders))]
        maps = [grad_cam_map(raw, real=real, shift=self.map_floor) for raw in raws]
        similarity = dice(*maps, mask=real).mean()
        loss = ce + self.mu * ce_confounder
        if self.lam > 0:  # lambda = 0 stays bitwise the multitask loss
            loss = loss + self.lam * similarity
        empty = torch.cat([empty_maps(raw, real=real) for raw in raws]).float().mean()
        return loss, {"ce_confounder": ce_confounder.item(), "dice": similarity.item(), "empty_maps": empty.item()}


@dataclass(frozen=True)
class Ex2lMultitask(Ex2l):
    """The ablation: eX2L with lambda = 0, plain multitask learning CE_y + mu CE_c (the Dice only logged);
    its own class so that reports name it apart."""

    display = "Multitask (eX2L, λ = 0)"
    ablation = None
    lam: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam != 0:
            raise ConfigError(f"ex2l-multitask: lam is 0 by definition (got {self.lam}); use ex2l for a Dice penalty")
