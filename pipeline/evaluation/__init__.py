"""What a trained student and its teacher are worth: the metrics, the adversarial test sets, the diagnostics.

``evaluation`` scores a trained student (accuracy, group and decoy metrics, ERASER faithfulness of
its own rationale via ``eraser``, agreement with its prior, adversarial accuracy), with its class
probabilities from ``predict``; ``adversarial`` (rule-based keyword addition and replacement) and
``adversarial_llm`` (the teacher LLM rewrites the sentences) build the attacked test sets that
``attacks`` writes for a setting; ``diagnostics`` asks whether the teacher LLM carries class signal
and whether the priors agree. It reads what the layers below produce and writes metrics; the report
reads those.
"""
