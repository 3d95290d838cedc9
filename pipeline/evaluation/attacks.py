"""The adversarial test sets of a setting: keyword addition and keyword replacement.

Class keywords come from the setting's CAP priors. ``adversarial.generator: rules`` edits the
sentences deterministically (``adversarial.seed``; ``pipeline.evaluation.adversarial``); ``llm`` has the
scoring LLM rewrite them and keeps the rule-based text where a rewrite fails the check
(``pipeline.evaluation.adversarial_llm``). Each row records the generator that made it (``generator``).
"""

from __future__ import annotations

import polars as pl

from pipeline.artifacts import ATTACKS
from pipeline.data.perturb import sentence_rng
from pipeline.evaluation.adversarial import class_keywords, class_overlap, make_adversarial, target_classes
from pipeline.evaluation.adversarial_llm import llm_rewrite
from pipeline.llm.base import Scorer
from pipeline.llm.cache import GenerationCache
from pipeline.params import AdversarialParams

DEFAULT_TARGETS_PER_CLASS = 2


def adversarial_sets(
    *, train: pl.DataFrame, cap: pl.DataFrame, test: pl.DataFrame, dataset: str, params: AdversarialParams,
    llm: Scorer | None = None, cache: GenerationCache | None = None,
) -> dict[str, pl.DataFrame]:
    """Keywords per class from CAP scores, the most overlapping target classes, then the two attacks.

    Args:
        train: id, label of the setting's training sentences.
        cap: their CAP priors (priors contract).
        test: id, text, label of the test split (the sentences attacked).
        dataset: the dataset's name (``targets_per_class`` key and the target draw's seed).
        params: ``adversarial``.
        llm: the rewriting LLM; required when ``params.generator`` is "llm", unused otherwise.
        cache: its generations across runs; required with ``llm``.

    Returns:
        {"add": frame, "replace": frame} with id, text, label, source_id, target_class, generator,
        llm_output (null under the rules generator).
    """
    if params.generator == "llm" and (llm is None or cache is None):
        raise ValueError("adversarial_sets: generator 'llm' needs the LLM and a generation cache")
    joined = cap.join(train.select("id", "label"), on="id", how="inner")
    keywords = class_keywords(labels=joined["label"].to_list(), words=joined["words"].to_list(),
                              scores=[s.to_numpy() for s in joined["scores"]], top_k=params.keywords_per_class)
    per_class = params.targets_per_class.get(dataset, DEFAULT_TARGETS_PER_CLASS)
    rng = sentence_rng(seed=params.seed, sentence_id=dataset)
    targets = target_classes(class_overlap(keywords), per_class=per_class, rng=rng)
    sets = dict(zip(ATTACKS, make_adversarial(test, keywords, targets, seed=params.seed), strict=True))
    if params.generator == "rules":
        return {name: frame.with_columns(pl.lit("rules").alias("generator"), pl.lit(None, pl.String).alias("llm_output"))
                for name, frame in sets.items()}
    templates = {"add": params.llm.add_template, "replace": params.llm.replace_template}
    return {
        name: llm_rewrite(frame, attack=name, test=test, keywords=keywords, llm=llm, cache=cache, template=templates[name],
                          max_new_tokens=params.llm.max_new_tokens, keywords_in_prompt=params.llm.keywords_in_prompt)
        for name, frame in sets.items()
    }


def generation_record(sets: dict[str, pl.DataFrame], *, params: AdversarialParams, llm: Scorer | None) -> dict:
    """What generation.json holds: the generator, the LLM and its prompts (llm only), rows per generator.

    Args:
        sets: ``adversarial_sets``' result.
        params: ``adversarial``.
        llm: the rewriting LLM under the llm generator, else None.

    Returns:
        a JSON-ready dict; it does not depend on the generation cache's state.
    """
    record: dict = {"generator": params.generator, "seed": params.seed}
    if params.generator == "llm":
        record |= {"llm": llm.identity, **params.llm.model_dump()}
    record["rows"] = {name: dict(sorted(frame["generator"].value_counts().iter_rows())) for name, frame in sets.items()}
    return record
