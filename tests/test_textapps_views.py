"""Token heatmaps and the generation matrix (apps/text_views.py): parsed back with the
standard library's HTML parser, so what a browser would see is checked, not the source
text: every token shown once in order with the colour of its score, hostile tokens
escaped, nothing fetched from anywhere."""
import math
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from pathattr.apps import text_views as tv


class _Doc(HTMLParser):
    """Tags seen, and (text, style, title) of every token span / matrix cell."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.tokens, self.cells, self.heads = [], [], [], []
        self._open = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "span" and a.get("class") == "pa-tok":
            self._open = ["tok", "", a.get("style", ""), a.get("title")]
        elif tag in ("td", "th"):
            self._open = [tag, "", a.get("style", ""), a.get("title")]

    def handle_endtag(self, tag):
        if self._open is not None and (tag == "span" and self._open[0] == "tok" or tag == self._open[0]):
            kind, text, style, title = self._open
            (self.tokens if kind == "tok" else self.cells if kind == "td" else self.heads).append((text, style, title))
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data


def _parse(text):
    d = _Doc()
    d.feed(text)
    d.close()
    return d


def _bg(style):
    return style.split("background:")[1].split(";")[0]


def _rgb(hexcol):
    return tuple(int(hexcol[i:i + 2], 16) for i in (1, 3, 5))


def test_colour_map_is_diverging_symmetric_and_clipped():
    assert tv.colour(0.0, 2.0) == "#ffffff"
    assert _rgb(tv.colour(2.0, 2.0)) == tv._POS
    assert _rgb(tv.colour(-2.0, 2.0)) == tv._NEG
    assert tv.colour(5.0, 2.0) == tv.colour(2.0, 2.0)  # clipped
    # Half way: the linear blend of white and the end, channel by channel.
    assert _rgb(tv.colour(1.0, 2.0)) == tuple(round(255 + (e - 255) * 0.5) for e in tv._POS)
    assert tv.colour(1.0, 0.0) == "#ffffff"  # all-zero scores: white, no division by zero


def test_heatmap_shows_every_token_in_order_with_its_colour_and_escapes_them():
    rng = np.random.default_rng(0)
    tokens = ["[CLS]", "<script>alert('x')</script>", "a&b", "\"q\"", " ", "", "##ing", "[SEP]"]
    scores = rng.normal(size=len(tokens))
    frag = tv.token_heatmap_html(tokens, scores, target="positive <b>", target_value=1.25, label="neg&pos",
                                 title="#0")
    doc = _parse(tv.html_page([frag], title="t <i>"))
    # No script element, no external resource of any kind in the page.
    assert not [t for t, _ in doc.tags if t in ("script", "img", "link", "iframe", "object")]
    assert all("src" not in a and "href" not in a for _, a in doc.tags)
    assert "<script>" not in frag and "&lt;script&gt;" in frag
    # The bold tags are the page's own (title, target), never the one inside the target label.
    assert "positive &lt;b&gt;" in frag
    shown = [t for t, _, _ in doc.tokens]
    assert shown[:4] == tokens[:4] and shown[6:] == tokens[6:]
    assert shown[4] == "\u2423" and shown[5] == "\u2205"  # whitespace / empty tokens made visible
    vmax = np.abs(scores).max()
    for (_, style, title), s in zip(doc.tokens, scores):
        assert _bg(style) == tv.colour(float(s), vmax)
        assert math.isclose(float(title), s, rel_tol=1e-3)
    # The strongest token sits at the full end colour of its sign.
    k = int(np.abs(scores).argmax())
    assert _rgb(_bg(doc.tokens[k][1])) == (tv._POS if scores[k] > 0 else tv._NEG)
    assert "1.25" in frag and "neg&amp;pos" in frag and f"{scores.sum():.4g}" in frag


def test_heatmap_shared_vmax_and_bad_arguments():
    frag = tv.token_heatmap_html(["a", "b"], torch.tensor([0.5, -1.0]), vmax=2.0)
    doc = _parse(frag)
    assert [_bg(s) for _, s, _ in doc.tokens] == [tv.colour(0.5, 2.0), tv.colour(-1.0, 2.0)]
    with pytest.raises(ValueError, match="scores has 1 values for 2 tokens"):
        tv.token_heatmap_html(["a", "b"], [1.0])
    with pytest.raises(ValueError, match=r"scores\[1\] is NaN"):
        tv.token_heatmap_html(["a", "b"], [1.0, float("nan")])
    with pytest.raises(TypeError, match="not one string"):
        tv.token_heatmap_html("ab", [1.0, 2.0])
    with pytest.raises(ValueError, match="vmax"):
        tv.token_heatmap_html(["a"], [1.0], vmax=-1)


def test_matrix_view_rows_are_targets_columns_sources_and_blank_after_the_target():
    src = ["<s>", "the", "<cat>", "sat"]
    tgt = ["<cat>", "sat"]
    m = np.array([[0.2, -0.4, float("nan"), float("nan")], [0.1, 0.3, -0.05, float("nan")]])
    frag = tv.token_matrix_html(src, tgt, m, title="gen", digits=3)
    doc = _parse(frag)
    assert "<cat>" not in frag
    heads = [t for t, _, _ in doc.heads]
    assert heads == [""] + src + [tgt[0]] + [tgt[1]]
    vmax = np.nanmax(np.abs(m))
    cells = doc.cells
    assert len(cells) == m.size
    for (text, style, _), v in zip(cells, m.ravel()):
        if math.isnan(v):
            assert text == "" and style == ""
        else:
            assert float(text) == round(v, 3) and _bg(style) == tv.colour(v, vmax)
    with pytest.raises(ValueError, match="matrix has 2 rows for 1 target tokens"):
        tv.token_matrix_html(src, tgt[:1], m)
    with pytest.raises(ValueError, match="row 0 has 4 values for 3 source tokens"):
        tv.token_matrix_html(src[:3], tgt, m)
    with pytest.raises(TypeError, match="2-D"):
        tv.token_matrix_html(src, tgt, [1.0, 2.0])


def test_views_of_pathattr_text_results():
    """The result objects' views show what their fields hold: each text's real tokens
    only, and a generation matrix blank from each row's own token on."""
    pytest.importorskip("transformers")
    import pathattr.text as pt
    from text_models import gpt2, bert_classifier, word_tokenizer

    tok = word_tokenizer()
    res = pt.attribute_tokens(bert_classifier(), ["the cat sat", "a <b> dog runs on the mat"], tokenizer=tok,
                              n_steps=4)
    doc = _parse(tv.token_attribution_html(res, labels={0: "zero", 1: "one", 2: "two"}))
    assert [t for t, _, _ in doc.tokens] == ["[CLS]", "the", "cat", "sat", "[SEP]",
                                             "[CLS]", "a", "[UNK]", "dog", "runs", "on", "the", "mat", "[SEP]"]
    vmax = float(res.scores[1].abs().max())
    assert _bg(doc.tokens[-1][1]) == tv.colour(float(res.scores[1, 8]), vmax)
    gen = pt.attribute_generation(gpt2(), "the cat sat on", tokenizer=word_tokenizer(bert=False), max_new_tokens=3,
                                  n_steps=4)
    doc = _parse(tv.generation_html(gen))
    n, p = gen.input_ids.shape[0], gen.prompt_length
    assert len(doc.cells) == 3 * n
    for k in range(3):
        row = doc.cells[k * n:(k + 1) * n]
        assert all(text == "" for text, _, _ in row[p + k:])
        assert [float(text) for text, _, _ in row[:p + k]] == [round(float(v), 2) for v in gen.matrix[k, :p + k]]


def test_legend_is_one_bar_from_minus_to_plus_vmax():
    doc = _parse(tv.legend_html(2.5))
    bars = [a for t, a in doc.tags if a.get("class") == "pa-bar"]
    assert len(bars) == 1
    assert _bg(bars[0]["style"] + ";") == (f"linear-gradient(to right,{tv.colour(-2.5, 2.5)},#ffffff,"
                                           f"{tv.colour(2.5, 2.5)})")
    assert "-2.5" in tv.legend_html(2.5) and "+2.5" in tv.legend_html(2.5)
