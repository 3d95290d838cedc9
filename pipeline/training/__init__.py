"""Training a student: the one training loop, the objectives it optimises, and a student end to end.

``training`` is the loop shared by every objective (AdamW, warm-up and decay, clipping, the training
curve); ``objectives`` is the registry of losses, one module each (the CAP family's ``guided`` and
``rrr`` align the student's own attribution to a prior, the siblings bring their own modules), each
declaring what it needs through ``objectives.base``; ``students`` builds one student's examples,
objective and checkpoint from params. Below it: the student's attribution and the priors' normaliser
(a prior is read from its file, never computed here); it knows nothing of evaluation or the report.
"""
