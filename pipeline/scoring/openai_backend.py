"""OpenAI-compatible backend: score through a running server's ``/v1/completions`` (``vllm serve``).

Each request sends ``batch_size`` prompts as token ids (prefix + suffix + target, tokenised locally
under the shared convention, so the server never re-tokenises) with ``echo=True, logprobs=1,
max_tokens=1``. The server echoes every prompt token's log-probability in
``choices[i].logprobs.token_logprobs`` (None for the first token), so the target's are the
``len(target)`` entries after the ``len(prefix) + len(suffix)`` context tokens. Generation sends
token-id prompts with ``temperature=0`` and reads ``choices[i].text``.

vLLM recomputes the whole prompt for requests that ask for prompt log-probabilities (it does not
read its prefix cache for them), so every query costs a full prefill on the server. The model's
tokenizer must be loadable here (built-in name, local directory or a cached hub id).

Connection errors, timeouts and 5xx answers are retried with exponential backoff; a 4xx answer or
exhausted retries raise one :class:`ScoringError` naming the URL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.models import load_tokenizer
from pipeline.scoring.base import Query, Scorer, ScoringError, report_progress


class OpenAIScorer(Scorer):
    """Scores with an OpenAI-compatible completions server that echoes prompt log-probabilities.

    Args:
        model: the served model's name (sent as ``model``; also names the local tokenizer).
        base_url: server root, e.g. "http://localhost:8000" (``/v1/completions`` is appended).
        batch_size: prompts per request.
        tokenizer: where to load the tokenizer from, if not ``model``.
        retries: extra attempts after a connection error, timeout or 5xx answer.
        backoff: seconds before the first retry; doubled at each next one.
        timeout: seconds per request.
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
    ):
        if batch_size < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError(
                f"openai scorer: need batch_size >= 1, retries >= 0, backoff >= 0, timeout > 0 "
                f"(got {batch_size}, {retries}, {backoff}, {timeout})"
            )
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.identity = f"openai:{model}"
        self.max_length = self.tokenizer.model_max_length
        self.url = base_url.rstrip("/") + "/v1/completions"
        self._model = model
        self.batch_size = batch_size
        self._retries = retries
        self._backoff = backoff
        self._client = httpx.Client(timeout=timeout)

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, from the server's echoed prompt log-probs.

        Arguments and return value as in :meth:`Scorer.score`.

        Raises:
            ScoringError: the server is unreachable, refuses the request, or answers without the
                expected log-probabilities.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        scores = np.empty(len(encoded))
        with report_progress(total=len(encoded), enabled=progress, desc=f"scoring ({self.url})") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                body = {
                    "model": self._model,
                    "prompt": [prefix_ids + suffix + target for suffix, target in batch],
                    "max_tokens": 1,
                    "echo": True,
                    "logprobs": 1,
                    "temperature": 0.0,
                }
                choices = sorted(self._post(body)["choices"], key=lambda c: c["index"])
                if len(choices) != len(batch):
                    raise ScoringError(f"{self.url}: {len(choices)} choices for {len(batch)} prompts")
                for i, (choice, (suffix, target)) in enumerate(zip(choices, batch), start=start):
                    context = len(prefix_ids) + len(suffix)
                    logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
                    picked = logprobs[context : context + len(target)]
                    if len(picked) != len(target) or any(lp is None for lp in picked):
                        raise ScoringError(
                            f"{self.url}: query {i}: no echoed log-probs for prompt tokens {context}.."
                            f"{context + len(target) - 1} (got {len(logprobs)} values); the server must support "
                            "echo=True with logprobs"
                        )
                    scores[i] = sum(picked)
                update(len(batch))
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
                choices = sorted(self._post(body)["choices"], key=lambda c: c["index"])
                if len(choices) != len(batch):
                    raise ScoringError(f"{self.url}: {len(choices)} choices for {len(batch)} prompts")
                texts += [choice["text"] for choice in choices]
                update(len(batch))
        return texts

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
