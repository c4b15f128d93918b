"""CPU benchmark: generation attribution, pathattr against Captum's LLMGradientAttribution and Inseq's IG.

    python -m benchmarks.text_generation [--repeat 5] [--steps 50] [--hidden 128] [--layers 2]
        [--out benchmarks/results/text-generation-cpu-DATE.json]

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
--clock process (default) times each call by this process's CPU time (time.process_time),
wall clock beside it: on this project's 2-core machine, shared with other sessions (load
10-13 during the first runs), wall-clock samples of one call spread 10x, CPU time far
less. --threads sets torch's intra-op threads (default 1: CPU time then is the work
itself). Only ratios within one run mean anything.
"""
from __future__ import annotations

import argparse
import datetime
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


def _interleaved(providers, repeat: int, warmup: int):
    """Round-robin samples of every provider: (CPU seconds, wall seconds) lists per provider."""
    for fn in providers.values():
        for _ in range(warmup):
            fn()
    cpu = {k: [] for k in providers}
    wall = {k: [] for k in providers}
    for _ in range(repeat):
        for k, fn in providers.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return cpu, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--no-inseq", action="store_true")
    ap.add_argument("--clock", choices=("process", "wall"), default="process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path,
                    default=Path(f"benchmarks/results/text-generation-cpu-{datetime.date.today().isoformat()}.json"))
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    tok = tm.word_tokenizer(bert=False)
    prompt = tm.random_texts(1, PROMPT, PROMPT, seed=7)[0]
    rows, summary = [], {}
    for name, model in _models(a.hidden, a.layers).items():
        p_ids = torch.tensor(tok(prompt)["input_ids"])
        assert p_ids.numel() == PROMPT
        with torch.no_grad():
            cont = model.generate(input_ids=p_ids.view(1, -1), attention_mask=torch.ones(1, PROMPT, dtype=torch.long),
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
        if im is not None:
            full = prompt + " " + tok.decode(cont.tolist())
            providers["inseq"] = lambda: im.attribute(prompt, generated_texts=full, n_steps=a.steps,
                                                      show_progress=False, pretty_progress=False)
        ours, theirs = providers["pathattr"](), providers["captum"]()
        diff = float((ours.prompt_matrix - theirs.token_attr).abs().max())
        scale = float(theirs.token_attr.abs().max())
        cpu, wall = _interleaved(providers, a.repeat, a.warmup)
        samples, other = (cpu, wall) if a.clock == "process" else (wall, cpu)
        case = f"{name}/h{a.hidden}-l{a.layers}/p{PROMPT}+{NEW}"
        for prov, s in samples.items():
            rows.append(Row(case, prov, 1, a.steps, "cpu", s,
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
    print(table(rows, {r.case: "pathattr" for r in rows}))
    settings = dict(vars(a), out=str(a.out), prompt_tokens=PROMPT, new_tokens=NEW, dtype="float32", vocab=tm.VOCAB,
                    inseq_note="inseq 0.7.1 installed beside transformers 5.25 (pip install inseq==0.7.1)")
    write_results(rows, a.out, environment(), settings, summary)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
