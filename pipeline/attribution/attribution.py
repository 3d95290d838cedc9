"""Word-level Integrated Gradients for a sequence classifier.

Words are whitespace words (``text.split()``); the model sees subword tokens. ``encode_words``
records which word each token came from, ``tokens_to_words`` sums token scores back into words.

``integrated_gradients`` is hand-written so that it can run with ``create_graph=True``: the
attribution is then a differentiable function of the model parameters, which the guided
training loss needs (captum detaches its gradients). It integrates the gradient of the target
logit with respect to the *word* embeddings (``model.get_input_embeddings()``); the model adds
position and token-type embeddings itself because the path is fed through ``inputs_embeds``.

Baseline (``pad_baseline``): every token of a word is replaced by the pad token; special tokens
([CLS]/[SEP], <s>/</s>) and padding stay as they are. Their input and baseline embeddings are
then equal, so they get exactly zero attribution and the word scores are the whole story.
Quadrature: the Riemann midpoint rule, alpha_k = (k + 1/2) / steps, equal weights 1 / steps
(captum ``method="riemann_middle"``); with few steps (m = 8 in training) it is more accurate
than the trapezoid rule and spends no evaluation on the baseline itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from pipeline.progress import progress


def encode_words(
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[Sequence[str]],
    *,
    max_length: int = 128,
    device: str | torch.device = "cpu",
) -> tuple[BatchEncoding, Tensor]:
    """Tokenise pre-split sentences and map every token to its word.

    Every word after the first is given a leading space, so byte-level BPE (RoBERTa) tokenises it
    as in running text ("Ġword") whether or not the tokenizer was built with
    ``add_prefix_space=True``; WordPiece (BERT) splits on whitespace and ignores the space.

    Args:
        tokenizer: a fast tokenizer (``word_ids()`` is needed).
        sentences: B sentences, each a list of words.
        max_length: token budget per sentence, special tokens included; longer sentences are
            truncated and their last words get no tokens.
        device: where the returned tensors live.

    Returns:
        (encoding, word_index): the padded encoding (``input_ids``, ``attention_mask``, ... of
        shape (B, T)) and ``word_index`` (B, T) long, the word position of each token, -1 for
        special and padding tokens.
    """
    if not tokenizer.is_fast:
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; word_ids() needs one")
    spaced = [[w if i == 0 else " " + w for i, w in enumerate(words)] for words in sentences]
    encoding = tokenizer(
        spaced,
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=True,
        padding_side="right",  # integrated_gradients trims padding off the end
        return_tensors="pt",
    )
    word_index = torch.tensor(
        [[-1 if w is None else w for w in encoding.word_ids(b)] for b in range(len(spaced))],
        dtype=torch.long,
    )
    return encoding.to(device), word_index.to(device)


def tokens_to_words(
    token_scores: Tensor, word_index: Tensor, *, n_words: int
) -> tuple[Tensor, Tensor]:
    """Sum subword scores into word scores (differentiable).

    Args:
        token_scores: (B, T) a score per token.
        word_index: (B, T) the word of each token, -1 for special and padding tokens (ignored).
        n_words: W, the padded number of words (the longest sentence of the batch).

    Returns:
        (word_scores, word_mask): (B, W) float, and (B, W) bool, True for words with at least one
        token. Padding words and words cut off by truncation score 0 and are masked out.
    """
    real = word_index >= 0
    index = word_index.clamp(min=0)  # -1 tokens are zeroed below, so word 0 receives nothing
    shape = (token_scores.shape[0], n_words)
    scores = token_scores.new_zeros(shape).scatter_add(
        1, index, torch.where(real, token_scores, torch.zeros_like(token_scores))
    )
    counts = torch.zeros(shape, dtype=torch.long, device=word_index.device)
    counts.scatter_add_(1, index, real.long())
    return scores, counts > 0


def pad_baseline(*, input_ids: Tensor, word_index: Tensor, pad_token_id: int) -> Tensor:
    """The IG baseline: word tokens become ``pad_token_id``, special and padding tokens stay.

    Args:
        input_ids: (B, T) token ids.
        word_index: (B, T) from ``encode_words``.
        pad_token_id: the tokenizer's pad token.

    Returns:
        (B, T) baseline token ids.
    """
    return torch.where(word_index >= 0, torch.full_like(input_ids, pad_token_id), input_ids)


def integrated_gradients(
    model: PreTrainedModel,
    *,
    input_ids: Tensor,
    baseline_ids: Tensor,
    attention_mask: Tensor,
    target: Tensor,
    steps: int,
    create_graph: bool = False,
    internal_batch_size: int | None = None,
    output: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """Integrated Gradients of the target logit w.r.t. the word embeddings, summed over hidden units.

    attribution_t = sum_h (x_th - x'_th) * (1/steps) * sum_k dF(x' + alpha_k (x - x')) / dx_th,
    with x, x' the word embeddings of ``input_ids`` and ``baseline_ids`` and alpha_k the midpoints
    (k + 1/2) / steps. The model is used in whatever mode it is in (dropout on in ``train()``).

    On CPU, where time grows with the padded token count, sentences of similar length share a pass
    trimmed to their own longest length (``_length_groups``); padding is masked, so only rounding
    changes. A GPU is launch-bound at these sizes and runs the whole padded batch at once.

    Args:
        model: a sequence classifier accepting ``inputs_embeds``.
        input_ids: (B, T) right-padded token ids.
        baseline_ids: (B, T) baseline token ids (``pad_baseline``).
        attention_mask: (B, T).
        target: (B,) the class whose logit is attributed.
        steps: number of interpolation points.
        create_graph: keep the graph so the result can be differentiated w.r.t. the parameters.
        internal_batch_size: rows per forward pass, as in captum: each pass evaluates
            ``max(1, internal_batch_size // n)`` interpolation points of a group of n sentences;
            None evaluates all ``steps`` points of a group in one (n * steps)-row pass.
        output: ``(logits (n, C), target (n,)) -> (n,)``, the scalar attributed instead of the
            target logit (e.g. its log-probability); None: the target logit.

    Returns:
        (B, T) attribution per token; exactly 0 where input and baseline tokens are equal.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lengths = attention_mask.sum(1).tolist()
    if input_ids.device.type == "cpu":
        groups = _length_groups(lengths, steps=steps)
    else:
        groups = [list(range(len(lengths)))]
    attribution = torch.zeros(input_ids.shape, device=input_ids.device)
    with torch.enable_grad():
        # one lookup for the whole batch: each lookup costs a dense vocabulary-sized gradient
        inputs, baseline = model.get_input_embeddings()(torch.stack([input_ids, baseline_ids]))
        if not create_graph:  # only gradients w.r.t. the path are needed, not through the embeddings
            inputs, baseline = inputs.detach(), baseline.detach()
        for rows in groups:
            width = max(lengths[r] for r in rows)
            index = torch.tensor(rows, device=input_ids.device)
            part = _integrate(
                model,
                inputs=inputs[index, :width],
                baseline=baseline[index, :width],
                attention_mask=attention_mask[index, :width],
                target=target[index],
                steps=steps,
                create_graph=create_graph,
                internal_batch_size=internal_batch_size,
                output=output,
            )
            columns = torch.arange(width, device=input_ids.device)
            attribution = attribution.index_put((index[:, None], columns[None, :]), part.float())
    return attribution


# A group's fixed cost in padded tokens x steps. Measured for the guided loss on MiniLM, CPU, one
# thread: about 1.6 ms per padded token per step plus 0.11 s per group, i.e. ~64 token-steps.
_GROUP_OVERHEAD = 64


def _length_groups(lengths: list[int], *, steps: int) -> list[list[int]]:
    """Split sentence indices into groups of similar length, minimising the estimated IG cost.

    Sentences sorted by length are cut into contiguous groups minimising
    sum_g (steps * size_g * longest_g + _GROUP_OVERHEAD) by dynamic programming.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0.0] + [math.inf] * len(order)  # best[j]: cheapest cost of the j shortest sentences
    cut = [0] * (len(order) + 1)  # cut[j]: where the last group of that solution starts
    for j in range(1, len(order) + 1):
        for i in range(j):
            cost = best[i] + steps * (j - i) * lengths[order[j - 1]] + _GROUP_OVERHEAD
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups


def _integrate(
    model: PreTrainedModel,
    *,
    inputs: Tensor,
    baseline: Tensor,
    attention_mask: Tensor,
    target: Tensor,
    steps: int,
    create_graph: bool,
    internal_batch_size: int | None,
    output: Callable[[Tensor, Tensor], Tensor] | None,
) -> Tensor:
    """``integrated_gradients`` of one group of n sentences given their (n, T, H) word embeddings."""
    batch = inputs.shape[0]
    per_pass = steps if internal_batch_size is None else max(1, internal_batch_size // batch)
    delta = inputs - baseline
    alphas = (torch.arange(steps, device=inputs.device, dtype=inputs.dtype) + 0.5) / steps
    total = torch.zeros_like(inputs)
    for chunk in alphas.split(per_pass):
        k = chunk.shape[0]
        # alpha-major rows, (k * n, T, H): row j * n + b is sentence b at alpha_j
        path = (baseline + chunk.view(k, 1, 1, 1) * delta).flatten(0, 1)
        if not path.requires_grad:
            path.requires_grad_()
        logits = model(inputs_embeds=path, attention_mask=attention_mask.repeat(k, 1)).logits
        targets = target.repeat(k)
        if output is None:
            picked = logits.float().gather(1, targets.unsqueeze(1)).sum()
        else:
            picked = output(logits.float(), targets).sum()
        (grad,) = torch.autograd.grad(picked, path, create_graph=create_graph)
        total = total + grad.view(k, *inputs.shape).sum(0)
    return (delta * total).sum(-1) / steps


def gradient_x_input(
    *,
    embeddings: Tensor,
    log_probs: Tensor,
    target: Tensor,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """Gradient x input of log p_target w.r.t. the word embeddings, summed over hidden units.

    a_t = e_t . d log p_y / d e_t. The caller runs the forward (``model(inputs_embeds=embeddings)``)
    so that one pass can feed several terms; sentences are independent, so the gradient of the
    batch sum is each sentence's own gradient.

    Args:
        embeddings: (B, T, H) the word embeddings the forward was fed, part of its graph.
        log_probs: (B, C) log-softmax of that forward's logits.
        target: (B,) the class whose log-probability is attributed.
        create_graph: keep the graph so the result can be differentiated w.r.t. the parameters.
        retain_graph: keep the forward's graph for later gradients (default: ``create_graph``).

    Returns:
        (B, T) attribution per token (detached unless ``create_graph``).
    """
    picked = log_probs.gather(1, target.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(picked, embeddings, create_graph=create_graph, retain_graph=retain_graph)
    return (embeddings * grad).sum(-1) if create_graph else (embeddings.detach() * grad).sum(-1)


def length_batches(sentences: Sequence[Sequence[str]], *, batch_size: int) -> list[np.ndarray]:
    """Indices of ``sentences`` in batches of similar length, longest first, so a batch pads little.

    A random batch of short texts pads to about twice its words; sorted, about 1.3x. Callers put
    their results back in input order, so only the padding changes, not what is computed.

    Returns:
        index arrays of at most ``batch_size`` that cover ``range(len(sentences))`` once.
    """
    order = np.argsort([-len(words) for words in sentences], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def word_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[Sequence[str]],
    attribute: Callable[[BatchEncoding, Tensor, np.ndarray], Tensor],
    batch_size: int,
    max_length: int,
) -> list[np.ndarray]:
    """One score per word for every sentence, from a token-level attribution, with dropout off.

    Args:
        model: the classifier (put in eval mode, restored afterwards).
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        attribute: ``(encoding, word_index, rows) -> (B, T)`` token scores of the sentences at ``rows``
            (indices into ``sentences``), encoded by ``encode_words``.
        batch_size: sentences per call of ``attribute`` (batched by ``length_batches``).
        max_length: tokens per sentence; words past it score 0.

    Returns:
        Per sentence, in input order, float64 scores of shape (len(words),): its tokens' scores summed.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = [np.zeros(0)] * len(sentences)
    with progress(total=len(sentences), desc="attribution", unit="sentences") as update:
        for rows in length_batches(sentences, batch_size=batch_size):
            chunk = [sentences[i] for i in rows]
            encoding, word_index = encode_words(tokenizer, chunk, max_length=max_length, device=device)
            words, _ = tokens_to_words(attribute(encoding, word_index, rows), word_index, n_words=max(len(w) for w in chunk))
            words = words.detach().double().cpu().numpy()
            for i, row in enumerate(rows):
                out[row] = words[i, : len(chunk[i])].copy()
            update(len(rows))
    model.train(was_training)
    return out


def gradient_x_input_words(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[Sequence[str]],
    labels: Tensor,
    batch_size: int,
    max_length: int = 128,
) -> list[np.ndarray]:
    """Word-level gradient x input of log p(label) for every sentence, with dropout off.

    Args:
        model: a sequence classifier (put in eval mode, restored afterwards).
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        labels: (N,) the class each sentence's attribution is for.
        batch_size: sentences per forward pass.
        max_length: tokens per sentence; words past it score 0.

    Returns:
        Per sentence, float64 scores of shape (len(words),): its tokens' ``gradient_x_input`` summed.
    """
    labels = torch.as_tensor(labels)

    def attribute(encoding: BatchEncoding, word_index: Tensor, rows: np.ndarray) -> Tensor:
        embeddings = model.get_input_embeddings()(encoding["input_ids"]).detach().requires_grad_()
        logits = model(inputs_embeds=embeddings, attention_mask=encoding["attention_mask"]).logits
        return gradient_x_input(embeddings=embeddings, log_probs=logits.float().log_softmax(-1),
                                target=labels[torch.from_numpy(rows)].to(embeddings.device))

    return word_scores(model, tokenizer, sentences=sentences, attribute=attribute, batch_size=batch_size,
                       max_length=max_length)


def word_gradient_norms(
    model: PreTrainedModel,
    *,
    input_ids: Tensor,
    attention_mask: Tensor,
    word_index: Tensor,
    n_words: int,
    output: Callable[[Tensor], Tensor],
    create_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per word, the L2 norm of the whole input gradient of ``output`` over the word's token embeddings.

    Unlike gradient x input or IG, which project the gradient on the embedding (a student can turn
    its gradient orthogonal to a word and still use it), this is zero only where the output is
    locally insensitive to every direction of the word's embedding: Ross et al. 2017's
    "right for the right reasons" quantity.

    Args:
        model: a sequence classifier accepting ``inputs_embeds`` (in whatever mode it is in).
        input_ids: (B, T) token ids.
        attention_mask: (B, T).
        word_index: (B, T) from ``encode_words``.
        n_words: W, the padded number of words.
        output: (B, C) logits -> (B,) the scalar per sentence to differentiate.
        create_graph: keep the graph so the norms can be differentiated w.r.t. the parameters.

    Returns:
        (norms, word_mask): (B, W) float, sqrt(sum over the word's tokens and hidden units of g^2),
        and (B, W) bool, True for words with a token.
    """
    with torch.enable_grad():
        embeddings = model.get_input_embeddings()(input_ids)
        if not create_graph:
            embeddings = embeddings.detach()
        if not embeddings.requires_grad:
            embeddings.requires_grad_()
        logits = model(inputs_embeds=embeddings, attention_mask=attention_mask).logits.float()
        (grad,) = torch.autograd.grad(output(logits).sum(), embeddings, create_graph=create_graph)
    squared, mask = tokens_to_words((grad.float() ** 2).sum(-1), word_index, n_words=n_words)
    # the epsilon keeps sqrt's gradient finite at a word the model is exactly insensitive to
    return torch.sqrt(squared + 1e-12) * mask, mask


def occlusion(
    model: PreTrainedModel,
    *,
    input_ids: Tensor,
    attention_mask: Tensor,
    word_index: Tensor,
    n_words: int,
    target: Tensor,
    output: Callable[[Tensor, Tensor], Tensor],
    pad_token_id: int,
) -> tuple[Tensor, Tensor]:
    """Per word, how much ``output`` drops when the word's tokens become the pad token (IG's baseline, one word at a time).

    A finite difference of the model's own behaviour, so a student cannot hide a word it uses from
    it: no saturation (the local gradient of a saturated path is ~0) and no interaction (IG's
    completeness may credit a word's effect to the words it gates) escapes it. Differentiable
    w.r.t. the parameters by the ordinary backward; costs one forward per word.

    Args:
        model: a sequence classifier (in whatever mode it is in).
        input_ids: (B, T) token ids.
        attention_mask: (B, T).
        word_index: (B, T) from ``encode_words``.
        n_words: W, the padded number of words.
        target: (B,) the class each sentence's output is for.
        output: ``(logits (N, C), target (N,)) -> (N,)``, the scalar per sentence.
        pad_token_id: the replacement token.

    Returns:
        (scores, word_mask): (B, W) float, output(x) - output(x without word w), 0 on padding words,
        and (B, W) bool, True for words with a token.
    """
    _, mask = tokens_to_words(torch.zeros(input_ids.shape, device=input_ids.device), word_index, n_words=n_words)
    rows, words = mask.nonzero(as_tuple=True)  # one occluded copy per real word
    occluded = torch.where(word_index[rows] == words[:, None], torch.full_like(input_ids[rows], pad_token_id), input_ids[rows])
    full = output(model(input_ids=input_ids, attention_mask=attention_mask).logits.float(), target)
    dropped = output(model(input_ids=occluded, attention_mask=attention_mask[rows]).logits.float(), target[rows])
    scores = torch.zeros(mask.shape, device=input_ids.device, dtype=full.dtype).index_put((rows, words), full[rows] - dropped)
    return scores, mask
