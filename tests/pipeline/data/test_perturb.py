import subprocess
import sys

import numpy as np
import pytest
from lime.lime_text import LimeTextExplainer

from pipeline.data.perturb import cap_masks, lime_masks, masked_sentence, sentence_rng
from tests.conftest import REPO


def test_sentence_rng_is_stable_across_processes_and_keyed_by_seed_and_id():
    draw = sentence_rng(seed=7, sentence_id="train-42").integers(0, 2**62, size=4).tolist()
    code = (
        "from pipeline.data.perturb import sentence_rng; "
        "print(sentence_rng(seed=7, sentence_id='train-42').integers(0, 2**62, size=4).tolist())"
    )
    # another interpreter with another hash salt must draw the same numbers
    env = {"PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == str(draw)
    assert sentence_rng(seed=8, sentence_id="train-42").integers(0, 2**62, size=4).tolist() != draw
    assert sentence_rng(seed=7, sentence_id="train-43").integers(0, 2**62, size=4).tolist() != draw


@pytest.mark.parametrize("d", [3, 4, 5, 9, 16, 25])
def test_cap_masks_remove_between_2_and_half_plus_one_words_then_each_word_alone(d):
    masks = cap_masks(d, n=200, rng=np.random.default_rng(d))
    assert masks.shape == (200 + d, d) and masks.dtype == bool
    removed = (~masks[:200]).sum(axis=1)
    assert removed.min() == 2 and removed.max() == d // 2 + 1
    np.testing.assert_array_equal(masks[200:], ~np.eye(d, dtype=bool))


def test_cap_masks_draw_sizes_and_positions_uniformly():
    d, n = 10, 30_000
    removed = ~cap_masks(d, n=n, rng=np.random.default_rng(0))[:n]
    sizes = np.bincount(removed.sum(axis=1), minlength=d + 1)[2 : d // 2 + 2] / n
    np.testing.assert_allclose(sizes, 1 / 5, atol=0.01)  # s uniform in 2..6
    np.testing.assert_allclose(removed.mean(axis=0), 4 / d, atol=0.01)  # E[s] / d per position


def test_cap_masks_short_sentences_never_empty_the_random_masks():
    two = cap_masks(2, n=50, rng=np.random.default_rng(0))
    assert ((~two[:50]).sum(axis=1) == 1).all()
    one = cap_masks(1, n=5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(one, [[True]] * 5 + [[False]])


def test_lime_masks_draw_like_lime_text_explainer():
    words = [f"w{j}" for j in range(8)]
    n = 4000
    seen = []

    def classifier_fn(texts):
        seen.extend(texts)
        return np.full((len(texts), 2), 0.5)

    explainer = LimeTextExplainer(bow=False, random_state=0)
    explainer.explain_instance(" ".join(words), classifier_fn, num_samples=n, labels=(0,))
    lime_rows = np.array([[token != "UNKWORDZ" for token in text.split()] for text in seen])
    ours = lime_masks(len(words), n=n, rng=np.random.default_rng(0))

    assert ours.shape == (n, len(words)) and ours[0].all() and lime_rows[0].all()
    assert (~ours[1:]).sum(axis=1).min() >= 1
    hist = [np.bincount((~rows[1:]).sum(axis=1), minlength=len(words) + 1) / (n - 1) for rows in (ours, lime_rows)]
    np.testing.assert_allclose(hist[0], hist[1], atol=0.025)  # k uniform in 1..d for both
    np.testing.assert_allclose((~ours[1:]).mean(axis=0), (~lime_rows[1:]).mean(axis=0), atol=0.03)


def test_masked_sentence_deletes_removed_words():
    words = "set an alarm for 7 am".split()
    assert masked_sentence(words, np.array([1, 0, 1, 1, 0, 1], dtype=bool)) == "set alarm for am"
    assert masked_sentence(words, np.zeros(6, dtype=bool)) == ""
    with pytest.raises(ValueError, match="6 words but a mask of length 5"):
        masked_sentence(words, np.ones(5, dtype=bool))
