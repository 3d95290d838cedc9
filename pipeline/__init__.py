"""capflow: a reproducible pipeline for explanation-guided learning with attribution priors.

The top level holds the core every concern shares (errors, io, artifacts, progress, params and the
types params.yaml is written in: prompts, prior_sources; models, cli) and the flow (flow, and the
launcher that starts its stage processes); everything else
lives in the subpackage of its concern (attribution, data, llm, priors, training, evaluation,
reporting), whose docstring says what it owns. A layer imports only itself and the layers before it,
in the order tests/test_layers.py declares, and no modules import each other round.
"""
