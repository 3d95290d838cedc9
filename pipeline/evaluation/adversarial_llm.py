"""LLM adversarial generator: the teacher LLM rewrites each attacked sentence around the adversarial keywords.

The rule-based sets of :mod:`pipeline.evaluation.adversarial` come first (same rows, ids and target classes);
the LLM then rewrites every row from a prompt (:class:`pipeline.prompts.RewriteTemplate`) that names
the adversarial class's keywords and, for replacement, the sentence's own class keywords. Decoding
is greedy, so a rerun with the same model gives the same text.

A rewrite is kept only if it is still an attack on the same sentence (:func:`accept_rewrite`);
otherwise the row keeps its rule-based text. Each row records which generator made its text
(``generator``) and the LLM's raw answer (``llm_output``), so weak rewriters show up in the artifact
instead of silently weakening the attack.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl

from pipeline.evaluation.adversarial import STOPWORDS, keyword_form
from pipeline.llm.base import Scorer
from pipeline.llm.cache import GenerationCache
from pipeline.prompts import RewriteTemplate

Attack = Literal["add", "replace"]
_ANSWER_LABEL = re.compile(r"^(?:(?:rewritten|new|edited)\s+)?(?:message|sentence)\s*:\s*", re.IGNORECASE)


def clean_generation(text: str) -> str:
    """The rewritten sentence in an LLM answer: its first non-empty line, without quotes or a "Sentence:" label."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = _ANSWER_LABEL.sub("", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line


def accept_rewrite(original: str, rewrite: str, *, target_keywords: list[str], replaced: list[str] = ()) -> bool:
    """Whether an LLM rewrite is an attack that keeps the sentence.

    All four must hold: (1) it differs from the original and is at most twice its length plus 5 words;
    (2) it contains at least one target keyword; (3) if ``replaced`` names words of the original, at
    least one of them is gone; (4) it keeps at least half of the original's other content words
    (not stopwords, not ``replaced``, not target keywords). Words are compared in keyword form.

    Args:
        original: the test sentence.
        rewrite: the cleaned LLM answer (:func:`clean_generation`).
        target_keywords: the adversarial class's keywords that count as inserted.
        replaced: the source-class keywords of the original that a replacement should remove.

    Returns:
        True if the rewrite may stand in for the rule-based one.
    """
    new_words = [keyword_form(word) for word in rewrite.split()]
    if not new_words or rewrite == original or len(new_words) > 2 * len(original.split()) + 5:
        return False
    present = set(new_words)
    if not present & set(target_keywords):
        return False
    if replaced and not set(replaced) - present:
        return False
    content = {keyword_form(word) for word in original.split()} - STOPWORDS - set(replaced) - set(target_keywords) - {""}
    return 2 * len(content & present) >= len(content)


def llm_rewrite(
    attacked: pl.DataFrame,
    *,
    attack: Attack,
    test: pl.DataFrame,
    keywords: dict[str, list[str]],
    llm: Scorer,
    cache: GenerationCache,
    template: RewriteTemplate,
    max_new_tokens: int,
    keywords_in_prompt: int,
    progress: bool = True,
) -> pl.DataFrame:
    """Rewrite every row of a rule-based attack set with the LLM, keeping the rewrites that pass the check.

    Args:
        attacked: a frame of :func:`pipeline.evaluation.adversarial.make_adversarial` (id, text, label, source_id, target_class).
        attack: "add" or "replace": which attack ``attacked`` holds (it selects what the check demands).
        test: the test split (id, text): the sentences the LLM rewrites.
        keywords: class -> keywords, best first (:func:`pipeline.evaluation.adversarial.class_keywords`).
        llm: the teacher LLM's backend.
        cache: where generations are kept across runs (a rerun or a restart generates only new prompts).
        template: the rewriting prompt for this attack.
        max_new_tokens: generated tokens at most per row.
        keywords_in_prompt: target keywords named in each prompt (the best ones not shared with the source class).
        progress: show a progress bar.

    Returns:
        ``attacked`` with ``text`` replaced where the rewrite was accepted, plus ``generator``
        ("llm" or "rules") and ``llm_output`` (the raw answer) columns.
    """
    if keywords_in_prompt < 1:
        raise ValueError(f"llm_rewrite: keywords_in_prompt must be >= 1, got {keywords_in_prompt}")
    sentences = dict(test.select("id", "text").iter_rows())
    prompts, checks = [], []
    for source_id, label, target in attacked.select("source_id", "label", "target_class").iter_rows():
        original = sentences[source_id]
        # a target keyword the source class shares points to both classes: keep the others (all, if none is left)
        target_keywords = [word for word in keywords[target] if word not in keywords[label]] or keywords[target]
        in_sentence = {keyword_form(word) for word in original.split()}
        replaced = []
        if attack == "replace":
            replaced = [word for word in keywords[label] if word in in_sentence and word not in target_keywords]
        prompts.append(template.render(
            llm.tokenizer, sentence=original, keywords=target_keywords[:keywords_in_prompt],
            source_keywords=replaced or keywords[label][:keywords_in_prompt], label=label, target=target,
        ))
        checks.append((original, target_keywords, replaced))
    answers = cache.generate_missing(llm=llm, prompts=prompts, max_new_tokens=max_new_tokens, progress=progress)
    texts, generators = [], []
    for rule_text, answer, (original, target_keywords, replaced) in zip(attacked["text"], answers, checks):
        rewrite = clean_generation(answer)
        accepted = accept_rewrite(original, rewrite, target_keywords=target_keywords, replaced=replaced)
        texts.append(rewrite if accepted else rule_text)
        generators.append("llm" if accepted else "rules")
    return attacked.with_columns(
        pl.Series("text", texts, dtype=pl.String),
        pl.Series("generator", generators, dtype=pl.String),
        pl.Series("llm_output", answers, dtype=pl.String),
    )
