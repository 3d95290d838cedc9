"""The sentences: datasets, their k-shot draws, and what is planted in or drawn over them.

``datasets`` loads a dataset from the mirror or the hub, validates it and gives rows stable ids
(with a spurious-correlation subset from ``groups``' cell samplers, or a decoy benchmark from
``decoy``'s planted words); ``fewshot`` draws the k-shot training sets; ``perturb`` draws the word
masks the CAP and LIME priors score, from a seeded stream per sentence (``sentence_rng``) that the
decoys, attacks and control priors draw from too. Nothing here runs an LLM or trains; it uses only
the core and the student's word encoding (``pipeline.attribution``).
"""
