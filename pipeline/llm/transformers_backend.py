"""Transformers backend: a Hugging Face causal LM on CPU or CUDA, scoring with shared-prefix reuse.

Every query of a call shares the prompt prefix (instruction + label space: ~400 tokens for
Banking77) while its own part is ~25 tokens, so ``score`` computes the prefix once:

1. The prefix minus its last token runs through the model once; its per-layer keys and values are
   kept for the whole call.
2. A query's input is ``[last prefix token] + suffix + target[:-1]``: never empty, and it holds the
   position that predicts every target token (the last target token predicts nothing needed).
   Inputs are sorted by length and batched with right padding; positions continue after the prefix.
3. A registered attention function attends each token to every prefix position and causally to
   its own query's earlier tokens: one SDPA call per layer with the prefix keys/values expanded to
   the batch, one (S, P + S) mask shared by the batch, and grouped-query heads without copies.
   Right padding needs no padding mask: a real token never attends to the padding after it.
4. Only hidden states at positions that predict target tokens go through the LM head.

``score_naive`` is the reference: each full prompt through the whole model, no reuse.
``score_ids`` and ``score_naive_ids`` take token ids already encoded (bench/gpu_scoring.py and the CUDA
tests score stored ids of the real workload on machines without its tokenizer or data).

Supported: decoder-only models built on transformers' AttentionInterface whose logits are
``lm_head(final hidden state)`` (Llama, Mistral without sliding window, Qwen2/3, SmolLM, Phi-3...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedTokenizerBase

from pipeline.errors import ConfigError
from pipeline.llm.base import EncodedQuery, Query, Scorer, ScoringError, report_progress
from pipeline.models import default_dtype, load_causal_lm, model_identity

_ATTENTION = "capflow_shared_prefix"


def _shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    *,
    shared_prefix: list[tuple[torch.Tensor, torch.Tensor]],
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of a batch of queries over the shared prefix plus, causally, their own tokens.

    Args:
        module: the attention layer; its ``layer_idx`` selects the prefix cache.
        query: (B, H, S, D) rotated queries of the batch's tokens.
        key, value: (B, KVH, S, D) keys and values of the batch's tokens.
        attention_mask: unused (None: transformers builds no mask for unregistered implementations).
        scaling: the softmax scale.
        dropout: unused (inference only).
        shared_prefix: per layer, the prefix's (keys, values), each (1, KVH, P, D).

    Returns:
        ``(output, None)`` with output (B, S, H, D), as transformers' attention functions return.
    """
    if kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None or hasattr(module, "sinks"):
        raise ScoringError(
            f"{type(module).__name__}: softcapped, sliding-window or sink attention is not supported by "
            "shared-prefix scoring; use the vllm backend"
        )
    prefix_keys, prefix_values = shared_prefix[module.layer_idx]
    batch, length, n_prefix = query.shape[0], query.shape[2], prefix_keys.shape[2]
    # expand() is a view; the cat is the only per-batch copy of the prefix (~10 MB a layer for SmolLM2)
    keys = torch.cat([prefix_keys.expand(batch, -1, -1, -1), key], dim=2)
    values = torch.cat([prefix_values.expand(batch, -1, -1, -1), value], dim=2)
    # every prefix position, then causal over the query's own tokens; one mask for the whole batch
    visible = torch.ones(length, n_prefix + length, dtype=torch.bool, device=query.device).tril(diagonal=n_prefix)
    # enable_gqa: KV heads are shared by query-head groups without repeat_kv copies
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=visible, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2), None


AttentionInterface.register(_ATTENTION, _shared_prefix_attention)


@contextlib.contextmanager
def _attention(model: torch.nn.Module, implementation: str) -> Iterator[None]:
    """Switch the model's attention implementation for the block (transformers reads it per call)."""
    saved = model.config._attn_implementation
    model.config._attn_implementation = implementation
    try:
        yield
    finally:
        model.config._attn_implementation = saved


class TransformersScorer(Scorer):
    """Scores with a Hugging Face causal LM loaded through :func:`pipeline.models.load_causal_lm`.

    Args:
        model: built-in name, local directory or hub id.
        device: "cpu" or "cuda[:i]".
        batch_size: queries per forward pass.
        dtype: "float32", "bfloat16", "float16"; None = float32 on CPU, bfloat16 on CUDA.
    """

    def __init__(self, *, model: str, device: str = "cpu", batch_size: int = 32, dtype: str | None = None):
        if batch_size < 1:  # before the model loads
            raise ConfigError(f"scoring.batch_size: must be >= 1, got {batch_size}")
        torch_dtype = getattr(torch, dtype) if dtype else default_dtype(device)
        loaded, tokenizer = load_causal_lm(model, device=device, dtype=torch_dtype)
        self._bind(loaded, tokenizer, batch_size=batch_size,
                   identity=f"transformers:{model_identity(model)}:{str(torch_dtype).removeprefix('torch.')}")

    @classmethod
    def from_loaded(
        cls, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase | None, *, batch_size: int = 32, identity: str
    ) -> TransformersScorer:
        """A scorer over an already built model (e.g. randomly initialised, as bench/gpu_scoring.py does).

        Args:
            model: a causal LM in eval mode, on its device and in its dtype.
            tokenizer: the tokenizer whose ids the model reads; None: a scorer of token ids only
                (``score_ids``, ``score_naive_ids``), padding with the model config's pad id.
            batch_size: queries per forward pass.
            identity: the scorer's cache identity (see :class:`Scorer`).
        """
        scorer = cls.__new__(cls)
        scorer._bind(model, tokenizer, batch_size=batch_size, identity=identity)
        return scorer

    def _bind(
        self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase | None, *, batch_size: int, identity: str
    ) -> None:
        self._model, self.tokenizer = model, tokenizer
        self.device = str(model.device)
        self.batch_size = batch_size
        self.identity = identity
        config = self._model.config.get_text_config()
        self.max_length = getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
        # padding is never attended (right padding, module doc): any id in the vocabulary does
        self._pad_id = (tokenizer.pad_token_id if tokenizer is not None else None) or config.pad_token_id or 0
        self._prefix: tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]] | None = None  # last prefix's cache

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """log p(target | prefix + suffix) per query, computing the prefix once (see the module doc).

        Arguments and return value as in :meth:`Scorer.score`.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        return self.score_ids(prefix_ids=prefix_ids, queries=encoded, progress=progress)

    @torch.inference_mode()
    def score_ids(self, *, prefix_ids: list[int], queries: Sequence[EncodedQuery], progress: bool = True) -> np.ndarray:
        """:meth:`score` on token ids: the shared prefix computed once, then the queries in batches.

        Args:
            prefix_ids: the shared prefix's ids (at least one).
            queries: (suffix ids, target ids) per query, as :meth:`encode` returns them (targets non-empty).
            progress: show a progress bar.

        Returns:
            float64 array, shape (len(queries),): log p(target | prefix + suffix) per query.
        """
        _check_ids(prefix_ids, queries)
        encoded = queries
        if self._prefix is None or self._prefix[0] != prefix_ids:  # the cache scores one prefix in chunks
            self._prefix = (prefix_ids, self._prefix_cache(prefix_ids[:-1]))
        shared = self._prefix[1]
        inputs = [([prefix_ids[-1]] + suffix + target)[:-1] for suffix, target in encoded]
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))  # similar lengths: little padding
        scores = np.empty(len(inputs))
        with (
            report_progress(total=len(inputs), enabled=progress, desc="scoring (prefix reuse)") as update,
            _attention(self._model, _ATTENTION),
        ):
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                scores[batch] = self._score_batch(
                    [inputs[i] for i in batch], [encoded[i][1] for i in batch], shared, offset=len(prefix_ids) - 1
                )
                update(len(batch))
        return scores

    def _prefix_cache(self, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the prefix's keys and values, each (1, KVH, len(ids), D)."""
        if not ids:  # a one-token prefix: every query carries it, nothing to share
            config = self._model.config.get_text_config()
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            empty = torch.empty(1, config.num_key_value_heads, 0, head_dim, dtype=self._model.dtype, device=self.device)
            return [(empty, empty)] * config.num_hidden_layers
        cache = self._model.get_decoder()(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        return [(layer.keys, layer.values) for layer in cache.past_key_values.layers]

    def _score_batch(
        self,
        inputs: list[list[int]],
        targets: list[list[int]],
        shared: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        offset: int,
    ) -> np.ndarray:
        """Summed target log-probs of one batch (module doc, steps 2-4); ``offset`` = first input's position."""
        length = max(map(len, inputs))
        ids = torch.full((len(inputs), length), self._pad_id, dtype=torch.long)
        for row, tokens in enumerate(inputs):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        positions = torch.arange(offset, offset + length, device=self.device).unsqueeze(0)
        hidden = self._model.get_decoder()(
            input_ids=ids.to(self.device), position_ids=positions, use_cache=False, shared_prefix=shared
        ).last_hidden_state
        # the last len(target) positions of each row predict its target tokens
        rows = np.repeat(np.arange(len(inputs)), [len(t) for t in targets])
        cols = np.concatenate([np.arange(len(x) - len(t), len(x)) for x, t in zip(inputs, targets)])
        logprobs = self._model.get_output_embeddings()(hidden[rows, cols]).float().log_softmax(dim=-1)
        target_ids = torch.tensor(np.concatenate(targets), device=self.device)
        token_logprobs = logprobs.gather(1, target_ids[:, None]).squeeze(1).double().cpu()
        sums = torch.zeros(len(inputs), dtype=torch.float64).index_add_(0, torch.from_numpy(rows), token_logprobs)
        return sums.numpy()

    @torch.inference_mode()
    def generate(self, *, prompts: Sequence[str], max_new_tokens: int, progress: bool = True) -> list[str]:
        """Greedy continuations, batched by prompt length with left padding (``model.generate``).

        Arguments and return value as in :meth:`Scorer.generate`.
        """
        encoded = self.encode_prompts(prompts=prompts, max_new_tokens=max_new_tokens)
        # chat models end a turn with a token that may not be the tokenizer's eos (Llama 3: <|eot_id|>)
        configured = self._model.generation_config.eos_token_id
        stop_ids = {self.tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        texts = [""] * len(encoded)
        with report_progress(total=len(encoded), enabled=progress, desc="generating") as update:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                length = max(len(encoded[i]) for i in batch)
                ids = torch.full((len(batch), length), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
                    ids[row, length - len(encoded[i]) :] = torch.tensor(encoded[i])
                    mask[row, length - len(encoded[i]) :] = 1
                generated = self._model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=max_new_tokens,
                    do_sample=False, pad_token_id=self._pad_id, eos_token_id=sorted(stop_ids),
                )
                for row, i in enumerate(batch):
                    texts[i] = self.tokenizer.decode(generated[row, length:], skip_special_tokens=True)
                update(len(batch))
        return texts

    def score_naive(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        """Reference scores: each full prompt (prefix + suffix + target ids) through the whole model.

        Same arguments and result as :meth:`score`; no reuse, one query per forward pass.
        """
        prefix_ids, encoded = self.encode(prefix=prefix, queries=queries)
        return self.score_naive_ids(prefix_ids=prefix_ids, queries=encoded, progress=progress)

    @torch.inference_mode()
    def score_naive_ids(
        self, *, prefix_ids: list[int], queries: Sequence[EncodedQuery], progress: bool = True
    ) -> np.ndarray:
        """:meth:`score_naive` on token ids; arguments and result as in :meth:`score_ids`."""
        _check_ids(prefix_ids, queries)
        encoded = queries
        scores = np.empty(len(encoded))
        with report_progress(total=len(encoded), enabled=progress, desc="scoring (naive)") as update:
            for i, (suffix_ids, target_ids) in enumerate(encoded):
                ids = torch.tensor([prefix_ids + suffix_ids + target_ids], device=self.device)
                logprobs = self._model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(dim=-1)
                first = len(prefix_ids) + len(suffix_ids) - 1  # logits at j predict token j + 1
                predicted = logprobs[first : first + len(target_ids)]
                target = torch.tensor(target_ids, device=self.device)[:, None]
                scores[i] = predicted.gather(1, target).double().sum().item()
                update(1)
        return scores


def _check_ids(prefix_ids: list[int], queries: Sequence[EncodedQuery]) -> None:
    """Refuse an empty prefix or target (``encode`` never returns one; stored ids are checked here)."""
    if not prefix_ids:
        raise ScoringError("the prefix has no tokens")
    empty = next((i for i, (_, target) in enumerate(queries) if not target), None)
    if empty is not None:
        raise ScoringError(f"query {empty}: the target has no tokens")
