"""Teacher diagnostics: does the LLM carry class signal, and do the priors agree with each other?

- ``zero_shot_accuracy``: the LLM as a classifier with the CAP prompt: arg-max over the label space
  of log p(label | prompt(sentence)), the same quantity the CAP prior regresses. Multi-token labels
  are scored by their summed log-probability, as in the prior.
- ``prior_agreement``: the mean per-sentence Spearman correlation between two priors' word scores.
- ``prior_decoy_mass``: on a decoy benchmark, the share of each prior's |mass| on the planted decoy
  word. The benchmark's question to the teacher: does the LLM's prior see through the shortcut?
- ``setting_diagnostics``: all of these, for one setting (the diagnostics stage's metric).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from pipeline.data.decoy import decoy_mass, decoy_positions
from pipeline.llm.base import Scorer
from pipeline.llm.cache import ScoreCache
from pipeline.prompts import PromptTemplate, build_query, split_prompt

COMPARED = ("cap", "lime", "ig", "oracle")  # the priors whose agreement is reported


def zero_shot_accuracy(
    *, sentences: pl.DataFrame, labels: Sequence[str], template: PromptTemplate, scorer: Scorer, cache: ScoreCache
) -> dict[str, float]:
    """The LLM's zero-shot accuracy on ``sentences`` with ``template`` (queries go through ``cache``).

    Args:
        sentences: text and label columns.
        labels: the label space in prompt order.
        template: the CAP prompt.
        scorer: the teacher LLM.
        cache: the score cache.

    Returns:
        ``zero_shot_accuracy`` and ``chance`` (100 / number of labels), in percent, and ``sentences``.
    """
    prefix, suffix_template = split_prompt(template, tokenizer=scorer.tokenizer, labels=list(labels))
    queries = [build_query(suffix_template, sentence=text, label=label) for text in sentences["text"] for label in labels]
    logprobs = cache.score_missing(scorer=scorer, prefix=prefix, queries=queries).reshape(len(sentences), len(labels))
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index[label] for label in sentences["label"]])
    return {
        "zero_shot_accuracy": 100.0 * float((logprobs.argmax(axis=1) == truth).mean()),
        "chance": 100.0 / len(labels),
        "sentences": len(sentences),
    }


def prior_agreement(priors: Mapping[str, pl.DataFrame]) -> dict[str, float]:
    """Mean per-sentence Spearman rho between every pair of priors.

    Sentences where either prior is constant (rho undefined) or that have fewer than 2 words are
    left out of that pair's mean.

    Args:
        priors: name -> priors-contract frame (id, words, scores) over the same sentences.

    Returns:
        ``"<a>~<b>"`` -> mean rho (NaN when no sentence qualifies), for each pair in the given order.
    """
    scores = {name: dict(zip(frame["id"], frame["scores"])) for name, frame in priors.items()}
    agreement = {}
    for a, b in itertools.combinations(priors, 2):
        rhos = []
        for sentence_id, left in scores[a].items():
            left, right = np.asarray(left), np.asarray(scores[b][sentence_id])
            if len(left) >= 2 and np.ptp(left) > 0 and np.ptp(right) > 0:
                rhos.append(spearmanr(left, right).statistic)
        agreement[f"{a}~{b}"] = float(np.mean(rhos)) if rhos else float("nan")
    return agreement


def prior_decoy_mass(priors: Mapping[str, pl.DataFrame], decoys: Sequence[str]) -> dict[str, float]:
    """The mean share of each prior's |score| on the decoy word, beside the share a uniform prior puts there.

    A prior that ignores the decoy puts ~0 there (the decoy_truth annotation puts exactly 0); one that
    follows the shortcut puts more than ``uniform``.

    Args:
        priors: name -> priors-contract frame (id, words, scores) of decoyed training sentences.
        decoys: the benchmark's decoy words.

    Returns:
        name -> mean share (``pipeline.data.decoy.decoy_mass``), and ``uniform``: mean 1 / number of words
        over the sentences that carry a decoy.
    """
    masses = {}
    for name, frame in priors.items():
        scores = [np.asarray(s, dtype=np.float64) for s in frame["scores"]]
        masses[name] = decoy_mass(scores, decoy_positions(frame["words"].to_list(), decoys))
    words = next(iter(priors.values()))["words"].to_list()
    masses["uniform"] = decoy_mass([np.ones(len(w)) for w in words], decoy_positions(words, decoys))
    return masses


def setting_diagnostics(
    *, test: pl.DataFrame, labels: Sequence[str], priors: Mapping[str, pl.DataFrame], template: PromptTemplate,
    scorer: Scorer, cache: ScoreCache, decoys: Sequence[str] = (),
) -> dict:
    """The teacher diagnostics of a setting: its zero-shot accuracy on the test split and the agreement of its priors.

    Args:
        test: text and label of the test split.
        labels: the label space in prompt order.
        priors: name (``COMPARED``) -> the setting's priors-contract frame.
        template: the CAP prompt.
        scorer: the teacher LLM.
        cache: the score cache.
        decoys: the decoy words of a decoy benchmark (empty: none).

    Returns:
        ``zero_shot_accuracy``'s keys, ``spearman``: ``prior_agreement`` of ``priors``, and on a decoy
        benchmark ``decoy_mass``: ``prior_decoy_mass`` of ``priors``.
    """
    teacher = zero_shot_accuracy(sentences=test, labels=labels, template=template, scorer=scorer, cache=cache)
    decoy = {"decoy_mass": prior_decoy_mass(priors, decoys)} if decoys else {}
    return teacher | {"spearman": prior_agreement(priors)} | decoy
