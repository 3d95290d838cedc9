"""Word-level attribution of a student classifier: which whitespace words its prediction rests on.

``attribution`` maps words to subword tokens and back (``encode_words``, ``tokens_to_words``) and
computes the student's own, differentiable word scores (Integrated Gradients, gradient x input,
occlusion), which training aligns to a prior and evaluation takes as the rationale; ``gradcam`` is
text Grad-CAM over a hidden layer (eX2L, ALIGN). It knows no dataset, prior or objective, so every
layer above may use it; the data layer does (a decoy must tokenise as the student reads it).
"""
