"""vLLM backend (GPU): the offline ``vllm.LLM`` engine with prompt log-probabilities.

Install with ``pip install 'capflow[vllm]'`` (pins vllm 0.33.0; CUDA only). Each query is one
token-id prompt (prefix + suffix + target, tokenised locally under the shared convention) sent with
``SamplingParams(max_tokens=1, prompt_logprobs=1)``; the target's log-probabilities are read from
``RequestOutput.prompt_logprobs`` at the target positions. Generation sends token-id prompts with
``SamplingParams(temperature=0)`` and reads ``RequestOutput.outputs[0].text``.

What is known from vLLM's docs and issues, and what is not verified here (no GPU was available):
- Known (V1 engine docs, PR #23399): prompt log-probabilities are not cached, so a request asking
  for them skips the prefix cache and re-prefills its whole prompt. The shared prefix is therefore
  recomputed for every query: ~(prefix + suffix) / suffix more work than the transformers backend's
  reuse (~14x for the Banking77 CAP prompt: 396 + 31 tokens against 31), offset by GPU batching.
- Known (PR #54335, open when last checked; V2 model runner only): ``prompt_logprob_token_ids`` +
  ``prompt_logprob_start`` score only chosen positions but also skip the prefix cache: they would
  save the vocabulary-wide log-softmax at every prompt position, not the prefill.
- Unverified (no GPU here, and vLLM does not install on CPU): that vllm 0.33.0 runs this unchanged
  (written against the documented ``LLM.generate``, ``SamplingParams(prompt_logprobs=...)`` and
  ``RequestOutput.prompt_logprobs``), its agreement with the transformers backend (expected within
  bf16 noise), and its speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.models import load_tokenizer, model_identity, resolve_model
from pipeline.scoring.base import Query, Scorer, ScoringError, report_progress


class VllmScorer(Scorer):
    """Scores with a vLLM engine on the local GPU(s).

    Args:
        model: built-in name, local directory or hub id.
        batch_size: prompts handed to the engine at once (it batches internally; this bounds the
            memory of the returned per-position log-probabilities, so use hundreds).
        dtype: "float32", "bfloat16", "float16"; None = the model's own ("auto").
    """

    def __init__(self, *, model: str, batch_size: int = 256, dtype: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"scoring.batch_size: must be >= 1, got {batch_size}")
        try:
            import vllm
        except ImportError:
            raise ConfigError(
                "scoring.backend=vllm needs vLLM on a CUDA machine: pip install 'capflow[vllm]'"
            ) from None
        path = resolve_model(model)
        self._llm = vllm.LLM(model=path, tokenizer=path, dtype=dtype or "auto", seed=0)
        self._params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        self.tokenizer = load_tokenizer(model)  # the same tokenizer, hence ids, as the other backends
        self.identity = f"vllm:{model_identity(model)}:{dtype or 'auto'}"
        self.max_length = self._llm.llm_engine.model_config.max_model_len
        self.batch_size = batch_size
        self._vllm = vllm

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, from the engine's prompt log-probabilities.

        Arguments and return value as in :meth:`Scorer.score`.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        scores = np.empty(len(encoded))
        with report_progress(total=len(encoded), enabled=progress, desc="scoring (vllm)") as update:
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                prompts = [{"prompt_token_ids": prefix_ids + suffix + target} for suffix, target in batch]
                outputs = self._llm.generate(prompts, self._params, use_tqdm=False)
                for i, (output, (suffix, target)) in enumerate(zip(outputs, batch), start=start):
                    context = len(prefix_ids) + len(suffix)
                    positions = output.prompt_logprobs[context : context + len(target)]
                    if len(positions) != len(target) or any(p is None for p in positions):
                        raise ScoringError(f"vllm: query {i}: no prompt log-probs at the target positions")
                    scores[i] = sum(p[token].logprob for p, token in zip(positions, target))
                update(len(batch))
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
