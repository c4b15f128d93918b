"""Token pictures as self-contained HTML: a heatmap of one text's per-token scores and a
target x source matrix for generation attribution.

Like Captum's `visualize_text` and Inseq's HTML views, but with no network, no script and
no library: every colour is an inline style, the legend a CSS gradient. Every token and
label is HTML-escaped (a token may be any string a tokenizer produces, `<script>` included).

    token_heatmap_html(tokens, scores, target="positive", target_value=2.31)  -> a <div>
    token_matrix_html(source_tokens, target_tokens, matrix)                    -> a <div>
    html_page(fragments, title)                                                -> a whole page
    token_attribution_html(res) / generation_html(gen)   the same for pathattr.text's results

Colours are a diverging map centred on 0 (docs/design.md, "Text runs"): blue for negative,
white for 0, red for positive, scaled symmetrically by `vmax` (default: the largest |score|
shown), so the same colour means the same score within one picture.
"""
from __future__ import annotations

import html
import math
from typing import Iterable, List, Optional, Sequence

# The two ends of the map and its centre (RGB): ColorBrewer RdBu's ends, white in the middle.
_NEG = (33, 102, 172)
_MID = (255, 255, 255)
_POS = (178, 24, 43)

CSS = """.pa-text{font-family:system-ui,sans-serif;margin:.6em 0 1.2em;line-height:2.1}
.pa-text .pa-head{font-size:90%;color:#444;line-height:1.4;margin-bottom:.2em}
.pa-tok{padding:.15em .2em;margin:0 .05em;border-radius:.2em;white-space:pre;border:1px solid #eee}
.pa-legend{display:inline-flex;align-items:center;gap:.4em;font-size:80%;color:#444;line-height:1.2}
.pa-bar{display:inline-block;width:10em;height:.8em;border:1px solid #ccc}
table.pa-matrix{border-collapse:collapse;font-size:85%;margin:.4em 0}
table.pa-matrix td,table.pa-matrix th{border:1px solid #eee;padding:.15em .3em;text-align:center;white-space:pre}
table.pa-matrix th{background:#f6f6f6;font-weight:normal}"""


def _finite(scores: Iterable[float], what: str) -> List[float]:
    out = []
    for i, s in enumerate(scores):
        try:
            v = float(s)
        except (TypeError, ValueError):
            raise TypeError(f"{what}[{i}] must be a number, got {type(s).__name__}") from None
        if math.isnan(v):
            raise ValueError(f"{what}[{i}] is NaN")
        out.append(v)
    return out


def _scale(values: Sequence[float], vmax: Optional[float]) -> float:
    if vmax is None:
        vmax = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    elif isinstance(vmax, bool) or not isinstance(vmax, (int, float)) or not vmax >= 0 or not math.isfinite(vmax):
        raise ValueError(f"vmax must be a finite number >= 0, got {vmax!r}")
    return float(vmax)


def colour(value: float, vmax: float) -> str:
    """The map's CSS colour of `value` on a symmetric scale [-vmax, vmax] (clipped)."""
    t = 0.0 if vmax <= 0 else max(-1.0, min(1.0, value / vmax))
    end = _POS if t > 0 else _NEG
    a = abs(t)
    r, g, b = (round(m + (e - m) * a) for m, e in zip(_MID, end))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ink(value: float, vmax: float) -> str:
    """Dark text on light cells, white text on the saturated ends (readable either way)."""
    return "#fff" if vmax > 0 and abs(value) / vmax > 0.6 else "#111"


def _shown(token: str) -> str:
    """The token as displayed: escaped; an empty or whitespace-only token made visible."""
    if not token.strip():
        token = token.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"
    return html.escape(token, quote=True)


def legend_html(vmax: float, label: str = "score") -> str:
    """The colour bar from -vmax (left) through 0 (white, the middle) to +vmax (right)."""
    grad = f"linear-gradient(to right,{colour(-vmax, vmax)},{colour(0.0, vmax)},{colour(vmax, vmax)})"
    return (f"<span class='pa-legend'>{html.escape(label)} <span>{-vmax:.3g}</span>"
            f"<span class='pa-bar' title='white: 0' style='background:{grad}'></span>"
            f"<span>+{vmax:.3g}</span></span>")


def token_heatmap_html(tokens: Sequence[str], scores: Sequence[float], *, target=None, target_value=None,
                       label=None, title: Optional[str] = None, vmax: Optional[float] = None,
                       legend: bool = True) -> str:
    """One text's tokens, each on the colour of its score, with the target, the value
    explained (e.g. the target's logit), the label and a legend above it.

    tokens: the token strings (any text; escaped). scores: one finite number per token.
    target / target_value / label / title: shown in the heading when given.
    vmax: the score at full colour (default: the largest |score| of this text).
    Returns an HTML fragment (a <div>); `html_page` wraps fragments into a page.
    """
    if isinstance(tokens, str):
        raise TypeError("tokens must be a sequence of token strings, not one string")
    tokens = [t if isinstance(t, str) else str(t) for t in tokens]
    vals = _finite(scores, "scores")
    if len(vals) != len(tokens):
        raise ValueError(f"scores has {len(vals)} values for {len(tokens)} tokens")
    vm = _scale(vals, vmax)
    head = []
    if title is not None:
        head.append(f"<b>{html.escape(str(title))}</b>")
    if target is not None:
        head.append(f"target <b>{html.escape(str(target))}</b>")
    if target_value is not None:
        head.append(f"value {_num(target_value)}")
    if label is not None:
        head.append(f"label {html.escape(str(label))}")
    head.append(f"sum of scores {_num(sum(v for v in vals if math.isfinite(v)))}")
    spans = "".join(
        f"<span class='pa-tok' title='{v:.4g}' style='background:{colour(v, vm)};color:{_ink(v, vm)}'>"
        f"{_shown(t)}</span>" for t, v in zip(tokens, vals))
    leg = legend_html(vm) if legend else ""
    return f"<div class='pa-text'><div class='pa-head'>{' &middot; '.join(head)} {leg}</div>{spans}</div>"


def token_matrix_html(source_tokens: Sequence[str], target_tokens: Sequence[str], matrix, *,
                      title: Optional[str] = None, vmax: Optional[float] = None, digits: int = 2) -> str:
    """Generation attribution as a table: one row per target (generated) token, one column
    per source token, each cell on the colour of its score and showing it.

    matrix: (len(target_tokens), len(source_tokens)) numbers (nested lists, a numpy array
    or a tensor). Cells may be NaN where a source token comes after the target (a causal
    model cannot use it): those cells are left blank.
    """
    rows = _rows(matrix)
    src = [str(t) for t in source_tokens]
    tgt = [str(t) for t in target_tokens]
    if len(rows) != len(tgt):
        raise ValueError(f"matrix has {len(rows)} rows for {len(tgt)} target tokens")
    for i, r in enumerate(rows):
        if len(r) != len(src):
            raise ValueError(f"matrix row {i} has {len(r)} values for {len(src)} source tokens")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 8:
        raise ValueError(f"digits must be an int in [0, 8], got {digits!r}")
    vm = _scale([v for r in rows for v in r], vmax)
    head = "<tr><th></th>" + "".join(f"<th>{_shown(t)}</th>" for t in src) + "</tr>"
    body = []
    for t, r in zip(tgt, rows):
        cells = "".join("<td></td>" if math.isnan(v) else
                        f"<td title='{v:.4g}' style='background:{colour(v, vm)};color:{_ink(v, vm)}'>{v:.{digits}f}</td>"
                        for v in r)
        body.append(f"<tr><th>{_shown(t)}</th>{cells}</tr>")
    cap = f"<div class='pa-head'>{html.escape(str(title))}</div>" if title is not None else ""
    return (f"<div class='pa-text'>{cap}<div class='pa-head'>rows: targets, columns: source tokens "
            f"{legend_html(vm)}</div><table class='pa-matrix'>{head}{''.join(body)}</table></div>")


def html_page(fragments: Sequence[str], title: str = "pathattr token attributions") -> str:
    """A whole self-contained page (the views' CSS inline) around the fragments."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(fragments)}</body></html>")


def token_attribution_html(res, *, limit: Optional[int] = None, labels: Optional[dict] = None) -> str:
    """Heatmaps of a pathattr.text TokenAttribution's texts (the first `limit`), each text's
    tokens where its attention mask is 1; `labels`: class index -> name for the targets."""
    n = res.scores.shape[0] if limit is None else min(limit, res.scores.shape[0])
    parts = []
    for i in range(n):
        keep = res.attention_mask[i].bool()
        toks = res.tokens[i] if res.tokens is not None else [str(int(t)) for t in res.input_ids[i][keep]]
        t = int(res.target[i])
        parts.append(token_heatmap_html(toks, res.scores[i][keep].tolist(), title=f"#{i}",
                                        target=f"{t} ({labels[t]})" if labels and t in labels else t))
    return "".join(parts)


def generation_html(gen, *, title: Optional[str] = None, digits: int = 2) -> str:
    """The matrix view of a pathattr.text GenerationAttribution: one row per continuation
    token, one column per token of prompt + continuation; cells at or after the row's own
    token (which it cannot depend on) left blank."""
    n, p = int(gen.input_ids.shape[0]), int(gen.prompt_length)
    toks = gen.tokens if gen.tokens is not None else [str(int(t)) for t in gen.input_ids]
    m = gen.matrix.detach().cpu().tolist()
    rows = [[v if j < p + k else float("nan") for j, v in enumerate(r)] for k, r in enumerate(m)]
    return token_matrix_html(toks[:n], toks[p:], rows, title=title, digits=digits)


def _num(v) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return html.escape(str(v))


def _rows(matrix) -> List[List[float]]:
    if hasattr(matrix, "detach"):  # a tensor
        matrix = matrix.detach().cpu().tolist()
    elif hasattr(matrix, "tolist"):
        matrix = matrix.tolist()
    if not isinstance(matrix, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in matrix):
        raise TypeError("matrix must be 2-D: nested lists, a numpy array or a tensor")
    return [[_cell(v, i) for v in r] for i, r in enumerate(matrix)]


def _cell(v, i: int) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"matrix row {i} holds {type(v).__name__}, expected numbers") from None
