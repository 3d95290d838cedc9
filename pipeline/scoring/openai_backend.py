"""OpenAI-compatible backend: score through a running vLLM server's ``/v1/completions``.

Prompts are sent as token ids (prefix + suffix + target, tokenised locally under the shared
convention, so the server never re-tokenises), in one of two modes (``scoring.vllm_mode``, as for
the vllm backend):

- ``next_token`` (default; vLLM >= 0.32): one prompt per target token, ``prefix + suffix +
  target[:j]``, with ``max_tokens=1, logprobs=1, logprob_token_ids=[...], return_tokens_as_token_ids``.
  ``logprob_token_ids`` holds for a whole request, so each request carries the prompts that ask for
  the same next token; its log-probability is ``choices[i].logprobs.top_logprobs[0]["token_id:<id>"]``.
  These requests read the server's prefix cache; one warm-up request for the shared prefix fills it
  first. A server that ignores ``logprob_token_ids`` (not vLLM, or older) fails with an error saying
  to use ``prompt_logprobs``.
- ``prompt_logprobs``: ``batch_size`` whole prompts per request with ``echo=True, logprobs=1,
  max_tokens=1``; the server echoes every prompt token's log-probability in
  ``choices[i].logprobs.token_logprobs`` (None for the first token), so the target's are the
  ``len(target)`` entries after the ``len(prefix) + len(suffix)`` context tokens. vLLM recomputes
  the whole prompt for such requests (it does not read its prefix cache for them). Any server
  that echoes prompt log-probabilities works.

Generation sends token-id prompts with ``temperature=0`` and reads ``choices[i].text``. The
model's tokenizer must be loadable here (built-in name, local directory or a cached hub id).

Connection errors, timeouts and 5xx answers are retried with exponential backoff; a 4xx answer or
exhausted retries raise one :class:`ScoringError` naming the URL.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import httpx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.models import load_tokenizer
from pipeline.scoring.base import (
    EncodedQuery, Query, Scorer, ScoringError, VllmMode, check_vllm_mode, report_progress,
)


class OpenAIScorer(Scorer):
    """Scores with an OpenAI-compatible completions server (vLLM's, see the module doc).

    Args:
        model: the served model's name (sent as ``model``; also names the local tokenizer).
        base_url: server root, e.g. "http://localhost:8000" (``/v1/completions`` is appended).
        batch_size: prompts per request.
        tokenizer: where to load the tokenizer from, if not ``model``.
        retries: extra attempts after a connection error, timeout or 5xx answer.
        backoff: seconds before the first retry; doubled at each next one.
        timeout: seconds per request.
        mode: "next_token" or "prompt_logprobs" (see the module doc).

    Raises:
        ConfigError: a bad argument (the message names it).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        batch_size: int = 32,
        tokenizer: str | None = None,
        retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 120.0,
        mode: VllmMode = "next_token",
    ):
        if batch_size < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError(
                f"openai scorer: need batch_size >= 1, retries >= 0, backoff >= 0, timeout > 0 "
                f"(got {batch_size}, {retries}, {backoff}, {timeout})"
            )
        check_vllm_mode(mode)
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.identity = f"openai:{model}"
        self.max_length = self.tokenizer.model_max_length
        self.url = base_url.rstrip("/") + "/v1/completions"
        self._model = model
        self.batch_size = batch_size
        self.mode = mode
        self._retries = retries
        self._backoff = backoff
        self._client = httpx.Client(timeout=timeout)

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, in the scorer's ``mode``.

        Arguments and return value as in :meth:`Scorer.score`.

        Raises:
            ScoringError: the server is unreachable, refuses the request, or answers without the
                expected log-probabilities.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        score_batch = self._score_next_token if self.mode == "next_token" else self._score_prompt_logprobs
        if self.mode == "next_token":  # fill the server's prefix cache once, before the batches share it
            self._post({"model": self._model, "prompt": [prefix_ids], "max_tokens": 1, "temperature": 0.0})
        scores = np.empty(len(encoded))
        with report_progress(total=len(encoded), enabled=progress, desc=f"scoring ({self.url}, {self.mode})") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                scores[start : start + len(batch)] = score_batch(prefix_ids, batch, first=start)
                update(len(batch))
        return scores

    def _score_next_token(self, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
        """Summed target log-probs of a batch: one prompt per target token, one request per distinct next token."""
        by_token = defaultdict(list)  # next token -> [(query row, prompt ids)]
        for row, (suffix, target) in enumerate(batch):
            for j, token in enumerate(target):
                by_token[token].append((row, prefix_ids + suffix + target[:j]))
        sums = np.zeros(len(batch))
        for token, requests in by_token.items():
            body = {
                "model": self._model, "prompt": [ids for _, ids in requests], "max_tokens": 1, "temperature": 0.0,
                "logprobs": 1, "logprob_token_ids": [token], "return_tokens_as_token_ids": True,
            }
            for choice, (row, _) in zip(self._choices(body, len(requests)), requests):
                top = (choice.get("logprobs") or {}).get("top_logprobs") or [None]
                logprob = (top[0] or {}).get(f"token_id:{token}")
                if logprob is None:
                    raise ScoringError(
                        f"{self.url}: query {first + row}: no log-prob for token {token} in the answer; the server "
                        "must support logprob_token_ids (vLLM >= 0.32), else set scoring.vllm_mode: prompt_logprobs"
                    )
                sums[row] += logprob
        return sums

    def _score_prompt_logprobs(self, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
        """Summed target log-probs of a batch from the echoed prompt log-probs, one request for the batch."""
        body = {
            "model": self._model, "prompt": [prefix_ids + suffix + target for suffix, target in batch],
            "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0.0,
        }
        scores = np.empty(len(batch))
        for row, (choice, (suffix, target)) in enumerate(zip(self._choices(body, len(batch)), batch)):
            context = len(prefix_ids) + len(suffix)
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            picked = logprobs[context : context + len(target)]
            if len(picked) != len(target) or any(lp is None for lp in picked):
                raise ScoringError(
                    f"{self.url}: query {first + row}: no echoed log-probs for prompt tokens {context}.."
                    f"{context + len(target) - 1} (got {len(logprobs)} values); the server must support "
                    "echo=True with logprobs"
                )
            scores[row] = sum(picked)
        return scores

    def generate(self, *, prompts: Sequence[str], max_new_tokens: int, progress: bool = True) -> list[str]:
        """Greedy continuations (``temperature=0``) from the server, ``batch_size`` token-id prompts per request.

        Arguments and return value as in :meth:`Scorer.generate`.
        """
        encoded = self.encode_prompts(prompts=prompts, max_new_tokens=max_new_tokens)
        texts = []
        with report_progress(total=len(encoded), enabled=progress, desc=f"generating ({self.url})") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                body = {"model": self._model, "prompt": batch, "max_tokens": max_new_tokens, "temperature": 0.0, "seed": 0}
                texts += [choice["text"] for choice in self._choices(body, len(batch))]
                update(len(batch))
        return texts

    def _choices(self, body: dict, n: int) -> list[dict]:
        """The answer's ``n`` choices to ``body`` (``n`` prompts), in prompt order."""
        choices = sorted(self._post(body)["choices"], key=lambda c: c["index"])
        if len(choices) != n:
            raise ScoringError(f"{self.url}: {len(choices)} choices for {n} prompts")
        return choices

    def _post(self, body: dict) -> dict:
        """POST with retries on connection errors, timeouts and 5xx; one ScoringError naming the URL."""
        error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                raise ScoringError(f"{self.url}: HTTP {response.status_code}: {response.text[:300]}")
            try:
                return response.json()
            except ValueError:
                raise ScoringError(f"{self.url}: answer is not JSON: {response.text[:200]!r}") from None
        raise ScoringError(f"{self.url}: no answer after {self._retries + 1} attempts (last: {error})")
