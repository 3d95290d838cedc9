"""The prior sources, declared once: what each is called, who writes it, and whether it is a control.

``pipeline.priors.fusion`` derives its combinations and display names from this tuple, and
tests/priors/test_sources.py checks that each producer stage of dvc.yaml writes exactly its sources'
files (``pipeline.artifacts.prior_file``).
"""

from __future__ import annotations

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
    # the decoy benchmark's known right answer (pipeline.decoy); uniform on a dataset without decoys
    PriorSource(name="decoy_truth", display="Decoy truth (control)", producer="controls", control=True),
)
