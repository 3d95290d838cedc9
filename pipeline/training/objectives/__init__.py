"""The registry of training objectives: one line per objective.

Prior-free objectives (``baseline``; the siblings) train once per (setting, seed); prior-guided
ones (``needs_prior``: the CAP family's ``guided``, ``rrr``) once per prior as well. An objective is one
module under ``pipeline/training/objectives/`` (a subclass of ``base.Objective``) plus its line here; the
training loop, the stages, the report and the flow read everything else from it and from params.
The order of the lines is the order of the report's rows; the class attributes name the rows
(``display``), mark the paper's method (``paper``) and pair each row with its ablation (``ablation``).
"""

from __future__ import annotations

from dataclasses import fields

from pipeline.errors import ConfigError
from pipeline.training.objectives.agm import Agm, AgmRandom
from pipeline.training.objectives.align import Align, AlignFixed
from pipeline.training.objectives.base import Objective
from pipeline.training.objectives.baseline import Baseline
from pipeline.training.objectives.ex2l import Ex2l, Ex2lMultitask
from pipeline.training.objectives.guided import Guided
from pipeline.training.objectives.regex import Regex, RegexNoExplanation
from pipeline.training.objectives.rrr import Rrr

OBJECTIVES: dict[str, type[Objective]] = {
    "baseline": Baseline,
    "guided": Guided,
    "rrr": Rrr,
    "agm": Agm,
    "agm-random": AgmRandom,
    "regex": Regex,
    "regex-no-explanation": RegexNoExplanation,
    "ex2l": Ex2l,
    "ex2l-multitask": Ex2lMultitask,
    "align": Align,
    "align-fixed": AlignFixed,
}


def paper_objective() -> str | None:
    """The registered objective of the paper's prior rows (its class's ``paper``), None when none is marked."""
    return next((name for name, cls in OBJECTIVES.items() if cls.paper), None)


def objective_class(name: str) -> type[Objective]:
    """The class registered as ``name`` (its ``display`` and ``needs_prior``, before any settings)."""
    if name not in OBJECTIVES:
        raise ConfigError(f"student: unknown objective {name!r} (registered: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name]


def get_objective(name: str, **settings: object) -> Objective:
    """Instantiate a registered objective.

    Args:
        name: a key of ``OBJECTIVES``.
        settings: its settings (``student.settings.<name>`` in params.yaml).

    Returns:
        The objective.

    Raises:
        ConfigError: an unknown name or setting, naming the params key.
    """
    cls = objective_class(name)
    try:
        return OBJECTIVES[name](**settings)
    except TypeError:  # an unknown setting
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(known))
        raise ConfigError(
            f"student.settings.{name}: unknown setting {unknown[0] if unknown else '?'!r} (known: {', '.join(known) or 'none'})"
        ) from None
