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

Several servers (replicas of one model, e.g. one ``vllm serve`` per GPU) share the batches: each
has one request in flight at a time and takes the next waiting batch when it answers, so faster
servers take more. Connection errors, timeouts and 5xx answers are retried on the same server with
exponential backoff; a server still failing after its retries is dropped for the rest of the call
and its batch goes to another server. Results are written by batch, so they keep query order. A 4xx
answer, or every server lost, raises one :class:`ScoringError` naming the URLs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.models import load_tokenizer
from pipeline.scoring.base import Query, Scorer, ScoringError, report_progress

logger = logging.getLogger(__name__)


class _ServerLost(ScoringError):
    """A server gave no answer after its retries (unreachable, timing out or 5xx): another takes its batch."""


class OpenAIScorer(Scorer):
    """Scores with an OpenAI-compatible completions server that echoes prompt log-probabilities.

    Args:
        model: the served model's name (sent as ``model``; also names the local tokenizer).
        base_url: server root, e.g. "http://localhost:8000" (``/v1/completions`` is appended), or a
            list of replicas' roots, which share the batches.
        batch_size: prompts per request.
        tokenizer: where to load the tokenizer from, if not ``model``.
        retries: extra attempts on the same server after a connection error, timeout or 5xx answer.
        backoff: seconds before the first retry; doubled at each next one.
        timeout: seconds per request.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | Sequence[str],
        batch_size: int = 32,
        tokenizer: str | None = None,
        retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 120.0,
    ):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ConfigError("openai scorer: base_url: need at least one server URL")
        if batch_size < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError(
                f"openai scorer: need batch_size >= 1, retries >= 0, backoff >= 0, timeout > 0 "
                f"(got {batch_size}, {retries}, {backoff}, {timeout})"
            )
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.identity = f"openai:{model}"
        self.max_length = self.tokenizer.model_max_length
        self.urls = [url.rstrip("/") + "/v1/completions" for url in urls]
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
        with report_progress(total=len(encoded), enabled=progress, desc=f"scoring ({', '.join(self.urls)})") as update:

            def score_batch(start: int, url: str) -> None:
                batch = encoded[start : start + self.batch_size]
                body = {
                    "model": self._model,
                    "prompt": [prefix_ids + suffix + target for suffix, target in batch],
                    "max_tokens": 1,
                    "echo": True,
                    "logprobs": 1,
                    "temperature": 0.0,
                }
                choices = sorted(self._post(url, body)["choices"], key=lambda c: c["index"])
                if len(choices) != len(batch):
                    raise ScoringError(f"{url}: {len(choices)} choices for {len(batch)} prompts")
                for i, (choice, (suffix, target)) in enumerate(zip(choices, batch), start=start):
                    context = len(prefix_ids) + len(suffix)
                    logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
                    picked = logprobs[context : context + len(target)]
                    if len(picked) != len(target) or any(lp is None for lp in picked):
                        raise ScoringError(
                            f"{url}: query {i}: no echoed log-probs for prompt tokens {context}.."
                            f"{context + len(target) - 1} (got {len(logprobs)} values); the server must support "
                            "echo=True with logprobs"
                        )
                    scores[i] = sum(picked)
                update(len(batch))

            self._spread(score_batch, batches=range(0, len(encoded), self.batch_size))
        return scores

    def generate(self, *, prompts: Sequence[str], max_new_tokens: int, progress: bool = True) -> list[str]:
        """Greedy continuations (``temperature=0``) from the server, ``batch_size`` token-id prompts per request.

        Arguments and return value as in :meth:`Scorer.generate`.
        """
        encoded = self.encode_prompts(prompts=prompts, max_new_tokens=max_new_tokens)
        texts = [""] * len(encoded)
        with report_progress(total=len(encoded), enabled=progress, desc=f"generating ({', '.join(self.urls)})") as update:

            def generate_batch(start: int, url: str) -> None:
                batch = encoded[start : start + self.batch_size]
                body = {"model": self._model, "prompt": batch, "max_tokens": max_new_tokens, "temperature": 0.0, "seed": 0}
                choices = sorted(self._post(url, body)["choices"], key=lambda c: c["index"])
                if len(choices) != len(batch):
                    raise ScoringError(f"{url}: {len(choices)} choices for {len(batch)} prompts")
                texts[start : start + len(batch)] = [choice["text"] for choice in choices]
                update(len(batch))

            self._spread(generate_batch, batches=range(0, len(encoded), self.batch_size))
        return texts

    def _spread(self, send: Callable[[int, str], None], *, batches: Iterable[int]) -> None:
        """Call ``send(batch, url)`` for every batch, spread over the servers, one request in flight on each.

        Each server's thread takes the next waiting batch. A server lost (:class:`_ServerLost`) is
        dropped for the rest of this call and its batch waits for another server.

        Args:
            send: posts one batch to ``url`` through :meth:`_post` and stores its results by batch.
            batches: the batches' ids (their first query's index).

        Raises:
            ScoringError: every server was lost (the message has each one's last error), or ``send``
                failed otherwise (a 4xx answer, one without the expected fields): the other servers
                stop after their current batch.
        """
        waiting: queue.SimpleQueue[int] = queue.SimpleQueue()
        for batch in batches:
            waiting.put(batch)
        live, lost, failed = list(self.urls), [], threading.Event()

        def serve(url: str) -> None:
            while not failed.is_set():
                try:
                    batch = waiting.get_nowait()
                except queue.Empty:
                    return
                try:
                    send(batch, url)
                except _ServerLost as error:
                    logger.warning("%s; dropped, its batch goes to another server", error)
                    live.remove(url)
                    lost.append(str(error))
                    waiting.put(batch)
                    return
                except BaseException:
                    failed.set()
                    raise

        while not waiting.empty():  # a batch put back after the other servers' threads ended runs in a next round
            if not live:
                raise ScoringError("; ".join(lost))
            with ThreadPoolExecutor(max_workers=len(live)) as pool:
                for future in [pool.submit(serve, url) for url in list(live)]:
                    future.result()

    def _post(self, url: str, body: dict) -> dict:
        """POST to ``url`` with retries on connection errors, timeouts and 5xx; one ScoringError naming the URL."""
        error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                raise ScoringError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            try:
                return response.json()
            except ValueError:
                raise ScoringError(f"{url}: answer is not JSON: {response.text[:200]!r}") from None
        raise _ServerLost(f"{url}: no answer after {self._retries + 1} attempts (last: {error})")
