"""AGM, attribution-guided masking (papers/agm-attribution-guided-masking.txt; SIBLINGS.md §1).

L = CE + lambda_mask * L_mask (+ lambda_cf * L_cf):
- a_t = e_t . d log p_y / d e_t, gradient x input of the gold label's log-probability, with dropout
  off and ``create_graph=True`` so that L_mask trains the parameters;
- S_b = the real tokens with |a_t| strictly above their sentence's ``quantile`` of |a| over the real
  tokens (padding and special tokens never enter the quantile), detached; an empty S_b takes the
  arg-max token;
- L_mask = mean over the batch of mean_{t in S_b} a_t^2, or with ``rrr`` Ross et al.'s penalty
  mean_{t in S_b} ||d sum_k log p_k / d e_t||^2, reduced the same way;
- L_cf (off by default): NT-Xent between the pooled representations of x and of x_cf, x with S_b
  replaced by the pad token, in-batch negatives, ``temperature``; pooled = the last layer's
  first-token state, what a BERT/RoBERTa head reads;
- ``AgmRandom`` (the ``agm-random`` ablation): S_b replaced by as many real tokens drawn uniformly
  (torch's generator, seeded by the training loop); its own class so that reports name it apart.

A zero weight skips its term entirely (nothing computed, nothing logged): with both weights 0 the
loss is the cross-entropy itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution.attribution import gradient_x_input
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.training.objectives.base import Ablation, Batch, Objective
from pipeline.training.objectives.selection import above_quantile, random_like, replace


@dataclass(frozen=True)
class Agm(Objective):
    """Cross-entropy plus the squared attribution of each sentence's most attributed tokens.

    Attributes:
        quantile: the per-sentence quantile of |a| over the real tokens above which tokens are penalised.
        lambda_mask: weight of L_mask.
        lambda_cf: weight of the counterfactual NT-Xent term (0: not computed).
        rrr: penalise the squared input gradient of sum_k log p_k on S_b instead of a_t^2.
        temperature: NT-Xent temperature.
    """

    display = "AGM"
    ablation = Ablation("random tokens", objective="agm-random")

    quantile: float = 0.75
    lambda_mask: float = 1.0
    lambda_cf: float = 0.0
    rrr: bool = False
    temperature: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.quantile < 1:
            raise ConfigError(f"agm: quantile must be in [0, 1), got {self.quantile}")
        self._check_non_negative("lambda_mask", "lambda_cf")
        if self.temperature <= 0:
            raise ConfigError(f"agm: temperature must be > 0, got {self.temperature}")

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        if self.lambda_mask == 0 and self.lambda_cf == 0:
            return ce, {}
        loss, terms = ce, {}
        with eval_mode(model):
            embeddings = model.get_input_embeddings()(batch.input_ids)
            log_probs = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask).logits.float().log_softmax(-1)
            penalise_attribution = self.lambda_mask > 0 and not self.rrr
            attribution = gradient_x_input(
                embeddings=embeddings, log_probs=log_probs, target=batch.labels,
                create_graph=penalise_attribution, retain_graph=self.lambda_mask > 0,
            )
            selected = self.select(attribution, real=batch.word_index >= 0)
            if self.lambda_mask > 0:
                if self.rrr:
                    (grad,) = torch.autograd.grad(log_probs.sum(), embeddings, create_graph=True)
                    per_token = grad.pow(2).sum(-1)
                else:
                    per_token = attribution.pow(2)
                mask = (per_token * selected).sum(1).div(selected.sum(1).clamp(min=1)).mean()
                loss = loss + self.lambda_mask * mask
                terms["mask"] = mask.item()
        if self.lambda_cf > 0:  # a training term, not an attribution: dropout as the loop has it
            counterfactual = replace(batch.input_ids, selected=selected, token_id=model.config.pad_token_id)
            hidden = model(
                input_ids=torch.cat([batch.input_ids, counterfactual]),
                attention_mask=batch.attention_mask.repeat(2, 1),
                output_hidden_states=True,
            ).hidden_states[-1]
            cf = nt_xent(hidden[:, 0].float(), temperature=self.temperature)
            loss = loss + self.lambda_cf * cf
            terms["cf"] = cf.item()
        return loss, terms

    def select(self, attribution: Tensor, *, real: Tensor) -> Tensor:
        """S: (B, T) bool, the tokens penalised, from the (B, T) attribution and the real-token mask."""
        return above_quantile(attribution.abs(), real=real, quantile=self.quantile)


class AgmRandom(Agm):
    """The ablation: AGM's loss on as many real tokens per sentence as AGM selects, drawn uniformly."""

    display = "AGM-random"
    ablation = None

    def select(self, attribution: Tensor, *, real: Tensor) -> Tensor:
        return random_like(super().select(attribution, real=real), real=real)


def nt_xent(representations: Tensor, *, temperature: float) -> Tensor:
    """NT-Xent (SimCLR) over 2B representations: row b and row b + B are a positive pair, every
    other row is a negative.

    Args:
        representations: (2B, D) the B originals followed by their B counterparts.
        temperature: the softmax temperature.

    Returns:
        Scalar, the mean over the 2B rows of -log softmax(cos / temperature)[positive].
    """
    z = F.normalize(representations, dim=-1)
    n = z.shape[0] // 2
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    similarity = (z @ z.T / temperature).masked_fill(eye, -torch.inf)  # a row is not its own negative
    positives = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(similarity, positives)
