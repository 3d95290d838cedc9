"""LLM scoring: log p(label | prompt) through a pluggable backend, and the content-addressed score cache."""

from pipeline.scoring.base import Scorer, ScoringError
from pipeline.scoring.factory import make_scorer, scorer_from_params

__all__ = ["Scorer", "ScoringError", "make_scorer", "scorer_from_params"]
