"""What every training objective declares and receives: batches, phases, extra modules, the task.

A trained student is (objective, prior or none, seed). The training loop (``pipeline.training.training``)
knows nothing about any objective: it builds the batches with the columns the objective asks for,
creates and optimises the extra modules it declares, and runs its phases in order for every batch.
Baseline and the guided CAP family are one phase that updates the classifier; eX2L adds a head,
ALIGN a second model with its own phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Batch:
    """One training batch on the model's device.

    Attributes:
        input_ids: (B, T) token ids.
        attention_mask: (B, T).
        labels: (B,) class ids.
        word_index: (B, T) word of each token, -1 for special and padding tokens.
        words: the B sentences' whitespace words (``word_index`` indexes them).
        prior: (B, W) word scores padded with 0 (W = most words in the batch), or None for
            objectives without a prior.
        columns: each extra column the objective declared, as (B,) ids: the index of the row's value
            in ``Task.column_values[name]``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    word_index: Tensor
    words: Sequence[Sequence[str]] = ()
    prior: Tensor | None = None
    columns: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    """One update of a training step.

    Attributes:
        name: passed to ``Objective.loss`` as ``phase``.
        updates: what this phase optimises: ``"model"`` (the classifier) and/or extra module names;
            everything else is frozen while it runs.
        start_epoch: the phase is skipped in earlier epochs (0-based), e.g. after a warm-up.
    """

    name: str
    updates: tuple[str, ...] = ("model",)
    start_epoch: int = 0


@dataclass(frozen=True)
class ExtraModule:
    """A module an objective trains beside the classifier, saved with its checkpoint.

    Attributes:
        module: the network (moved to the student's device by the loop).
        lr: its peak learning rate; None = the student's.
    """

    module: nn.Module
    lr: float | None = None


@dataclass(frozen=True)
class Task:
    """What an objective may size its modules by.

    Attributes:
        num_labels: classes of the classifier.
        column_values: for each extra column, its distinct values in the training data, sorted
            (a batch's ``columns[name]`` indexes this).
    """

    num_labels: int
    column_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Ablation:
    """What an objective's rows are compared with in the report's ablation table: the same method with
    what it adds taken away, trained on the same settings and seeds.

    The ablation row is (``objective`` or the row's own objective, ``prior`` or the row's own prior). An
    ablation that is its own class (``agm-random``) carries its overrides as its class's defaults and is
    asked for like any objective, by listing it in ``student.objectives`` (or ``student.prior_objectives``)
    with its ``student.settings`` entry; an ablation by prior (``random``) by listing that prior.

    Attributes:
        what: what the ablation takes away, in the report ("random tokens", "random prior", ...).
        objective: the ablation's registered objective; None = the row's own.
        prior: the ablation's prior (a combination or control of ``pipeline.priors.fusion``); None = the
            row's own (none for a prior-free row).
    """

    what: str
    objective: str | None = None
    prior: str | None = None

    def row(self, objective: str, prior: str | None) -> tuple[str, str | None] | None:
        """The (objective, prior) the row (``objective``, ``prior``) pairs with; None when that is the row itself."""
        pair = (self.objective or objective, self.prior or prior)
        return None if pair == (objective, prior) else pair


class Objective:
    """A training objective. Subclasses are frozen dataclasses whose fields are its settings
    (params.yaml ``student.settings.<name>``), checked in ``__post_init__``.

    The report reads the class attributes: its rows come in the registry's order
    (``pipeline.training.objectives.OBJECTIVES``), each objective's prior rows in the priors' order.

    Attributes:
        display: the name in reports.
        needs_prior: whether batches carry a prior (the objective is trained once per prior).
        paper: the paper's method (one objective): its prior rows are the paper's rows, named by their
            prior alone ("CAP Hybrid"), and its CAP Hybrid row is compared with the paper's figures.
        ablation: the row each of its rows is paired with in the report's ablation table; None = none.
        fit_terms: logged terms the report's training-fit table shows beside the CE (mean over the last
            quarter of steps): what says whether the objective's own mechanism worked (ALIGN's mask).
    """

    display: ClassVar[str]
    needs_prior: ClassVar[bool] = False
    paper: ClassVar[bool] = False
    ablation: ClassVar[Ablation | None] = None
    fit_terms: ClassVar[tuple[str, ...]] = ()

    def _check_non_negative(self, *names: str) -> None:
        """Refuse a negative setting, naming the objective (its registry prefix) and the setting."""
        for name in names:
            if getattr(self, name) < 0:
                raise ConfigError(f"{type(self).__name__.lower()}: {name} must be >= 0, got {getattr(self, name)}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Dataset columns (besides text and label) the batches carry."""
        return ()

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The updates of one step, in order."""
        return (Phase("main"),)

    def modules(self, *, model: PreTrainedModel, task: Task) -> dict[str, ExtraModule]:
        """Extra trainable modules, created after the student is loaded and seeded; each must be updated by a phase."""
        return {}

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        """The loss to back-propagate in ``phase`` and the named terms to log (besides loss and ce).

        Args:
            model: the classifier, in train mode.
            modules: the extra modules by name.
            batch: the batch.
            logits: (B, C) the classifier's logits on the batch in this phase.
            ce: the mean cross-entropy of ``logits``.
            phase: the phase's name.
            epoch: the current epoch, 0-based.
        """
        raise NotImplementedError
