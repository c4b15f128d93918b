"""A text classification set through `pathattr attribute` against a Captum loop, at equal
steps and at equal accuracy.

    python -m benchmarks.text_job [--texts 1000] [--steps 50] [--parts steps,accuracy] [--threads 1]
                                  [--out benchmarks/results/text-job-rtol-cpu-DATE.json]

The set: `--texts` texts of 8 to 128 tokens (uniform, seeded; the test word tokenizer of
tests/text_models.py, [CLS] ... [SEP]), a tiny BERT from a config with random weights
(2 layers, hidden 128, 2 heads: the size of google/bert_uncased_L-2_H-128_A-2), fp32,
3 classes, each text attributed to its label (both sides get the same targets).

  job          run_job on a JSONL file and the model's save_pretrained folder: tokenising,
               loading, length buckets per job chunk, the ragged Zarr store, markers, manifest
               (in process; interpreter start-up not counted).
  bare         the floor at equal steps: per text, the model's own forward and backward of its
               path points (inputs_embeds, no padding, no hooks, nothing stored).
  captum       Captum's LayerIntegratedGradients on the word embeddings, as a user writes it:
               batches of B texts, tokenizer(padding=True) per batch, the pad baseline with
               [CLS]/[SEP] kept (pathattr's default), Gauss-Legendre; B in --captum-batches,
               in file order and sorted by length, compared on the first --tune texts; the
               best sorted and the best file-order loop then run on the whole set.

Part "steps" (equal steps): the job and the two Captum loops at --steps Gauss-Legendre steps.
Part "accuracy" (equal accuracy, docs/methods.md §14): on a random --sample of texts the
reference is Captum's LIG in fp64 at --ref-steps Gauss-Legendre steps (checked against
--ref-steps / 2); Captum's n is the smallest of 4, 8, 16, ... for which >= --frac of the
sample's embedding maps are within --accuracy relative L2 of the reference; the job runs
with --rtol and its maps on the sample are checked against the same reference (rtol's
accuracy is an estimate). Then the job with --rtol against the Captum loops at that n.
On the whole set the providers run round robin, --rounds times (texts/s = texts / wall
seconds; medians compared), so a change in the machine's load falls on every provider.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/text_models.py: the word tokenizer

from .harness import environment  # noqa: E402


DEVICE = "cpu"  # --device: where the model, Captum's loop and the job run (each provider ends on the host)


def make_model(num_labels: int = 3, init_range: float = 0.02):
    """The random BERT; init_range: the std of its random weights (0.02: BERT's default, a
    nearly linear model along the path; larger: more curvature, harder to integrate)."""
    import transformers
    from text_models import VOCAB

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=512, max_position_embeddings=512, num_labels=num_labels,
                                  pad_token_id=0, initializer_range=init_range)
    return transformers.BertForSequenceClassification(cfg).eval()


def make_texts(n: int, lo: int, hi: int, seed: int = 0):
    """n texts of lo..hi tokens ([CLS] + words + [SEP]) and their labels."""
    from text_models import WORDS

    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo - 2, hi - 2))) for _ in range(n)]
    return texts, [rng.randrange(3) for _ in range(n)]


def captum_loop(model, tok, texts, labels, steps, batch, sort, maps: bool = False):
    """Captum LIG over the set in batches of `batch` (sorted by length or not); per-text
    scores (L,), or with maps=True the embedding attributions (L, E), as float64 numpy."""
    from captum.attr import LayerIntegratedGradients

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    order = sorted(range(len(texts)), key=lambda i: len(texts[i].split())) if sort else list(range(len(texts)))
    out = [None] * len(texts)
    special = torch.tensor([tok.cls_token_id, tok.sep_token_id])
    dev = next(model.parameters()).device
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        enc = tok([texts[i] for i in idx], padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        base = torch.where(torch.isin(ids, special.to(dev)), ids, torch.full_like(ids, tok.pad_token_id))
        attr = lig.attribute(ids, baselines=base, additional_forward_args=(mask,),
                             target=torch.tensor([labels[i] for i in idx], device=dev), n_steps=steps,
                             method="gausslegendre")
        attr = (attr.detach() if maps else attr.sum(-1).detach()).cpu()
        mask = mask.cpu()
        for j, i in enumerate(idx):
            out[i] = attr[j][mask[j].bool()].double().numpy()
    return out


def bare_loop(model, tok, texts, labels, steps):
    """The floor at equal steps: per text (no padding), the model's own forward and backward
    of its `steps` path points through inputs_embeds, folded with the Gauss-Legendre
    weights; nothing else (no hooks, no checks, no store). Per-text scores, float64 numpy."""
    import numpy.polynomial.legendre as leg

    x, w = leg.leggauss(steps)
    dev = next(model.parameters()).device
    alphas = torch.tensor((x + 1) / 2, dtype=torch.float32, device=dev).view(-1, 1, 1)
    weights = torch.tensor(w / 2, dtype=torch.float32, device=dev).view(-1, 1, 1)
    emb = model.get_input_embeddings()
    special = torch.tensor([tok.cls_token_id, tok.sep_token_id], device=dev)
    out = []
    for t, y in zip(texts, labels):
        ids = tok(t, return_tensors="pt")["input_ids"].to(dev)
        base = torch.where(torch.isin(ids, special), ids, torch.full_like(ids, tok.pad_token_id))
        with torch.no_grad():
            hx, hb = emb(ids), emb(base)
        pts = (hb + alphas * (hx - hb)).requires_grad_(True)
        g, = torch.autograd.grad(model(inputs_embeds=pts).logits[:, y].sum(), pts)
        out.append(((g * weights).sum(0) * (hx[0] - hb[0])).sum(-1).detach().double().cpu().numpy())
    return out


def run_the_job(folder, data, steps, out, rtol=None, **kw):
    from pathattr.apps.job import JobConfig, run_job

    cfg = JobConfig(out=str(out), model=str(folder), data=str(data), method="ig", steps=steps, target="label",
                    label_field="label", quiet=True, device=DEVICE, method_settings={} if rtol is None else {"rtol": rtol}, **kw)
    return run_job(cfg)


def rel_l2(a, ref) -> float:
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-300))


class Bench:
    """The set on disk, the model, and the rows recorded (with the machine's load)."""

    def __init__(self, args):
        from text_models import word_tokenizer

        self.args = args
        self.tok = word_tokenizer()
        self.model = make_model(init_range=args.init_range)
        self.texts, self.labels = make_texts(args.texts, args.min_tokens, args.max_tokens)
        self.tmp = Path(tempfile.mkdtemp(prefix="pathattr-bench-text-"))
        self.folder = self.tmp / "tiny-bert"
        self.model.save_pretrained(self.folder)
        self.tok.save_pretrained(self.folder)
        self.model.to(DEVICE)
        self.data = self.tmp / "texts.jsonl"
        self.data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                                     for t, y in zip(self.texts, self.labels)))
        self.rows = []

    def record(self, part, provider, n, seconds, **extra):
        load = os.getloadavg()[0]
        self.rows.append(dict(part=part, provider=provider, texts=n, seconds=round(seconds, 3),
                              texts_per_s=round(n / seconds, 2), load_1min=round(load, 2), **extra))
        print(f"[{part}] {provider:44s} {n:5d} texts {seconds:8.2f} s {n / seconds:8.2f} texts/s "
              f"(load {load:.1f})", flush=True)

    def tune(self, steps):
        """Captum's batch sizes on the first --tune texts: (the best sorted, the best in file order)."""
        a, n = self.args, self.args.tune
        best = {}
        for b in [int(v) for v in a.captum_batches.split(",")]:
            for sort in ((False,) if b == 1 else (False, True)):
                t0 = time.perf_counter()
                captum_loop(self.model, self.tok, self.texts[:n], self.labels[:n], steps, b, sort)
                sec = time.perf_counter() - t0
                self.record("tune", f"captum b{b} {'sorted' if sort else 'file order'}", n, sec, batch=b,
                            sorted=sort, steps=steps)
                for key in ({True, False} if b == 1 else {sort}):  # batches of 1 need no sorting
                    if key not in best or sec < best[key][0]:
                        best[key] = (sec, b)
        return best[True][1], best[False][1]

    def round_robin(self, part, providers):
        """providers: name -> callable(round) -> extra dict; --rounds rounds; medians."""
        secs = {k: [] for k in providers}
        extras = {}
        for r in range(self.args.rounds):
            for name, fn in providers.items():
                t0 = time.perf_counter()
                extras[name] = fn(r) or {}
                secs[name].append(time.perf_counter() - t0)
                self.record(part, f"{name} (round {r})", len(self.texts), secs[name][-1], round=r)
        return {k: float(np.median(v)) for k, v in secs.items()}, extras


def captum_providers(bench, steps, b_sorted, b_plain, keep):
    """The best sorted and the best file-order loop: (providers, name of each). Batches of
    one text need no sorting: then one loop stands for both."""
    m, tok, t, y = bench.model, bench.tok, bench.texts, bench.labels

    def loop(b, sort):
        def fn(r):
            keep[b, sort] = captum_loop(m, tok, t, y, steps, b, sort)
            if b == 1:  # the same loop either way
                keep[b, not sort] = keep[b, sort]
        return fn
    if b_sorted == b_plain == 1:
        name = f"captum n{steps} b1"
        return {name: loop(1, False)}, (name, name)
    names = (f"captum n{steps} b{b_sorted} sorted", f"captum n{steps} b{b_plain} file order")
    return {names[0]: loop(b_sorted, True), names[1]: loop(b_plain, False)}, names


def job_scores(run, idx):
    import zarr

    from pathattr.apps.job.text import read_text_item

    arrays = dict(zarr.open_group(str(Path(run) / "store.zarr"), mode="r").arrays())
    return {i: read_text_item(arrays, i)["scores"].astype(np.float64) for i in idx}, arrays


def part_steps(bench, out, batches=None):
    a = bench.args
    b_sorted, b_plain = batches or bench.tune(a.steps)
    keep = {}
    providers, (n_sorted, n_plain) = captum_providers(bench, a.steps, b_sorted, b_plain, keep)
    cs = a.job_chunk
    providers[f"pathattr job n{a.steps} chunk {cs}"] = lambda r: run_the_job(
        bench.folder, bench.data, a.steps, bench.tmp / f"steps-{r}", chunk_size=cs) and None
    bare = f"bare model passes n{a.steps} b1"

    def floor(r):
        keep["bare"] = bare_loop(bench.model, bench.tok, bench.texts, bench.labels, a.steps)
    providers[bare] = floor
    med, _ = bench.round_robin("steps", providers)
    # The two sides agree at equal steps (fp32: the same sums in another order and padding).
    idx = list(range(0, len(bench.texts), max(1, len(bench.texts) // 20)))
    js, _ = job_scores(bench.tmp / "steps-0", idx)
    worst = max(float(np.abs(js[i] - keep[(b_sorted, True)][i]).max() / max(np.abs(keep[(b_sorted, True)][i]).max(),
                                                                           1e-12)) for i in idx)
    job = med[f"pathattr job n{a.steps} chunk {cs}"]
    out["equal_steps"] = {
        "steps": a.steps, "captum_best_batch_sorted": b_sorted, "captum_best_batch_file_order": b_plain,
        "median_seconds": med, "texts_per_s": {k: len(bench.texts) / v for k, v in med.items()},
        "job_vs_captum_sorted": med[n_sorted] / job, "job_vs_captum_file_order": med[n_plain] / job,
        # the floor: no IG at these steps can take less than the model's own passes
        "captum_sorted_over_bare": med[n_sorted] / med[bare], "job_over_bare": job / med[bare],
        "max_score_difference_20_texts": worst,
        "bare_max_score_difference_20_texts": max(float(np.abs(keep["bare"][i] - keep[(b_sorted, True)][i]).max() /
                                                        max(np.abs(keep[(b_sorted, True)][i]).max(), 1e-12))
                                                  for i in idx)}
    print(f"equal steps: job {out['equal_steps']['job_vs_captum_sorted']:.2f}x Captum sorted (b{b_sorted}), "
          f"{out['equal_steps']['job_vs_captum_file_order']:.2f}x Captum in file order (b{b_plain}); "
          f"largest score difference {worst:.1e}; against the bare model's passes: Captum "
          f"{out['equal_steps']['captum_sorted_over_bare']:.2f}x, the job {out['equal_steps']['job_over_bare']:.2f}x",
          flush=True)
    return b_sorted, b_plain


def part_accuracy(bench, out, batches):
    from pathattr.text import attribute_tokens

    a = bench.args
    rng = random.Random(a.sample_seed)
    idx = sorted(rng.sample(range(len(bench.texts)), min(a.sample, len(bench.texts))))
    st, sy = [bench.texts[i] for i in idx], [bench.labels[i] for i in idx]
    m64 = make_model(init_range=a.init_range).double()
    m64.load_state_dict(bench.model.state_dict())
    m64.to(DEVICE)
    t0 = time.perf_counter()
    ref = captum_loop(m64, bench.tok, st, sy, a.ref_steps, 8, True, maps=True)
    half = captum_loop(m64, bench.tok, st, sy, a.ref_steps // 2, 8, True, maps=True)
    ref_check = [rel_l2(h, r) for h, r in zip(half, ref)]
    print(f"reference: fp64 GL {a.ref_steps} vs {a.ref_steps // 2}: largest relative L2 {max(ref_check):.1e} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    ref_scores = [r.sum(-1) for r in ref]
    # Captum: the smallest n = 4, 8, 16, ... with >= frac of the sample within `accuracy`.
    ladder, n_pick = [], None
    n = 4
    while n < a.ref_steps:
        maps = captum_loop(bench.model, bench.tok, st, sy, n, 8, True, maps=True)
        err = [rel_l2(mp, r) for mp, r in zip(maps, ref)]
        serr = [rel_l2(mp.sum(-1), r) for mp, r in zip(maps, ref_scores)]
        frac = float(np.mean(np.array(err) <= a.accuracy))
        ladder.append({"n": n, "fraction_within": frac, "median_error": float(np.median(err)), "max_error": max(err),
                       "scores_fraction_within": float(np.mean(np.array(serr) <= a.accuracy))})
        print(f"captum n={n}: {frac:.0%} of {len(st)} maps within {a.accuracy:g} (max {max(err):.2e}; token "
              f"scores {ladder[-1]['scores_fraction_within']:.0%})", flush=True)
        if frac >= a.frac:
            n_pick = n
            break
        n *= 2
    if n_pick is None:
        raise SystemExit(f"no n below {a.ref_steps} reaches {a.frac:.0%} within {a.accuracy}")
    # pathattr with rtol on the same texts, as the job calls it (fp32, length buckets); the
    # default first round (min_steps 17) and any --min-steps variants.
    variants = [None] + [int(v) for v in a.min_steps_variants.split(",") if v]
    rts = {}
    for ms in variants:
        kw = {} if ms is None else {"min_steps": ms}
        res = attribute_tokens(bench.model, st, tokenizer=bench.tok, target=torch.tensor(sy), method="ig",
                               rtol=a.rtol, return_embeddings=True, batch_size=32, **kw)
        err, serr = [], []
        for j in range(len(st)):
            keep = res.attention_mask[j].bool()
            mp = res.embeddings[j][keep].detach().double().cpu().numpy()
            err.append(rel_l2(mp, ref[j]))
            serr.append(rel_l2(mp.sum(-1), ref_scores[j]))
        est = res.error_estimate.double().cpu().numpy()
        ne = res.n_evaluations.cpu().numpy()
        rt = {"rtol": a.rtol, "min_steps": ms or 17, "fraction_within": float(np.mean(np.array(err) <= a.accuracy)),
              "median_error": float(np.median(err)), "max_error": max(err),
              "scores_fraction_within": float(np.mean(np.array(serr) <= a.accuracy)),
              "converged": int(res.converged.sum()), "n_evaluations_mean": float(ne.mean()),
              "n_evaluations_min": int(ne.min()), "n_evaluations_max": int(ne.max()),
              "estimate_over_true_median": float(np.median(est / np.maximum(err, 1e-300)))}
        rts[rt["min_steps"]] = rt
        print(f"rtol={a.rtol} min_steps={rt['min_steps']}: {rt['fraction_within']:.0%} of maps within {a.accuracy:g} "
              f"(max {rt['max_error']:.2e}), {rt['n_evaluations_mean']:.1f} evaluations per text "
              f"({rt['n_evaluations_min']}-{rt['n_evaluations_max']})", flush=True)
    # The whole set: the job with rtol against the Captum loops at n_pick, at their best
    # batch sizes for that n (fewer steps per call: larger batches may pay now).
    if a.retune:
        batches = bench.tune(n_pick)
    keep = {}
    providers, (n_sorted, n_plain) = captum_providers(bench, n_pick, batches[0], batches[1], keep)
    cs = a.job_chunk
    manifests, names = {}, {}

    def job(ms):
        def fn(r):
            extra = {} if ms is None else {"min_steps": ms}
            from pathattr.apps.job import JobConfig, run_job

            cfg = JobConfig(out=str(bench.tmp / f"rtol-{ms}-{r}"), model=str(bench.folder), data=str(bench.data),
                            method="ig", target="label", label_field="label", quiet=True, chunk_size=cs, device=DEVICE,
                            method_settings={"rtol": a.rtol, **extra})
            manifests[ms, r] = run_job(cfg)
        return fn
    for ms in variants:
        names[ms] = f"pathattr job rtol {a.rtol:g} chunk {cs}" + ("" if ms is None else f" min_steps {ms}")
        providers[names[ms]] = job(ms)
    med, _ = bench.round_robin("accuracy", providers)
    jobs = {}
    for ms in variants:
        js, arrays = job_scores(bench.tmp / f"rtol-{ms}-0", idx)
        job_err = [rel_l2(js[i], r) for i, r in zip(idx, ref_scores)]
        jobs[names[ms]] = {"store_scores_fraction_within": float(np.mean(np.array(job_err) <= a.accuracy)),
                           "manifest_tolerance": manifests[ms, 0].get("tolerance"),
                           "vs_captum_sorted": med[n_sorted] / med[names[ms]],
                           "vs_captum_file_order": med[n_plain] / med[names[ms]]}
    out["equal_accuracy"] = {
        "accuracy": a.accuracy, "fraction": a.frac, "sample": len(st), "sample_seed": a.sample_seed,
        "reference": {"rule": "gausslegendre", "steps": a.ref_steps, "dtype": "fp64", "provider": "captum LIG",
                      "max_relative_l2_vs_half_steps": max(ref_check)},
        "captum_ladder": ladder, "captum_n": n_pick, "rtol_sample": rts, "jobs": jobs,
        "median_seconds": med, "texts_per_s": {k: len(bench.texts) / v for k, v in med.items()},
        "captum_best_batch_sorted": batches[0], "captum_best_batch_file_order": batches[1],
        "job_vs_captum_sorted": jobs[names[None]]["vs_captum_sorted"],
        "job_vs_captum_file_order": jobs[names[None]]["vs_captum_file_order"]}
    e = out["equal_accuracy"]
    print(f"equal accuracy: job rtol {a.rtol:g} {e['job_vs_captum_sorted']:.2f}x Captum n={n_pick} sorted, "
          f"{e['job_vs_captum_file_order']:.2f}x in file order", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--min-tokens", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=50, help="equal steps: Gauss-Legendre steps on both sides")
    p.add_argument("--parts", default="steps,accuracy")
    p.add_argument("--tune", type=int, default=100, help="texts on which Captum's batch sizes are compared")
    p.add_argument("--captum-batches", default="1,4,8,32")
    p.add_argument("--batches", default=None, help="SORTED,FILE: Captum's batch sizes at --steps, skipping "
                                                   "their comparison on the first --tune texts")
    p.add_argument("--job-chunk", type=int, default=512, help="the job's --chunk-size (512: the text default)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin repetitions on the whole set")
    p.add_argument("--rtol", type=float, default=0.01)
    p.add_argument("--accuracy", type=float, default=0.01, help="relative L2 error of a map counted as accurate")
    p.add_argument("--frac", type=float, default=0.95, help="share of the sample Captum's n must get accurate")
    p.add_argument("--no-retune", dest="retune", action="store_false",
                   help="equal accuracy: keep the equal-steps batch sizes instead of comparing them again at n")
    p.add_argument("--min-steps-variants", default="",
                   help="equal accuracy: also the job with --set min_steps=N for each N (e.g. 5: a first round of 5)")
    p.add_argument("--sample", type=int, default=50)
    p.add_argument("--sample-seed", type=int, default=1)
    p.add_argument("--ref-steps", type=int, default=512)
    p.add_argument("--init-range", type=float, default=0.02,
                   help="std of the random BERT's weights (0.02: BERT's default, as before; larger: more curvature)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: the model, Captum's loop and the job there")
    p.add_argument("--out", default=f"benchmarks/results/text-job-rtol-cpu-{datetime.date.today().isoformat()}.json")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    n_tok = [len(t.split()) + 2 for t in bench.texts]
    out = {"benchmark": "text_job", "environment": environment(), "command": " ".join(sys.argv),
           "machine_note": "2 shared CPU cores; other sessions were running on the machine at the same time "
                           "(load_1min per row)",
           "settings": {"texts": len(bench.texts), "tokens": [args.min_tokens, args.max_tokens],
                        "mean_tokens": float(np.mean(n_tok)), "rule": "gausslegendre",
                        "model": f"BertForSequenceClassification L2 H128 A2 I512, random (initializer_range "
                                 f"{args.init_range:g}), fp32",
                        "target": "label", "baseline": "pad with [CLS]/[SEP] kept", "threads": torch.get_num_threads(),
                        "job": f"chunk_size {args.job_chunk}, batch_size 32 (default), length buckets per chunk, "
                               "fp32, float32 store"},
           "rounds": args.rounds}
    parts = args.parts.split(",")
    batches = tuple(int(v) for v in args.batches.split(",")) if args.batches else None
    t0 = time.perf_counter()
    try:
        if "steps" in parts:
            batches = part_steps(bench, out, batches)
        if "accuracy" in parts:
            if batches is None:
                batches = bench.tune(args.steps)
            part_accuracy(bench, out, batches)
    finally:
        out["rows"] = bench.rows
        out["total_seconds"] = time.perf_counter() - t0
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
