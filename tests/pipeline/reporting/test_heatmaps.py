import html
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import polars as pl
import pytest

from pipeline.reporting.heatmaps import render_heatmaps, shown_sentences

SOURCES = ("CAP", "LIME", "IG", "CAP Hybrid", "student")


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[dict]:
    """Three real Banking77 test utterances (the last one long, so it wraps) plus one with markup."""
    test = pl.read_parquet(shared_data / "banking77" / "test.parquet")
    texts = test["text"].head(2).to_list() + [" ".join(test["text"].slice(2, 12).to_list())]
    labels = test["label"].head(3).to_list()
    texts.append("is <b>my</b> card & pin ok")
    labels.append("card_arrival")
    rng = np.random.default_rng(0)
    out = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        words = text.split()
        out.append(
            {
                "id": f"banking77/test/{i}",
                "label": label,
                "predicted": label if i != 1 else "card_linking",
                "probability": 0.25 * (i + 1) - 0.13,
                "words": words,
                # a sign pattern with exact zeros, scaled differently per source
                "attributions": {s: rng.normal(size=len(words)).round(1) * 10**k for k, s in enumerate(SOURCES)},
            }
        )
    return out


@pytest.fixture(scope="module")
def rendered(rows: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heatmaps")
    render_heatmaps(rows, html_out=out / "heatmaps.html", png_dir=out / "png")
    return out


def _spans(page: str, row_id: str) -> dict[str, list[tuple[str, str, float]]]:
    """(word, background, score) per source for one sentence of the page."""
    block = page.split(html.escape(row_id), 1)[1].split('<div class="sentence">', 1)[0]
    spans = {}
    for source, cells in re.findall(r'<td class="source">(.*?)</td><td>(.*?)</td>', block):
        found = re.findall(r'background:(#[0-9a-f]{6});color:#[0-9a-f]{6}" title="([^"]+)">(.*?)</span>', cells)
        spans[html.unescape(source)] = [(html.unescape(w), bg, float(score)) for bg, score, w in found]
    return spans


def test_html_shows_every_word_and_source_with_its_header(rows: list[dict], rendered: Path):
    page = (rendered / "heatmaps.html").read_text(encoding="utf-8")

    for row in rows:
        spans = _spans(page, row["id"])
        assert list(spans) == list(SOURCES)
        for source, scores in row["attributions"].items():
            assert [w for w, _, _ in spans[source]] == row["words"]
            np.testing.assert_allclose([s for _, _, s in spans[source]], scores, rtol=1e-3)
        assert html.escape(row["label"]) in page and f"(p = {row['probability']:.2f})" in page
    assert page.count('class="wrong"') == 1  # only the misclassified row 1
    # markup in the text is shown, not interpreted
    assert "&lt;b&gt;my&lt;/b&gt;" in page and "<b>my</b>" not in page


def test_html_colours_follow_the_sign_and_size_of_each_score(rows: list[dict], rendered: Path):
    page = (rendered / "heatmaps.html").read_text(encoding="utf-8")

    for row in rows:
        for source, cells in _spans(page, row["id"]).items():
            for _, background, score in cells:
                red, _, blue = (int(background[i : i + 2], 16) for i in (1, 3, 5))
                if score == 0:
                    assert background == "#ffffff"
                else:
                    assert (red > blue) == (score > 0), (source, score, background)
            # within a sign, a larger |score| is further from white (lower channel sum)
            for sign in (1, -1):
                same = sorted((abs(s), _channel_sum(b)) for _, b, s in cells if s * sign > 0)
                assert [c for _, c in same] == sorted((c for _, c in same), reverse=True), (source, same)


def _channel_sum(background: str) -> int:
    return sum(int(background[i : i + 2], 16) for i in (1, 3, 5))


def test_pngs_are_valid_images_one_per_sentence(rows: list[dict], rendered: Path):
    names = sorted(p.name for p in (rendered / "png").iterdir())
    assert names == sorted(f"banking77_test_{i}.png" for i in range(len(rows)))

    heights = []
    for i in range(len(rows)):
        image = matplotlib.image.imread(rendered / "png" / f"banking77_test_{i}.png")
        height, width, channels = image.shape
        assert height > 100 and width > 300 and channels in (3, 4)
        rgb = image[..., :3]
        assert ((rgb[..., 0] > 0.7) & (rgb[..., 2] < 0.4)).any()  # some red boxes
        assert ((rgb[..., 2] > 0.6) & (rgb[..., 0] < 0.3)).any()  # some blue boxes
        heights.append(height)
    assert heights[2] > 2 * heights[0]  # the long sentence wraps over several lines per source


def test_render_heatmaps_rejects_bad_rows(rows: list[dict], tmp_path: Path):
    out = {"html_out": tmp_path / "h.html", "png_dir": tmp_path / "png"}
    bad = dict(rows[0], attributions={"CAP": np.ones(len(rows[0]["words"]) + 1)})
    with pytest.raises(ValueError, match="banking77/test/0.*CAP scores"):
        render_heatmaps([bad], **out)
    with pytest.raises(ValueError, match="missing keys \\['words'\\]"):
        render_heatmaps([{k: v for k, v in rows[0].items() if k != "words"}], **out)
    with pytest.raises(ValueError, match="unique"):
        render_heatmaps([rows[0], dict(rows[1], id="banking77_test/0")], **out)
    assert not out["html_out"].exists()  # validation happens before anything is written


def test_shown_sentences_are_the_first_of_each_of_the_first_labels():
    test = pl.DataFrame({"id": ["t0", "t1", "t2", "t3", "t4"], "text": ["a", "b", "c", "d", "e"],
                         "label": ["card", "rate", "card", "atm", "rate"]})
    shown = shown_sentences(test, labels=["atm", "card", "rate"], n=2)
    assert shown["id"].to_list() == ["t0", "t3"]  # card's first, atm's first, in test order
