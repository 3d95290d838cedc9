"""Right for the Right Reasons (Ross et al. 2017): cross-entropy plus an input-gradient penalty on irrelevant words.

L = CE + lambda * mean_b sum_w A_bw * ||d sum_k log p_k / d e_bw||^2, with e_bw the word's token
embeddings (the squared norm summed over its tokens) and A the annotation of irrelevant words. From
a prior, A = 1 - minmax(|prior|) per sentence: 1 where the prior gives a word nothing, 0 on its top
word. With the ``decoy_truth`` prior (0 on the decoy, uniform elsewhere) A is exactly the decoy
protocol's mask: 1 on the decoy, 0 on every other word. It is the decoy benchmark's reference method.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.attribution.attribution import word_gradient_norms
from pipeline.models import eval_mode
from pipeline.priors.fusion import normalise
from pipeline.training.objectives.base import Ablation, Objective


@dataclass(frozen=True)
class Rrr(Objective):
    """Cross-entropy plus ``lam`` times the squared input gradient of sum_k log p_k on the words the prior calls irrelevant.

    The gradient is taken with dropout off, like every objective's auxiliary attribution.

    Attributes:
        lam: the penalty's weight (Ross et al.'s lambda_1).
    """

    display = "RRR"
    needs_prior = True
    ablation = Ablation("random prior", prior="random")
    lam: float = 100.0

    def __post_init__(self) -> None:
        self._check_non_negative("lam")

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        if batch.prior is None:
            raise ValueError("rrr: the batch carries no prior")
        with eval_mode(model):
            norms, mask = word_gradient_norms(
                model, input_ids=batch.input_ids, attention_mask=batch.attention_mask, word_index=batch.word_index,
                n_words=batch.prior.shape[1], output=lambda out: out.log_softmax(-1).sum(-1), create_graph=True,
            )
        irrelevant = (1 - normalise(batch.prior.abs().to(norms.dtype), method="minmax", mask=mask)) * mask
        penalty = (irrelevant * norms**2).sum(1).mean()
        return ce + self.lam * penalty, {"align": penalty.item()}
