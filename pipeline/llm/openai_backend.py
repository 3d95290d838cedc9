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
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.llm.base import (
    EncodedQuery,
    Query,
    Scorer,
    ScoringError,
    VllmMode,
    check_vllm_mode,
    report_progress,
)
from pipeline.models import load_tokenizer

logger = logging.getLogger(__name__)


class _ServerLost(ScoringError):
    """A server gave no answer after its retries (unreachable, timing out or 5xx): another takes its batch."""


class OpenAIScorer(Scorer):
    """Scores with an OpenAI-compatible completions server (vLLM's, see the module doc).

    Args:
        model: the served model's name (sent as ``model``; also names the local tokenizer).
        base_url: server root, e.g. "http://localhost:8000" (``/v1/completions`` is appended), or a
            list of replicas' roots, which share the batches.
        batch_size: prompts per request.
        tokenizer: where to load the tokenizer from, if not ``model``.
        retries: extra attempts on the same server after a connection error, timeout or 5xx answer.
        backoff: seconds before the first retry; doubled at each next one.
        timeout: seconds per request.
        mode: "next_token" or "prompt_logprobs" (see the module doc).
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
        mode: VllmMode = "next_token",
    ):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ConfigError("openai scorer: base_url: need at least one server URL")
        if batch_size < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError(
                f"openai scorer: need batch_size >= 1, retries >= 0, backoff >= 0, timeout > 0 "
                f"(got {batch_size}, {retries}, {backoff}, {timeout})"
            )
        check_vllm_mode(mode)
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.identity = f"openai:{model}"
        self.max_length = self.tokenizer.model_max_length
        self.urls = [url.rstrip("/") + "/v1/completions" for url in urls]
        self._model = model
        self.batch_size = batch_size
        self.mode = mode
        self._retries = retries
        self._backoff = backoff
        self._client = httpx.Client(timeout=timeout)

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, in the scorer's ``mode``, batches spread over the servers.

        Arguments and return value as in :meth:`Scorer.score`.

        Raises:
            ScoringError: every server is unreachable, one refuses the request, or answers without
                the expected log-probabilities.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        score_batch = self._score_next_token if self.mode == "next_token" else self._score_prompt_logprobs
        warmed: set[str] = set()  # each server's thread warms its own server, so no lock is needed
        scores = np.empty(len(encoded))
        desc = f"scoring ({', '.join(self.urls)}, {self.mode})"
        with report_progress(total=len(encoded), enabled=progress, desc=desc) as update:

            def send(start: int, url: str) -> None:
                if self.mode == "next_token" and url not in warmed:  # fill its prefix cache before the batches share it
                    self._post(url, {"model": self._model, "prompt": [prefix_ids], "max_tokens": 1, "temperature": 0.0})
                    warmed.add(url)
                batch = encoded[start : start + self.batch_size]
                scores[start : start + len(batch)] = score_batch(url, prefix_ids, batch, first=start)
                update(len(batch))

            self._spread(send, batches=range(0, len(encoded), self.batch_size))
        return scores

    def _score_next_token(self, url: str, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
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
            for choice, (row, _) in zip(self._choices(url, body, len(requests)), requests):
                top = (choice.get("logprobs") or {}).get("top_logprobs") or [None]
                logprob = (top[0] or {}).get(f"token_id:{token}")
                if logprob is None:
                    raise ScoringError(
                        f"{url}: query {first + row}: no log-prob for token {token} in the answer; the server "
                        "must support logprob_token_ids (vLLM >= 0.32), else set scoring.vllm_mode: prompt_logprobs"
                    )
                sums[row] += logprob
        return sums

    def _score_prompt_logprobs(self, url: str, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
        """Summed target log-probs of a batch from the echoed prompt log-probs, one request for the batch."""
        body = {
            "model": self._model, "prompt": [prefix_ids + suffix + target for suffix, target in batch],
            "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0.0,
        }
        scores = np.empty(len(batch))
        for row, (choice, (suffix, target)) in enumerate(zip(self._choices(url, body, len(batch)), batch)):
            context = len(prefix_ids) + len(suffix)
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            picked = logprobs[context : context + len(target)]
            if len(picked) != len(target) or any(lp is None for lp in picked):
                raise ScoringError(
                    f"{url}: query {first + row}: no echoed log-probs for prompt tokens {context}.."
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
        texts = [""] * len(encoded)
        with report_progress(total=len(encoded), enabled=progress, desc=f"generating ({', '.join(self.urls)})") as update:

            def generate_batch(start: int, url: str) -> None:
                batch = encoded[start : start + self.batch_size]
                body = {"model": self._model, "prompt": batch, "max_tokens": max_new_tokens, "temperature": 0.0, "seed": 0}
                texts[start : start + len(batch)] = [choice["text"] for choice in self._choices(url, body, len(batch))]
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

    def _choices(self, url: str, body: dict, n: int) -> list[dict]:
        """The answer of ``url`` to ``body`` (``n`` prompts): its ``n`` choices, in prompt order."""
        choices = sorted(self._post(url, body)["choices"], key=lambda c: c["index"])
        if len(choices) != n:
            raise ScoringError(f"{url}: {len(choices)} choices for {n} prompts")
        return choices

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
