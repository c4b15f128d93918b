"""An HTML page for the quality study's results (benchmarks/quality.py, issue #4).

    from pathattr.apps.quality_report import is_quality_results, write_quality_report
    if is_quality_results("benchmarks/results/quality"):
        page = write_quality_report("benchmarks/results/quality")   # .../report.html

The page is self-contained apart from the PNGs next to it (relative links, so the
folder can be moved or served as is): the method-by-metric tables with bootstrap
intervals, the evaluations-to-1 %/0.1 % tables, the error-versus-evaluations plots and
the grids of example maps. No JavaScript, no network.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict, List, Union

PathLike = Union[str, Path]
RESULTS_FILE = "quality.json"
KIND = "pathattr-quality"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f2f2f2} td.best{font-weight:bold;background:#eef7ee}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
.plots{display:flex;flex-wrap:wrap;gap:.8em} .plots figure{margin:0;flex:1 1 30em}
figcaption{font-size:.85em;color:#555}
"""


def _load(results_dir: PathLike) -> Dict:
    p = Path(results_dir) / RESULTS_FILE
    return json.loads(p.read_text())


def is_quality_results(results_dir: PathLike) -> bool:
    """True when `results_dir` holds the quality study's quality.json (kind "pathattr-quality")."""
    try:
        doc = _load(results_dir)
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def _e(x) -> str:
    return html.escape(str(x))


def _cell(b) -> str:
    if not b or b.get("mean") is None or not b.get("n"):
        return "—"
    return f"{b['mean']:.3f} <small>[{b['lo']:.3f}, {b['hi']:.3f}]</small>"


def _metric_tables(doc: Dict) -> List[str]:
    from_titles = doc.get("metric_titles") or {}
    out = []
    for name, entry in (doc.get("table") or {}).items():
        methods = entry["methods"]
        keys = []
        for v in methods.values():
            keys += [k for k in v if not k.startswith("_") and k not in keys]
        better = doc.get("higher_is_better") or {}
        best = {}
        for k in keys:
            vals = {m: v[k]["mean"] for m, v in methods.items() if k in v and v[k].get("mean") is not None}
            if vals:
                best[k] = (max if better.get(k, True) else min)(vals, key=vals.get)
        out.append(f"<h3>{_e(entry['title'])} — {entry['n']} inputs</h3>")
        out.append("<table><tr><th>method</th>" + "".join(f"<th>{_e(from_titles.get(k, k))}</th>" for k in keys)
                   + "<th>budget per input</th><th>seconds</th></tr>")
        for m, v in methods.items():
            cells = "".join(f"<td class='best'>{_cell(v.get(k))}</td>" if best.get(k) == m else f"<td>{_cell(v.get(k))}</td>"
                            for k in keys)
            secs = entry.get("seconds", {}).get(m)
            out.append(f"<tr><td>{_e(m)}</td>{cells}<td>{_e(entry['budget'].get(m, ''))}</td>"
                       f"<td>{'' if secs is None else f'{secs:.1f}'}</td></tr>")
        out.append("</table>")
        if entry.get("pic"):
            p = next(iter(entry["pic"].values()))
            out.append(f"<p>PIC scored {p['n_scored']} of {entry['n']} images; skipped by reason: "
                       f"{_e(p['skip_counts'])}.</p>")
    return out


def _evals(e) -> str:
    if e["gradient_evals"] is None:
        return f"&gt; {e.get('max_M', '')}"
    return f"{e['gradient_evals']}" + (f" (+{e['probe_forwards']})" if e.get("probe_forwards") else "")


def _efficiency_tables(eff: Dict) -> List[str]:
    names = [m["name"] for m in eff["models"]]
    out = []
    for t in ("0.01", "0.001"):
        out.append(f"<h3>Gradient evaluations to {float(t) * 100:g} % error (+ forward-only probes)</h3>")
        out.append("<table><tr><th>schedule</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
                   + "<th>geometric mean</th></tr>")
        for k, row in eff["table"].items():
            cells = "".join(f"<td>{_evals(row['models'][n][t])}</td>" if n in row["models"] else "<td>—</td>"
                            for n in names)
            out.append(f"<tr><td>{_e(k)}</td>{cells}<td>{row['geomean'][t]:.0f}</td></tr>")
        out.append("</table>")
    if eff.get("verdicts"):
        out.append("<h3>Candidate schedules against ours (to 1 %)</h3><table><tr><th>candidate</th>"
                   "<th>geometric mean</th><th>ratio to ours</th><th>worst model (ratio)</th><th>kept</th></tr>")
        for v in eff["verdicts"]:
            out.append(f"<tr><td>{_e(v['candidate'])}</td><td>{v['geomean']:.0f}</td><td>{v['geomean_ratio']:.2f}</td>"
                       f"<td>{_e(v['worst_model'])} ({v['worst_model_ratio']:.2f})</td>"
                       f"<td>{'yes' if v['kept'] else 'no'}</td></tr>")
        out.append("</table>")
    return out


def write_quality_report(results_dir: PathLike) -> Path:
    """Write report.html into `results_dir` (which must hold quality.json and its PNGs).

    Returns the page's path. Raises ValueError when the folder holds no quality results,
    FileNotFoundError when a plot the results name is missing.
    """
    d = Path(results_dir)
    if not is_quality_results(d):
        raise ValueError(f"results_dir must hold the quality study's {RESULTS_FILE}; {str(d)!r} does not")
    doc = _load(d)
    plots = doc.get("plots") or []
    missing = [p for p in plots if not (d / p).is_file()]
    if missing:
        raise FileNotFoundError(f"results_dir {str(d)!r} lacks the plots {missing}")
    meta = doc.get("meta", {})
    body = [f"<h1>pathattr quality study</h1><p>{_e(meta.get('date', ''))}; torch {_e(meta.get('torch', ''))}; "
            f"{meta.get('cpus', '?')} CPUs; {meta.get('seconds', 0):.0f} s; budget {meta.get('budget', '?')} gradient "
            f"evaluations per input; intervals: seeded bootstrap over inputs ({_e(meta.get('bootstrap', ''))})"
            f"{' — QUICK smoke run' if meta.get('quick') else ''}.</p>"]
    if doc.get("table"):
        body.append("<h2>Methods and metrics</h2>")
        body += _metric_tables(doc)
    examples = [p for p in plots if p.startswith("examples-")]
    if examples:
        body.append("<h2>Example attribution maps</h2><div>")
        body += [f"<figure><img src='{_e(p)}' alt='{_e(p)}'><figcaption>{_e(p[9:-4])}: input, then one column per "
                 f"method (|attribution|)</figcaption></figure>" for p in examples]
        body.append("</div>")
    eff = doc.get("efficiency")
    if eff:
        body.append("<h2>Adaptive-sampling efficiency</h2>")
        body.append(f"<p>Relative L2 error of the map against a {eff.get('reference_points')}-point midpoint "
                    f"reference, mean over inputs, against gradient evaluations per input.</p>")
        body += _efficiency_tables(eff)
        curves = [p for p in plots if p.startswith("efficiency-")]
        body.append("<div class='plots'>")
        body += [f"<figure><img src='{_e(p)}' alt='{_e(p)}'><figcaption>{_e(p[11:-4])}</figcaption></figure>"
                 for p in curves]
        body.append("</div>")
    conf = doc.get("confirmation")
    if conf:
        body.append("<h2>Confirmation on fresh inputs</h2><p>The candidates that passed the rule above, "
                    "against ours, on inputs not used to pick them.</p>")
        body += _efficiency_tables(conf)
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>pathattr quality study</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    out = d / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


__all__ = ["is_quality_results", "write_quality_report"]
