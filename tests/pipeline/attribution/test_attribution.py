import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from tokenizers.pre_tokenizers import ByteLevel
from tokenizers.processors import RobertaProcessing
from transformers import PreTrainedTokenizerFast

from pipeline.attribution.attribution import (
    encode_words,
    integrated_gradients,
    length_batches,
    pad_baseline,
    tokens_to_words,
    word_scores,
)

SENTENCES = [
    "I lost my card, what should I do?".split(),
    "Unbelievably, the top-up failed!!".split(),
    "refund".split(),
]
TARGET = torch.tensor([0, 2, 1])


@pytest.fixture(scope="module")
def encoded(minilm):
    model, tokenizer = minilm
    encoding, word_index = encode_words(tokenizer, SENTENCES)
    baseline = pad_baseline(input_ids=encoding["input_ids"], word_index=word_index, pad_token_id=tokenizer.pad_token_id)
    return encoding, word_index, baseline


def _byte_level_tokenizer(*, add_prefix_space: bool) -> PreTrainedTokenizerFast:
    """A RoBERTa-style tokenizer (byte-level BPE, <s> x </s>) trained offline on a few sentences."""
    bpe = ByteLevelBPETokenizer()
    corpus = ["where is my new card?", "I want a refund for the transfer.", "the card payment was declined"]
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.pre_tokenizer = ByteLevel(add_prefix_space=add_prefix_space)
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(bpe.to_str()), bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _words_from_tokens(tokenizer, input_ids, word_index, n_words):
    return [
        tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(input_ids[word_index == w].tolist()))
        for w in range(n_words)
    ]


def test_encode_words_maps_wordpiece_tokens_to_their_words(minilm, encoded):
    _, tokenizer = minilm
    encoding, word_index, _ = encoded
    assert word_index.shape == encoding["input_ids"].shape and word_index.dtype == torch.long
    for b, words in enumerate(SENTENCES):
        ids, index = encoding["input_ids"][b], word_index[b]
        pieces = _words_from_tokens(tokenizer, ids, index, len(words))
        # the uncased WordPiece decoder puts spaces around punctuation
        assert ["".join(p.split()) for p in pieces] == [w.lower() for w in words]
        special = torch.isin(ids, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]))
        assert torch.equal(index == -1, special)
    # punctuation and a word split into many pieces
    assert (word_index[1] == 0).sum() >= 3
    assert (word_index[1] == 3).sum() >= 3  # "failed!!" -> failed ! !


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_encode_words_tokenises_byte_level_bpe_as_running_text(add_prefix_space):
    tokenizer = _byte_level_tokenizer(add_prefix_space=add_prefix_space)
    sentences = [["where", "is", "my", "unbelievably-new", "card??"], ["refund", "it!"]]
    encoding, word_index = encode_words(tokenizer, sentences)
    for b, words in enumerate(sentences):
        real = encoding["attention_mask"][b].bool()
        ids = encoding["input_ids"][b][real]
        assert ids.tolist() == tokenizer(" ".join(words))["input_ids"]
        pieces = _words_from_tokens(tokenizer, encoding["input_ids"][b], word_index[b], len(words))
        assert [p.strip() for p in pieces] == words
        assert word_index[b][real][[0, -1]].tolist() == [-1, -1]  # <s> and </s>
        assert (word_index[b][~real] == -1).all()
    assert (word_index[0] == 3).sum() >= 4  # an out-of-corpus word falls apart into many pieces


def test_tokens_to_words_sums_subwords_and_masks_truncated_words(minilm):
    _, tokenizer = minilm
    words = "the transfer to my account was declined yesterday".split()
    encoding, word_index = encode_words(tokenizer, [words, words[:2]], max_length=6)  # room for 4 words
    scores = torch.rand(word_index.shape, dtype=torch.float64, requires_grad=True)
    by_word, mask = tokens_to_words(scores, word_index, n_words=len(words))
    assert by_word.shape == mask.shape == (2, len(words))
    assert mask.tolist() == [[True] * 4 + [False] * 4, [True] * 2 + [False] * 6]
    for b in range(2):
        for w in range(len(words)):
            torch.testing.assert_close(by_word[b, w], scores[b][word_index[b] == w].sum())
    by_word.sum().backward()
    assert torch.equal(scores.grad, (word_index >= 0).double())  # specials and padding contribute nothing


def test_inputs_embeds_forward_equals_input_ids_forward(minilm, encoded):
    model, _ = minilm
    encoding, _, _ = encoded
    with torch.no_grad():
        from_ids = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
        embeds = model.get_input_embeddings()(encoding["input_ids"])
        from_embeds = model(inputs_embeds=embeds, attention_mask=encoding["attention_mask"]).logits
    torch.testing.assert_close(from_embeds, from_ids, rtol=0, atol=1e-6)


def _ig(model, encoded, **options):
    """integrated_gradients of the encoded sentences toward TARGET from their pad-token baseline."""
    encoding, _, baseline = encoded
    return integrated_gradients(
        model, input_ids=encoding["input_ids"], baseline_ids=baseline, attention_mask=encoding["attention_mask"],
        target=TARGET, **options
    )


def test_integrated_gradients_is_complete(minilm, encoded):
    model, _ = minilm
    encoding, word_index, baseline = encoded
    attribution = _ig(model, encoded, steps=64)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        def logit(ids):
            return model(inputs_embeds=embed(ids), attention_mask=encoding["attention_mask"]).logits[range(3), TARGET]

        difference = logit(encoding["input_ids"]) - logit(baseline)
    assert (difference.abs() > 0.05).all()
    assert ((attribution.sum(1) - difference).abs() <= 0.05 * difference.abs()).all()
    assert (attribution[word_index < 0] == 0).all()  # special and padding tokens equal their baseline


@pytest.mark.parametrize("internal_batch_size", [None, 7])
def test_integrated_gradients_equals_captum(minilm, encoded, internal_batch_size):
    model, _ = minilm
    encoding, _, baseline = encoded
    ours = _ig(model, encoded, steps=16, internal_batch_size=internal_batch_size)
    explainer = LayerIntegratedGradients(
        lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits, model.get_input_embeddings()
    )
    reference = explainer.attribute(
        encoding["input_ids"],
        baselines=baseline,
        additional_forward_args=(encoding["attention_mask"],),
        target=TARGET,
        n_steps=16,
        method="riemann_middle",
    ).sum(-1)
    assert not ours.requires_grad
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
    assert reference.abs().max() > 1e-2  # the comparison is not between two near-zero tensors


def test_integrated_gradients_with_create_graph_is_differentiable_in_the_parameters(minilm, encoded):
    model, _ = minilm
    model.zero_grad()
    attribution = _ig(model, encoded, steps=2, create_graph=True)
    (attribution**2).sum().backward()
    encoder_grad = model.bert.encoder.layer[0].attention.self.query.weight.grad
    assert encoder_grad is not None and encoder_grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0  # through x - x' as well
    model.zero_grad()


def test_length_batches_cover_every_sentence_once_longest_first():
    sentences = [["a"] * n for n in (3, 9, 1, 9, 5, 2, 7)]
    batches = length_batches(sentences, batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert [[len(sentences[i]) for i in b] for b in batches] == [[9, 9, 7], [5, 3, 2], [1]]


def test_word_scores_come_back_in_input_order_whatever_the_batching(minilm):
    model, tokenizer = minilm
    sentences = [["short"], "a much longer sentence about card delivery".split(), ["two", "words"]]
    # the attribution is each token's id, so every word's score tells which sentence it came from
    ids = [word_scores(model, tokenizer, sentences=sentences, batch_size=size, max_length=32,
                       attribute=lambda encoding, word_index, rows: encoding["input_ids"].double())
           for size in (1, 2, 3)]
    for scores in ids:
        assert [len(s) for s in scores] == [1, 7, 2]
        for got, expected in zip(scores, ids[0]):
            np.testing.assert_array_equal(got, expected)
    alone = word_scores(model, tokenizer, sentences=sentences[2:], batch_size=1, max_length=32,
                        attribute=lambda encoding, word_index, rows: encoding["input_ids"].double())
    np.testing.assert_array_equal(ids[2][2], alone[0])


def test_occlusion_is_the_outputs_drop_when_one_word_becomes_padding(minilm):
    from pipeline.attribution.attribution import occlusion

    model, tokenizer = minilm
    sentences = [["the", "zorvik", "film", "was", "great"], ["dull"]]
    encoding, word_index = encode_words(tokenizer, sentences)
    target = torch.tensor([1, 0])

    def output(logits, labels):
        return logits.gather(1, labels[:, None]).squeeze(1)

    scores, mask = occlusion(model, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                             word_index=word_index, n_words=5, target=target, output=output,
                             pad_token_id=tokenizer.pad_token_id)
    assert mask.tolist() == [[True] * 5, [True, False, False, False, False]] and scores[1, 1:].eq(0).all()
    with torch.no_grad():
        full = output(model(**encoding).logits, target)
        for b, w in ((0, 1), (0, 4), (1, 0)):
            ids = encoding["input_ids"].clone()
            ids[b][word_index[b] == w] = tokenizer.pad_token_id
            dropped = output(model(input_ids=ids, attention_mask=encoding["attention_mask"]).logits, target)
            assert scores[b, w].item() == pytest.approx((full - dropped)[b].item(), abs=1e-5)
