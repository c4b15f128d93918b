"""`pathattr report RUN_DIR`: one self-contained HTML page about a run.

Settings (as given and as recorded), throughput per session, per-item summaries
(targets, F(x), convergence delta), metric summaries when a metrics step left
`RUN_DIR/metrics.json` or `RUN_DIR/metrics/*.json` (any JSON objects; nested keys are
flattened into rows), and a grid of example heatmaps embedded as a PNG; for a text run
(job/text.py) the first texts' token heatmaps instead (apps/text_views.py).
"""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .config import JobError
from .store import MANIFEST, RUN_FILE, RunStore, _zarr

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}code{font-size:90%}.warn{color:#a40}"""


def _table(rows: List[Tuple[str, Any]], head: Optional[Tuple[str, str]] = None) -> str:
    h = f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>" if head else ""
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(_fmt(v))}</code></td></tr>"
                   for k, v in rows)
    return f"<table>{h}{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _flatten(obj: Any, prefix: str = "") -> List[Tuple[str, Any]]:
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}")
        return out
    return [(prefix.rstrip("."), obj)]


def _metrics(run_dir: Path) -> List[Tuple[str, List[Tuple[str, Any]]]]:
    files = ([run_dir / "metrics.json"] if (run_dir / "metrics.json").is_file() else []) + \
        sorted((run_dir / "metrics").glob("*.json"))
    out = []
    for f in files:
        try:
            out.append((f.name, _flatten(json.loads(f.read_text()))))
        except ValueError:
            out.append((f.name, [("error", "not valid JSON")]))
    return out


def _heatmaps(arrays: Dict[str, Any], finished: List[Tuple[int, int]], method: str, n: int) -> Optional[str]:
    """A base64 PNG of the first n finished preview items beside their attributions."""
    from .. import viz

    pv = arrays["preview_inputs"][...]
    rows = [i for i in range(pv.shape[0]) if any(a <= i < b for a, b in finished)][:n]
    if not rows:
        return None
    imgs = pv[rows].astype(np.float64)
    if imgs.ndim == 3:  # (k, H, W)
        imgs = imgs[:, None]
    if imgs.ndim != 4:
        return None  # not an image: no picture
    if imgs.shape[1] not in (1, 3):
        imgs = imgs.mean(1, keepdims=True)
    lo = imgs.reshape(len(rows), -1).min(1).reshape(-1, 1, 1, 1)
    hi = imgs.reshape(len(rows), -1).max(1).reshape(-1, 1, 1, 1)
    imgs = (imgs - lo) / np.where(hi > lo, hi - lo, 1.0)  # display range per image
    attr = arrays["attributions"][rows[0]:rows[-1] + 1][np.array(rows) - rows[0]].astype(np.float64)
    if attr.ndim == 3:
        attr = attr[:, None]
    tgt = arrays["target"][rows[0]:rows[-1] + 1][np.array(rows) - rows[0]]
    titles = [f"#{i} target {int(t)}" for i, t in zip(rows, tgt)]
    with tempfile.TemporaryDirectory() as tmp:
        png = viz.attribution_grid(imgs, {method: attr},
                                   Path(tmp) / "grid.png", titles=titles, sign="all")
        return base64.b64encode(png.read_bytes()).decode()


def _text_examples(arrays: Dict[str, Any], finished: List[Tuple[int, int]], n: int,
                   labels: Optional[Dict[str, str]]) -> Optional[str]:
    """Token heatmaps of the first n finished texts, each on its own colour scale."""
    from ..text_views import token_heatmap_html
    from .text import read_text_item

    rows = [i for a, b in sorted(finished) for i in range(a, b)][:n]
    if not rows:
        return None
    name = (lambda c: f"{c} ({labels[str(c)]})" if labels and str(c) in labels else str(c))
    parts = []
    for i in rows:
        item = read_text_item(arrays, i)
        value = float(arrays["logit"][i]) if "logit" in arrays else None
        parts.append(token_heatmap_html(item["tokens"], item["scores"].astype(np.float64), title=f"#{i}",
                                        target=name(item["target"]), target_value=value,
                                        label=name(item["label"]) if item["label"] >= 0 else None))
    return "".join(parts)


def write_report(run_dir, out=None, n_examples: int = 8) -> Path:
    """Write the HTML report of `run_dir` (default RUN_DIR/report.html); returns its path."""
    run_dir = Path(run_dir)
    if not isinstance(n_examples, int) or isinstance(n_examples, bool) or not 0 <= n_examples <= 16:
        raise ValueError(f"n_examples must be an int in [0, 16], got {n_examples!r}")
    if not (run_dir / RUN_FILE).is_file():
        raise JobError(f"{run_dir} is not a pathattr run folder (no {RUN_FILE}); give the --out of `pathattr attribute`")
    run = json.loads((run_dir / RUN_FILE).read_text())
    store = RunStore(run_dir)
    manifest = json.loads((run_dir / MANIFEST).read_text()) if (run_dir / MANIFEST).is_file() else None
    done = store.finished()
    ident = run["identity"]
    n_items = ident["data"]["items"]
    root = _zarr().open_group(str(store.store_path), mode="r")
    arrays = {name: a for name, a in root.arrays()}
    spans = sorted((m["start"], m["stop"]) for m in done.values())
    sel = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, dtype=np.int64)

    text_run = "token_offsets" in arrays
    css = _CSS
    if text_run:
        from ..text_views import CSS as text_css

        css += text_css
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>pathattr run {html.escape(run_dir.name)}"
             f"</title><style>{css}</style></head><body>",
             f"<h1>pathattr run <code>{html.escape(str(run_dir))}</code></h1>"]
    status = (f"complete: {n_items} items in {manifest['chunks']} chunks" if manifest and manifest.get("complete")
              else f"<span class='warn'>incomplete: {len(sel)} of {n_items} items finished; rerun the same "
                   f"command to resume</span>")
    parts.append(f"<p>{status}. Method <b>{html.escape(ident['method'])}</b>, model "
                 f"<code>{html.escape(ident['model'])}</code>, data <code>{html.escape(str(ident['data'].get('source')))}"
                 f"</code>.</p>")

    parts.append("<h2>Throughput</h2>")
    if manifest:
        rows = [(sid, f"{s['items']} items, {s['wall_seconds']:.2f} s wall, "
                      + (f"{s['items_per_s']:.1f} items/s" if s.get("items_per_s") else "-") + f", {s['ranks']} rank(s)")
                for sid, s in manifest["sessions"].items()]
        parts.append(_table(rows, ("session", "work")))
        if manifest.get("skipped"):
            parts.append(f"<p class='warn'>{len(manifest['skipped'])} unreadable images skipped: "
                         f"{html.escape(', '.join(manifest['skipped'][:50]))}</p>")
    else:
        parts.append("<p>No manifest yet (the run has not finished).</p>")

    parts.append("<h2>Per-item summary</h2>")
    if len(sel):
        rows = []
        for name in ("logit", "baseline_value", "delta"):
            if name in arrays:
                v = arrays[name][...][sel].astype(np.float64)
                rows.append((name, f"mean {v.mean():.4g}, median {np.median(v):.4g}, min {v.min():.4g}, max {v.max():.4g}"))
        if "delta" in arrays:
            d = np.abs(arrays["delta"][...][sel].astype(np.float64))
            rows.append(("|delta|", f"mean {d.mean():.3g}, 95th percentile {np.percentile(d, 95):.3g}"))
        if "n_evaluations" in arrays:  # an --rtol run (docs/methods.md §14)
            ne = arrays["n_evaluations"][...][sel]
            est = arrays["error_estimate"][...][sel].astype(np.float64)
            rows.append(("gradient evaluations (--rtol)", f"mean {ne.mean():.1f}, min {ne.min()}, max {ne.max()}"))
            rows.append(("estimated relative error", f"median {np.median(est):.3g}, max {est.max():.3g}"))
            rows.append(("reached rtol", f"{int(arrays['converged'][...][sel].sum())} of {len(sel)}"))
        tg = arrays["target"][...][sel]
        vals, counts = np.unique(tg, return_counts=True)
        order = np.argsort(-counts)[:10]
        rows.append(("targets (top 10)", ", ".join(f"{int(vals[i])}: {int(counts[i])}" for i in order)))
        lab = arrays["label"][...][sel]
        if (lab >= 0).all():
            rows.append(("target == label", f"{(tg == lab).mean():.3f}"))
        if text_run:
            nt = arrays["n_tokens"][...][sel]
            rows.append(("tokens per text", f"mean {nt.mean():.1f}, min {nt.min()}, max {nt.max()}"))
            rows.append(("texts cut to --max-length", f"{int(arrays['truncated'][...][sel].sum())}"))
        parts.append(_table(rows, ("quantity", "over finished items")))

    metrics = _metrics(run_dir)
    parts.append("<h2>Metrics</h2>")
    if metrics:
        for name, rows in metrics:
            parts.append(f"<h3>{html.escape(name)}</h3>" + _table(rows, ("metric", "value")))
    else:
        parts.append("<p>No metric summaries in this run folder (metrics.json or metrics/*.json).</p>")

    if n_examples and text_run:
        frag = _text_examples(arrays, spans, n_examples, run.get("labels"))
        parts.append("<h2>Examples</h2><p>Token attributions (the sum over the embedding), blue negative, "
                     "red positive, each text on its own scale.</p>")
        parts.append(frag if frag else "<p>No finished examples to draw.</p>")
    elif n_examples:
        png = _heatmaps(arrays, spans, ident["method"], n_examples)
        parts.append("<h2>Examples</h2>")
        parts.append(f"<img alt='inputs and attribution heatmaps' src='data:image/png;base64,{png}'>" if png
                     else "<p>No finished examples to draw.</p>")

    parts.append("<h2>Settings</h2>" + _table(_flatten(ident), ("recorded identity", "value")))
    parts.append(_table(_flatten(run.get("config", {})), ("as given", "value")))
    parts.append(f"<p>pathattr {html.escape(run.get('pathattr_version', '?'))}, torch "
                 f"{html.escape(run.get('torch_version', '?'))}, created {html.escape(run.get('created', '?'))}</p>")
    parts.append("</body></html>")
    path = Path(out) if out is not None else run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
