"""Word-level attribution priors: per training sentence, a score for each word, from every source.

``cap`` and ``lime`` regress the teacher LLM's scores of the perturbed sentences (``llm`` runs both on
a setting's score file; the scores themselves come from ``pipeline.llm``, which this package never
imports); ``ig`` is captum's Integrated Gradients on a fine-tuned student; ``controls`` are the
oracle, random and decoy-truth priors that check whether any prior helps; ``fusion`` normalises each
source per sentence and combines them word-wise into the hybrids (its normaliser also serves the
training loss). The sources and combination names are declared in the core (``pipeline.prior_sources``).
"""
