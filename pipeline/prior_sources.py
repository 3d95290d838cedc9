"""The prior sources and their combinations, declared once: names, display names, producers, controls.

Every non-empty subset of the real sources (IG, LIME, CAP) is a combination; each control is its
own single combination. Pure declarations, no torch: ``pipeline.params`` checks ``student.priors``
against ``COMBINATIONS`` when params.yaml loads, ``pipeline.priors.fusion`` fuses them, the report
names its rows with ``DISPLAY_NAMES``, and tests/pipeline/test_prior_sources.py checks that each
producer stage of dvc.yaml writes exactly its sources' files (``pipeline.artifacts.prior_file``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PriorSource:
    """One prior source.

    Attributes:
        name: its file stem under data/priors/<dataset>/<setting>/ and its name as a combination.
        display: its name in reports and pictures.
        producer: the dvc.yaml stage that writes it.
        control: a control prior (never fused; trained alone to check whether any prior helps).
    """

    name: str
    display: str
    producer: str
    control: bool = False


SOURCES = (
    PriorSource(name="ig", display="IG", producer="ig_prior"),
    PriorSource(name="lime", display="LIME", producer="priors"),
    PriorSource(name="cap", display="CAP", producer="priors"),
    PriorSource(name="oracle", display="Oracle IG (control)", producer="controls", control=True),
    PriorSource(name="random", display="Random (control)", producer="controls", control=True),
    # the decoy benchmark's known right answer (pipeline.data.decoy); uniform on a dataset without decoys
    PriorSource(name="decoy_truth", display="Decoy truth (control)", producer="controls", control=True),
)
CONTROLS = tuple(source.name for source in SOURCES if source.control)
_FUSED = [source for source in SOURCES if not source.control]
# every non-empty subset of the fused sources, smaller first, named by its sources in name order
_SUBSETS = {
    "+".join(source.name for source in subset): subset
    for size in range(1, len(_FUSED) + 1)
    for subset in (sorted(drawn, key=lambda source: source.name) for drawn in itertools.combinations(_FUSED, size))
}
HYBRID = next(reversed(_SUBSETS))  # all of them
COMBINATIONS: dict[str, tuple[str, ...]] = {
    name: tuple(source.name for source in subset) for name, subset in _SUBSETS.items()
} | {name: (name,) for name in CONTROLS}
DISPLAY_NAMES = (
    {name: "+".join(source.display for source in subset) for name, subset in _SUBSETS.items()}
    | {HYBRID: "CAP Hybrid"}  # the paper's name
    | {source.name: source.display for source in SOURCES if source.control}
)
