"""Training objectives: one class per method, one registry line per name.

The training loop computes the logits and the cross-entropy of a batch and hands them to the
method, which returns the total loss to back-propagate and the extra terms to log. A new
objective (AGM, REGEX, eX2L, ALIGN) is a new class with a ``loss`` method plus a line in
``METHODS``; the loop does not change.

- ``baseline``: cross-entropy only (beta = 0). It logs no ``align`` term (NaN in the log).
- guided, one name per prior combination (``ig``, ``cap``, ..., ``cap+ig+lime``):
  L = CE + beta * L_align, L_align = MSE(normalise(a_s), normalise(a_p)) over the real words of
  each sentence, then averaged over the batch. a_s is the student's word-level IG of the
  true-label logit (m steps, create_graph=True), a_p the prior.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from torch import Tensor
from transformers import PreTrainedModel

from pipeline.attribution import integrated_gradients, pad_baseline, tokens_to_words
from pipeline.errors import ConfigError
from pipeline.priors.fusion import COMBINATIONS, Normalisation, normalise


@dataclass(frozen=True)
class Batch:
    """One training batch on the model's device.

    Attributes:
        input_ids: (B, T) token ids.
        attention_mask: (B, T).
        labels: (B,) class ids.
        word_index: (B, T) word of each token, -1 for special and padding tokens.
        prior: (B, W) word scores padded with 0 (W = most words in the batch), or None for
            methods without a prior.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    word_index: Tensor
    prior: Tensor | None


class Method(Protocol):
    """A training objective.

    Attributes:
        name: the registry name.
        needs_prior: the prior combination the batches must carry, or None.
    """

    name: str
    needs_prior: str | None

    def loss(
        self, *, model: PreTrainedModel, batch: Batch, logits: Tensor, ce: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Return the loss to back-propagate and the named terms to log (besides ce and loss)."""
        ...


@dataclass(frozen=True)
class Baseline:
    """Cross-entropy only."""

    name: str = "baseline"
    needs_prior: str | None = None

    def loss(
        self, *, model: PreTrainedModel, batch: Batch, logits: Tensor, ce: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        return ce, {}


@dataclass(frozen=True)
class Guided:
    """Cross-entropy plus beta times the MSE between the student's own IG and the prior.

    Both sides are normalised per sentence over the words the model sees (truncated words are
    left out of both), so a fused prior and a truncated sentence stay on the student's scale.
    The self-attribution is taken with dropout off: IG's path integral is only defined for one
    fixed function, not a fresh dropout mask at every interpolation point.

    Attributes:
        name, needs_prior: the prior combination.
        beta: weight of the alignment term.
        steps: m, interpolation steps of the differentiable IG.
        normalisation: ``"l2"`` or ``"minmax"`` (``pipeline.priors.fusion.normalise``).
    """

    name: str
    needs_prior: str
    beta: float = 1.0
    steps: int = 8
    normalisation: Normalisation = "l2"

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"method {self.name}: beta must be >= 0, got {self.beta}")
        if self.steps < 1:
            raise ConfigError(f"method {self.name}: steps must be >= 1, got {self.steps}")
        if self.normalisation not in ("l2", "minmax"):
            raise ConfigError(f"method {self.name}: normalisation must be 'l2' or 'minmax', got {self.normalisation!r}")

    def loss(
        self, *, model: PreTrainedModel, batch: Batch, logits: Tensor, ce: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        if batch.prior is None:
            raise ValueError(f"method {self.name}: the batch carries no prior")
        was_training = model.training
        model.eval()
        try:
            tokens = integrated_gradients(
                model,
                input_ids=batch.input_ids,
                baseline_ids=pad_baseline(
                    input_ids=batch.input_ids,
                    word_index=batch.word_index,
                    pad_token_id=model.config.pad_token_id,
                ),
                attention_mask=batch.attention_mask,
                target=batch.labels,
                steps=self.steps,
                create_graph=True,
            )
        finally:
            model.train(was_training)
        own, mask = tokens_to_words(tokens, batch.word_index, n_words=batch.prior.shape[1])
        own = normalise(own, method=self.normalisation, mask=mask)
        prior = normalise(batch.prior.to(own.dtype), method=self.normalisation, mask=mask)
        per_sentence = ((own - prior) ** 2 * mask).sum(1) / mask.sum(1).clamp(min=1)
        align = per_sentence.mean()
        return ce + self.beta * align, {"align": align.item()}


METHODS: dict[str, Callable[..., Method]] = {
    "baseline": Baseline,
    **{name: partial(Guided, name=name, needs_prior=name) for name in COMBINATIONS},
}


def get_method(name: str, **params: object) -> Method:
    """Instantiate a registered method.

    Args:
        name: a key of ``METHODS``.
        params: the method's settings (e.g. ``beta``, ``steps``, ``normalisation`` for guided ones).

    Returns:
        The method.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    try:
        return METHODS[name](**params)
    except TypeError as exc:  # an unknown or missing setting
        raise ConfigError(f"method {name}: {exc}") from None
