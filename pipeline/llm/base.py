"""The scorer interface shared by every LLM backend.

A scorer returns, for each query ``(suffix, target)`` sharing one ``prefix``, the log-probability
of the target continuation: log p(target | prefix + suffix) = the sum of the target tokens'
log-probabilities. It also generates greedy continuations of whole prompts, which the LLM
adversarial generator uses.

Tokenisation convention (identical in every backend and in the naive reference): prefix, suffix
and target are tokenised separately, without special tokens, and their ids are concatenated, so
the target tokens are exactly ``tokenize(target)`` and the prefix's ids can be computed once. The
split must not change the text the model sees: trailing whitespace of the prefix ("Message: ")
is moved to the front of every suffix (a lone space token before the sentence would be a text
no tokenizer produces), and ``encode`` checks ``ids(prefix) + ids(suffix) + ids(target) ==
ids(prefix + suffix + target)`` for every query, raising where a tokenizer merges across a
boundary instead of scoring a different text.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.errors import CapflowError, ConfigError
from pipeline.progress import progress

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

Query = tuple[str, str]  # (suffix, target)
EncodedQuery = tuple[list[int], list[int]]  # (suffix ids, target ids)
# How the vllm and openai backends ask a vLLM engine for target log-probabilities (their module docs)
VllmMode = Literal["next_token", "prompt_logprobs"]
VLLM_MODES: tuple[VllmMode, ...] = ("next_token", "prompt_logprobs")


class ScoringError(CapflowError):
    """A query cannot be scored (empty target, too long for the model) or a backend failed."""


class Scorer(ABC):
    """Scores label continuations with a causal LM, and generates greedily with it.

    Attributes:
        identity: backend + model id + revision (+ dtype): part of every cache key, since the
            scores depend on all of them.
        tokenizer: the model's Hugging Face tokenizer (prompt rendering, token counts).
        max_length: the model's context in tokens; longer queries raise :class:`ScoringError`.
    """

    identity: str
    tokenizer: PreTrainedTokenizerBase
    max_length: int

    @abstractmethod
    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) for each query.

        Args:
            prefix: text shared by every query (system, instruction, label space).
            queries: ``(suffix, target)`` pairs.
            progress: show a progress bar (a q/s line is logged either way).

        Returns:
            float64 array, shape (len(queries),), each value <= 0.

        Raises:
            ScoringError: see :meth:`encode`.
        """

    @abstractmethod
    def generate(self, *, prompts: Sequence[str], max_new_tokens: int, progress: bool = True) -> list[str]:
        """Greedy continuation of each prompt, up to the end-of-sequence token or ``max_new_tokens``.

        Args:
            prompts: whole prompts (chat template already applied), tokenised without special tokens.
            max_new_tokens: generated tokens at most, >= 1.
            progress: show a progress bar.

        Returns:
            One decoded continuation per prompt (special tokens dropped).

        Raises:
            ScoringError: see :meth:`encode_prompts`.
        """

    def encode_prompts(self, *, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """Token ids of generation prompts, validated up front like :meth:`encode`.

        Raises:
            ScoringError: ``max_new_tokens`` < 1, a prompt tokenises to nothing, or a prompt plus
                ``max_new_tokens`` exceeds ``max_length`` (the message names the prompt index).
        """
        if max_new_tokens < 1:
            raise ScoringError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        encoded = _token_ids(self.tokenizer, list(prompts))
        for i, ids in enumerate(encoded):
            if not ids:
                raise ScoringError(f"prompt {i} is empty")
            if len(ids) + max_new_tokens > self.max_length:
                raise ScoringError(
                    f"prompt {i}: {len(ids)} tokens + {max_new_tokens} new exceed the model's context of "
                    f"{self.max_length} (prompt ends {prompts[i][-80:]!r})"
                )
        return encoded

    def encode(self, *, prefix: str, queries: Sequence[Query]) -> tuple[list[int], list[EncodedQuery]]:
        """:func:`encode_queries` with this scorer's tokenizer and context length."""
        return encode_queries(self.tokenizer, prefix=prefix, queries=queries, max_length=self.max_length)


def encode_queries(
    tokenizer: PreTrainedTokenizerBase, *, prefix: str, queries: Sequence[Query], max_length: int
) -> tuple[list[int], list[EncodedQuery]]:
    """Tokenise under the shared convention (module docstring) and validate every query up front.

    Long inputs raise instead of being truncated: a truncated sentence would silently give
    its cut-off words no influence on any score, i.e. zero attribution. Shorten or drop such
    texts in the dataset instead.

    Args:
        tokenizer: the scoring model's tokenizer.
        prefix: the text every query shares.
        queries: ``(suffix, target)`` pairs.
        max_length: the model's context in tokens.

    Returns:
        ``(prefix_ids, [(suffix_ids, target_ids), ...])``: the prefix without its trailing
        whitespace, which leads every suffix instead (see the module docstring).

    Raises:
        ScoringError: the prefix or a target tokenises to nothing, the separate ids of a query
            differ from the ids of its joined text, or prefix + suffix + target exceeds
            ``max_length`` (the message names the query index and the token counts).
    """
    kept = prefix.rstrip()
    moved = prefix[len(kept):]
    prefix_ids = _token_ids(tokenizer, [kept])[0]
    if not prefix_ids:
        raise ScoringError("the prompt prefix is empty: the first target token would have no context")
    suffixes = _token_ids(tokenizer, [moved + s for s, _ in queries])
    targets = _token_ids(tokenizer, [t for _, t in queries])
    joined = _token_ids(tokenizer, [prefix + s + t for s, t in queries])
    for i, (suffix_ids, target_ids) in enumerate(zip(suffixes, targets)):
        if not target_ids:
            raise ScoringError(f"query {i}: target {queries[i][1]!r} tokenises to nothing")
        if prefix_ids + suffix_ids + target_ids != joined[i]:
            raise ScoringError(
                f"query {i}: the tokenizer merges tokens across the prompt's prefix/sentence/target boundaries, "
                f"so scoring the parts separately would score a different text (sentence {queries[i][0][:60]!r}, "
                f"target {queries[i][1]!r}); end the template's text before {{sentence}} and the answer prefix "
                f"so that no token spans them"
            )
        n = len(prefix_ids) + len(suffix_ids) + len(target_ids)
        if n > max_length:
            raise ScoringError(
                f"query {i}: {n} tokens (prefix {len(prefix_ids)} + suffix {len(suffix_ids)} + target "
                f"{len(target_ids)}) exceed the model's context of {max_length}; shorten or drop the text "
                f"starting {queries[i][0][:60]!r}"
            )
    return prefix_ids, list(zip(suffixes, targets))


def check_vllm_mode(mode: str) -> None:
    """Raise :class:`ConfigError` naming ``scoring.vllm_mode`` unless ``mode`` is one of :data:`VLLM_MODES`."""
    if mode not in VLLM_MODES:
        raise ConfigError(f"scoring.vllm_mode: {mode!r} is not one of {', '.join(VLLM_MODES)}")


def _token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


@contextlib.contextmanager
def report_progress(*, total: int, enabled: bool, desc: str) -> Iterator[Callable[[int], None]]:
    """:func:`pipeline.progress.progress` over ``total`` queries; yields its ``update(n)``; logs the q/s rate at the end."""
    start = time.perf_counter()
    with progress(total=total, enabled=enabled, desc=desc, unit="queries") as update:
        yield update
    seconds = time.perf_counter() - start
    logger.info("%s: %d queries in %.1f s (%.2f q/s)", desc, total, seconds, total / max(seconds, 1e-9))
