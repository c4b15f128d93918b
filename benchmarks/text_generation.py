"""Generation attribution benchmark (CPU; --device cuda on a GPU): pathattr against Captum's LLMGradientAttribution and Inseq's IG.

    python -m benchmarks.text_generation [--case steps accuracy] [--repeat 5] [--steps 50]
        [--hidden 64 128] [--layers 2] [--rtol 0.01] [--out benchmarks/results/text-generation-cpu-DATE.json]

Case (issue #16): a 32-token prompt and a 16-token continuation (greedy, generated once
before timing, so every provider explains the same tokens) on a tiny random GPT-2 and a
tiny random Llama built from configs (fp32, eval; the tokenizer of tests/text_models.py,
64 ids). Equal steps (Gauss-Legendre, 50) everywhere. Providers:
  pathattr          pathattr.text.attribute_generation(attribute_to="prompt", baseline=0): the same
                    numbers as Captum's (checked here, max |diff| reported)
  pathattr_all      attribute_to="all" (the earlier continuation tokens move too): same cost
  captum            Captum 0.9 LLMGradientAttribution(LayerIntegratedGradients(model, embeddings)),
                    its defaults (one layer-IG call of 50 points per continuation token)
  inseq             Inseq 0.7.1 "integrated_gradients" (when it imports beside transformers 5)
Providers are sampled round-robin; ratios are paired medians (harness.paired_ratio).

Case "accuracy" (equal accuracy, docs/methods.md §14): the reference is pathattr in fp64
(the same weights) at --ref-rtol; a result's error is its worst continuation token's
relative L2 error of the (T, P) token matrix row (what LLMGradientAttribution returns).
Captum's steps: doubling from 4 until every row is within --target (1 %), then bisection
down to 1/8 of the bracket. Timed: pathattr rtol=--rtol (prompt mode, baseline --acc-baseline),
pathattr at the largest rtol in --rtol, /2, /4 whose rows all meet --target (when --rtol's
do not), Captum LLMGradientAttribution at its steps, Inseq IG at Captum's steps (its
accuracy is not measured: it attributes the whole prefix, and aggregates by its own rule).
Baseline id 1 ([UNK]) by default: Llama's id 0 is its padding row, a zero embedding, and a
path from zero through RMSNorm has a near-singular integrand at alpha = 0 that no fixed
rule resolves (§15).
--clock process (default) times each call by this process's CPU time (time.process_time),
wall clock beside it: on this project's 2-core machine, shared with other sessions (load
10-13 during the first runs), wall-clock samples of one call spread 10x, CPU time far
less. --threads sets torch's intra-op threads (default 1: CPU time then is the work
itself). Only ratios within one run mean anything.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import warnings
from pathlib import Path

import torch

import pathattr.text as pt

import time

from .harness import Row, environment, paired_ratio, table, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import text_models as tm  # noqa: E402  (the tiny models and tokenizer the tests use)

PROMPT, NEW = 32, 16


def _models(hidden: int, layers: int):
    return {"gpt2": tm.gpt2(seed=11, n_embd=hidden, n_layer=layers).float(),
            "llama": tm.llama(seed=12, hidden=hidden, layers=layers).float()}


def _inseq(model, tok):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import inseq
        return inseq.load_model(model, "integrated_gradients", tokenizer=tok)
    except Exception as e:  # noqa: BLE001  (any failure: reported, the other providers still run)
        print(f"inseq: not run ({type(e).__name__}: {e})")
        return None


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _interleaved(providers, repeat: int, warmup: int):
    """Round-robin samples of every provider: (CPU seconds, wall seconds) lists per provider
    (on a GPU each call synchronised, so its wall time is the device's)."""
    for fn in providers.values():
        for _ in range(warmup):
            fn()
    cpu = {k: [] for k in providers}
    wall = {k: [] for k in providers}
    for _ in range(repeat):
        for k, fn in providers.items():
            _sync()
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            _sync()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return cpu, wall


def _row_error(m, ref):
    """The worst row's relative L2 error of a (T, P) matrix against the reference."""
    m, ref = m.detach().double(), ref.double()
    return float(((m - ref).norm(dim=1) / ref.norm(dim=1)).max())


def _captum_steps(attribute, ref, target: float, limit: int):
    """Captum's Gauss-Legendre steps for every row within `target`: doubling from 4, then
    bisection of the last bracket down to 1/8 of its lower end. Returns (n, {n: error})."""
    errors = {}
    n = 4
    while True:
        errors[n] = _row_error(attribute(n), ref)
        if errors[n] <= target or n >= limit:
            break
        n *= 2
    lo, hi = n // 2, n
    while errors[hi] <= target and hi - lo > max(1, lo // 8):
        mid = (lo + hi) // 2
        errors[mid] = _row_error(attribute(mid), ref)
        lo, hi = (lo, mid) if errors[mid] <= target else (mid, hi)
    return hi, errors


def _accuracy_case(name, model, model64, p_ids, cont, prompt, tok, a, inseq_model, rows, summary):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    base = a.acc_baseline
    ref = pt.attribute_generation(model64, p_ids, continuation=cont, baseline=base, attribute_to="prompt",
                                  rtol=a.ref_rtol, max_steps=4097)
    R = ref.prompt_matrix
    llm = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tok)
    inp = TextTokenInput(prompt, tok, baselines=base)
    n, captum_errors = _captum_steps(lambda k: llm.attribute(inp, target=cont, n_steps=k).token_attr, R, a.target,
                                     a.max_captum_steps)

    def ours(rtol, min_steps=None):
        return pt.attribute_generation(model, p_ids, continuation=cont, baseline=base, attribute_to="prompt", rtol=rtol,
                                       min_steps=min_steps)

    runs = {a.rtol: ours(a.rtol)}
    tight = a.rtol
    while _row_error(runs[tight].prompt_matrix, R) > a.target and tight > a.rtol / 4:
        tight /= 2
        runs[tight] = ours(tight)
    fixed_diff = float((pt.attribute_generation(model, p_ids, continuation=cont, baseline=base, attribute_to="prompt",
                                                n_steps=n).prompt_matrix - llm.attribute(inp, target=cont, n_steps=n)
                        .token_attr).abs().max())
    providers = {f"pathattr_rtol{a.rtol:g}": lambda: ours(a.rtol)}
    if tight != a.rtol:
        providers[f"pathattr_rtol{tight:g}"] = lambda: ours(tight)
    for ms in a.compare_min_steps:  # the same tolerances with another first round (§15: generation's is 65)
        for rtol in list(runs):
            if isinstance(rtol, float):
                runs[(rtol, ms)] = ours(rtol, ms)
                providers[f"pathattr_rtol{rtol:g}_min{ms}"] = lambda rtol=rtol, ms=ms: ours(rtol, ms)
    providers[f"captum_n{n}"] = lambda: llm.attribute(inp, target=cont, n_steps=n)
    if inseq_model is not None:
        full = prompt + " " + tok.decode(cont.tolist())
        providers[f"inseq_n{n}"] = lambda: inseq_model.attribute(prompt, generated_texts=full, n_steps=n,
                                                                 show_progress=False, pretty_progress=False)
    cpu, wall = _interleaved(providers, a.acc_repeat, 0)
    samples, other = (cpu, wall) if a.clock == "process" else (wall, cpu)
    case = f"{name}/h{model.config.hidden_size}-l{a.layers}/p{PROMPT}+{NEW}/equal-accuracy"
    for prov, smp in samples.items():
        rows.append(Row(case, prov, 1, n if "rtol" not in prov else 0, model.device.type, smp,
                        extra={"clock": a.clock, "other_clock_median_s": round(sorted(other[prov])[len(other[prov]) // 2], 3)}))
    first = f"pathattr_rtol{a.rtol:g}"
    out = {
        "clock": a.clock, "target_row_error": a.target, "baseline_id": base, "reference": f"pathattr fp64 rtol={a.ref_rtol}",
        "reference_evaluations_per_row": ref.n_evaluations.tolist(), "reference_converged": bool(ref.converged.all()),
        "captum_steps": n, "captum_row_error_by_steps": {str(k): v for k, v in sorted(captum_errors.items())},
        "fixed_rule_max_abs_diff_vs_captum_at_n": fixed_diff,
    }
    for key, r in runs.items():
        name_ = f"rtol{key:g}" if isinstance(key, float) else f"rtol{key[0]:g}_min{key[1]}"
        out[name_] = {
            "row_error": _row_error(r.prompt_matrix, R), "converged": bool(r.converged.all()),
            "max_estimate": float(r.error_estimate.max()), "evaluations_per_row": r.n_evaluations.tolist(),
            "evaluations_total": int(r.n_evaluations.sum()), "n_forward": r.n_forward, "n_backward": r.n_backward,
            "rounds": r.rounds}
        prov = f"pathattr_{name_}"
        if prov in samples:
            out[f"captum_over_{prov}_paired"] = paired_ratio(samples[f"captum_n{n}"], samples[prov])
            if f"inseq_n{n}" in samples:
                out[f"inseq_over_{prov}_paired"] = paired_ratio(samples[f"inseq_n{n}"], samples[prov])
    out["captum_evaluations_total"] = n * NEW
    summary[case] = out
    print(case, out, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128])
    ap.add_argument("--case", nargs="+", choices=("steps", "accuracy"), default=["steps"])
    ap.add_argument("--rtol", type=float, default=0.01)
    ap.add_argument("--ref-rtol", type=float, default=1e-4)
    ap.add_argument("--target", type=float, default=0.01)
    ap.add_argument("--acc-baseline", type=int, default=1)
    ap.add_argument("--acc-repeat", type=int, default=3)
    ap.add_argument("--max-captum-steps", type=int, default=1024)
    ap.add_argument("--compare-min-steps", type=int, nargs="*", default=[17])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--no-inseq", action="store_true")
    ap.add_argument("--clock", choices=("process", "wall"), default="process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: the models and ids there; "
                                                    "on cuda the clock is wall time, each call synchronised")
    ap.add_argument("--out", type=Path,
                    default=Path(f"benchmarks/results/text-generation-cpu-{datetime.date.today().isoformat()}.json"))
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        a.clock = "wall"  # CPU time says nothing of the device's work
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    load_start = list(os.getloadavg())
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    tok = tm.word_tokenizer(bert=False)
    prompt = tm.random_texts(1, PROMPT, PROMPT, seed=7)[0]
    rows, summary = [], {}
    for name, model, hidden in ((nm, m, h) for h in a.hidden for nm, m in _models(h, a.layers).items()):
        model = model.to(dev)
        p_ids = torch.tensor(tok(prompt)["input_ids"], device=dev)
        assert p_ids.numel() == PROMPT
        with torch.no_grad():
            cont = model.generate(input_ids=p_ids.view(1, -1),
                                  attention_mask=torch.ones(1, PROMPT, dtype=torch.long, device=dev),
                                  max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)[0, PROMPT:]
        llm = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tok)
        inp = TextTokenInput(prompt, tok)
        providers = {
            "pathattr": lambda: pt.attribute_generation(model, p_ids, continuation=cont, baseline=0,
                                                        attribute_to="prompt", n_steps=a.steps),
            "pathattr_all": lambda: pt.attribute_generation(model, p_ids, continuation=cont, baseline=0,
                                                            n_steps=a.steps),
            "captum": lambda: llm.attribute(inp, target=cont, n_steps=a.steps),
        }
        im = None if a.no_inseq else _inseq(model, tok)
        if "accuracy" in a.case:
            model64 = _models(hidden, a.layers)[name].double().to(dev)
            _accuracy_case(name, model, model64, p_ids, cont, prompt, tok, a, im, rows, summary)
        if "steps" not in a.case:
            continue
        if im is not None:
            full = prompt + " " + tok.decode(cont.tolist())
            providers["inseq"] = lambda: im.attribute(prompt, generated_texts=full, n_steps=a.steps,
                                                      show_progress=False, pretty_progress=False)
        ours, theirs = providers["pathattr"](), providers["captum"]()
        diff = float((ours.prompt_matrix - theirs.token_attr).abs().max())
        scale = float(theirs.token_attr.abs().max())
        cpu, wall = _interleaved(providers, a.repeat, a.warmup)
        samples, other = (cpu, wall) if a.clock == "process" else (wall, cpu)
        case = f"{name}/h{hidden}-l{a.layers}/p{PROMPT}+{NEW}"
        for prov, s in samples.items():
            rows.append(Row(case, prov, 1, a.steps, dev.type, s,
                            extra={"clock": a.clock, "other_clock_median_s": round(sorted(other[prov])[len(other[prov]) // 2], 3)}))
        summary[case] = {
            "clock": a.clock,
            "captum_over_pathattr_other_clock_paired": paired_ratio(other["captum"], other["pathattr"]),
            "captum_over_pathattr_paired": paired_ratio(samples["captum"], samples["pathattr"]),
            "captum_over_pathattr_all_paired": paired_ratio(samples["captum"], samples["pathattr_all"]),
            "max_abs_diff_vs_captum_fp32": diff, "captum_attr_scale": scale,
        }
        if "inseq" in samples:
            summary[case]["inseq_over_pathattr_all_paired"] = paired_ratio(samples["inseq"], samples["pathattr_all"])
        print(case, summary[case], flush=True)
    print(table(rows, {r.case: ("pathattr" if "equal-accuracy" not in r.case else f"pathattr_rtol{a.rtol:g}")
                       for r in rows}))
    settings = dict(vars(a), out=str(a.out), prompt_tokens=PROMPT, new_tokens=NEW, dtype="float32", vocab=tm.VOCAB,
                    command=" ".join(["python -m benchmarks.text_generation"] + list(sys.argv[1:] if argv is None else argv)),
                    load_average_at_start=load_start, load_average_at_end=list(os.getloadavg()),
                    inseq_note="inseq 0.7.1 installed beside transformers 5.25 (pip install inseq==0.7.1)")
    write_results(rows, a.out, environment(), settings, summary)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
