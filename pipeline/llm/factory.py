"""The backend factory: the scorer a backend name (or params.yaml's ``scoring`` section) asks for.

Apart from :mod:`pipeline.llm.base` so that the interface the backends implement never imports
them: the factory imports each backend when it is asked for (vllm is an optional install).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError
from pipeline.llm.base import Scorer, VllmMode

if TYPE_CHECKING:
    from pipeline.params import Params, VllmParams


def make_scorer(
    *,
    backend: Literal["transformers", "vllm", "openai"],
    model: str,
    device: str = "cpu",
    batch_size: int = 32,
    base_url: str | Sequence[str] | None = None,
    dtype: str | None = None,
    vllm_mode: VllmMode = "next_token",
    vllm: VllmParams | None = None,
) -> Scorer:
    """Build the scorer for ``backend``.

    Args:
        backend: "transformers" (CPU or CUDA, shared-prefix KV reuse), "vllm" (GPU, offline
            engine; needs ``pip install 'capflow[vllm]'``) or "openai" (a running ``vllm serve``).
        model: built-in name, local directory or hub id (for "openai": the served model's name,
            whose tokenizer must also be loadable locally).
        device: "cpu" or "cuda[:i]" (transformers only).
        batch_size: queries per forward pass / per HTTP request.
        base_url: the server's root URL, e.g. "http://localhost:8000", or a list of replicas' roots
            (required by openai, else unused).
        dtype: "float32", "bfloat16" or "float16"; None = float32 on CPU, bfloat16 on CUDA
            (transformers), ``vllm.dtype`` (vllm: given, it overrides that).
        vllm_mode: "next_token" (one request per target token, prefix-cached) or "prompt_logprobs"
            (one request per query, whole-prompt log-probabilities); vllm and openai only.
        vllm: the vllm engine's settings (``scoring.vllm``); None = vLLM's defaults; vllm only.

    Raises:
        ConfigError: unknown backend, bad dtype (or vllm_mode, for vllm and openai), or no base_url for backend=openai.
        ModelError: the model cannot be found or loaded.
    """
    if backend not in ("transformers", "vllm", "openai"):
        raise ConfigError(f"scoring.backend: unknown backend {backend!r}; use transformers, vllm or openai")
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise ConfigError(f"scoring dtype: {dtype!r} is not one of float32, bfloat16, float16")
    if backend == "openai" and base_url is None:
        raise ConfigError("scoring.base_url: backend=openai needs the server URL, e.g. http://localhost:8000")
    if backend == "transformers":
        from pipeline.llm.transformers_backend import TransformersScorer

        return TransformersScorer(model=model, device=device, batch_size=batch_size, dtype=dtype)
    if backend == "vllm":
        from pipeline.llm.vllm_backend import VllmScorer
        from pipeline.params import VllmParams

        engine = vllm or VllmParams()
        if dtype is not None:
            engine = engine.model_copy(update={"dtype": dtype})
        return VllmScorer(model=model, batch_size=batch_size, mode=vllm_mode, engine=engine)
    from pipeline.llm.openai_backend import OpenAIScorer

    return OpenAIScorer(model=model, base_url=base_url, batch_size=batch_size, mode=vllm_mode)


def scorer_from_params(params: Params) -> Scorer:
    """The teacher LLM that params.yaml names: ``scoring.{backend, model, batch_size, base_url, vllm_mode, vllm}``.

    Args:
        params: the validated parameters.
    """
    from pipeline.models import resolve_device

    return make_scorer(backend=params.scoring.backend, model=params.scoring.model, device=resolve_device(params.device),
                       batch_size=params.scoring.batch_size, base_url=params.scoring.base_url,
                       vllm_mode=params.scoring.vllm_mode, vllm=params.scoring.vllm)
