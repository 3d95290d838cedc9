"""The teacher LLM: log p(label | prompt) through a pluggable backend, its caches, the perturbations' scores.

``base`` is the scorer interface every backend implements (``transformers_backend``, ``vllm_backend``,
``openai_backend``); ``factory`` builds the one params.yaml names and is the only module that imports
the backends. ``cache`` computes each score or generation once across runs and stages; ``scores``
scores a setting's CAP and LIME perturbations through it. Prompt templates are params.yaml types and
live in the core (``pipeline.prompts``).
"""
