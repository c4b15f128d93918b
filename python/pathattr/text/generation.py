"""Generation attribution, teacher-forced (docs/methods.md §15).

For s = prompt + continuation (N = P + T tokens), every continuation token's
log-probability (or logit) F_k = log p(s_{P+k} | s_<P+k) is attributed to the tokens
before it by IG in the embedding space of `model.get_input_embeddings()`. One forward
of s[:-1] per path point gives every F_k at once (a causal model's position t sees only
s_<=t); the T gradients of that forward come from T backward passes over its one graph
(ModelRunner.backward_columns; its vmapped form was slower on CPU). Where the model takes
a key/value cache, that forward runs in causal segments, so each token's backward skips
what its value does not depend on (text/segments.py).
With rtol, each token's row is refined to its own tolerance, the forwards shared
(text/generation_rtol.py).
The model runs only through ModelRunner (engine/runner.py), the path's chunks are the
runner's, the quadrature is the engine's (engine/schedule.py).
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import torch
from torch import nn

from .. import methods
from ..engine import schedule as schedules
from ..engine.checks import check_bool, check_choice, check_positive_int, check_tolerance
from ..engine.deadline import resolve_deadline
from ..engine.runner import ModelRunner, outside_inference_mode
from ..layers.hooks import activations
from ..methods.common import completeness_gap
from .baselines import check_baseline_arg, pinned, token_id
from .generation_rtol import integrate_to_tolerance
from .inputs import check_ids, input_embeddings, vocab_size
from .results import GenerationAttribution
from .teacher_forced import TeacherForced, Values
from .tasks import task_of_class_name

OUTPUTS = ("log_prob", "logit")
# rtol's first round for generation (docs/methods.md §15): its points serve all T rows with one
# forward each, later rounds' points about two rows, so a larger first round is cheap. Measured
# at equal accuracy (tiny GPT-2 / Llama, hidden 64 and 128, P=32, T=16, rtol 0.01 and 0.005,
# one thread, CPU time, shared machine): 65 was 24-35 % faster than 17 (33: 8-27 %).
RTOL_MIN_STEPS = 65
ATTRIBUTE_TO = ("all", "prompt")


class _Generate(nn.Module):
    """model.generate, greedy, as a model the runner calls (prompt ids -> whole sequence)."""

    def __init__(self, model: nn.Module, max_new_tokens: int, pad_id: Optional[int]):
        super().__init__()
        self.model = model
        self.kw = dict(max_new_tokens=max_new_tokens, do_sample=False)
        if pad_id is not None:
            self.kw["pad_token_id"] = pad_id

    def forward(self, input_ids):
        return self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **self.kw)


def _ids(value: Any, tokenizer: Any, vocab: Optional[int], name: str, special: bool) -> torch.Tensor:
    """One text's ids (n,) from a str (tokenizer), a list of ints or a (n,) / (1, n) tensor."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{name} is an empty text: there are no tokens")
        if tokenizer is None:
            raise ValueError(f"{name} is text: pass tokenizer= (a Hugging Face tokenizer) or token ids")
        value = tokenizer(value, add_special_tokens=special)["input_ids"]
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, float) for v in value):
            raise TypeError(f"{name} must hold integer token ids, got floats")
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{name} must be a str, a list of ints or a tensor of ids")
        value = torch.tensor(list(value), dtype=torch.long)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a str, a list of ints or a tensor of ids; got {type(value).__name__}")
    if value.dim() == 2 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 1:
        raise ValueError(f"{name} must be one text's ids, (n,) or (1, n); got shape {tuple(value.shape)} "
                         f"(one prompt per call)")
    return check_ids(value, vocab, name)


def _max_positions(model) -> Optional[int]:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        v = getattr(cfg, key, None)
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
    return None


def _baseline(baseline, ids, P, attribute_to, tokenizer, model, keep_special, vocab) -> Optional[torch.Tensor]:
    """The baseline's ids (N,) (None: zero embeddings). Positions not on the path keep their
    own id: the continuation for attribute_to="prompt", special tokens with keep_special."""
    N = ids.numel()
    moving = torch.ones(N, dtype=torch.bool, device=ids.device)
    if attribute_to == "prompt":
        moving[P:] = False
    moving &= ~pinned(ids.view(1, -1), torch.ones(1, N, dtype=torch.long, device=ids.device), tokenizer, model,
                      keep_special)[0]
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(ids.device).reshape(-1) if baseline.dim() <= 2 else baseline
        if b.dim() != 1 or b.numel() not in (P, N):
            raise ValueError(f"baseline must be token ids of the prompt ({P},) or of prompt + continuation ({N},); "
                             f"got shape {tuple(baseline.shape)}")
        b = check_ids(b, vocab, "baseline")
        full = ids.clone()
        full[:b.numel()] = b
        return torch.where(moving, full, ids), moving
    if baseline == "zeros":
        return None, moving
    fill = token_id(baseline, tokenizer, model) if isinstance(baseline, str) else int(baseline)
    if fill < 0 or (vocab is not None and fill >= vocab):
        raise ValueError(f"baseline: token id {fill} is outside the model's vocabulary [0, {vocab})")
    return torch.where(moving, torch.full_like(ids, fill), ids), moving


@outside_inference_mode  # attributions are gradients (engine/runner.py)
def attribute_generation(model, prompt, *, tokenizer=None, continuation=None, max_new_tokens: Optional[int] = None,
                         output: str = "log_prob", attribute_to: str = "all", method: str = "ig",
                         baseline: Any = "pad", keep_special_tokens: bool = False, n_steps: int = 50,
                         rule: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                         return_embeddings: bool = False, rtol: Optional[float] = None,
                         min_steps: Optional[int] = None, max_steps: Optional[int] = None,
                         deadline: Optional[float] = None, **method_kwargs) -> GenerationAttribution:
    """Attribute each token of a continuation to every earlier token of prompt + continuation.

    Args:
        model: a Hugging Face causal LM (forward(input_ids=) -> .logits (1, N, V); generate()).
        prompt: a str (with tokenizer=) or token ids (P,) / (1, P) int64.
        tokenizer: encodes str prompt/continuation (tokenizer(text)["input_ids"],
            special tokens as the tokenizer adds them to the prompt, none to the
            continuation); gives token strings and the pad/unk/mask ids of the baseline.
        continuation: the explained tokens, a str or ids (T,) / (1, T); or None with
            max_new_tokens=N: model.generate(greedy, N new tokens).
        output: "log_prob" (log_softmax of the logits, Captum's LLMGradientAttribution) or "logit".
        attribute_to: "all" (default): prompt and earlier continuation tokens all move from
            the baseline (row k covers every position before P + k); "prompt": only the
            prompt moves, the continuation keeps its own tokens at both ends (exactly
            Captum's LLMGradientAttribution with LayerIntegratedGradients).
        method: "ig" (one schedule shared by every position; per-position adaptive
            schedules such as IDG's would need one forward per position).
        baseline: "pad", "unk", "mask", "eos", "zeros", an int token id (Captum's default
            is id 0), or ids (N,) / (P,).
        keep_special_tokens: special tokens keep their own id in the baseline.
        n_steps, rule: the quadrature (Captum's default: 50, "gausslegendre"); unused with rtol.
        internal_batch_size: path points per forward (None: the engine's budget).
        return_embeddings: also the (T, N, E) embedding attributions.
        rtol: each row k (continuation token k's (N, E) embedding attributions) refined on
            its own until ITS estimated relative L2 error is <= rtol (docs/methods.md §14);
            min_steps / max_steps bound each row's gradient evaluations (default 65 / 1025:
            the first round's points serve all T rows, so it is larger than §14's 17).
            The rows' samples are nested on one grid, so rows that refine the same interval
            share its forwards: a chunk of distinct path points costs one forward and one
            backward per row that asked for one of them.
        deadline: with rtol, a `time.monotonic()` value after which no row is refined further
            (each keeps what it reached; `converged` says which did); unused without rtol.
        **method_kwargs: none are read (each raises TypeError naming it).
    Returns: GenerationAttribution, with per row `n_evaluations` (gradient evaluations),
        `error_estimate` (relative; without rtol the completeness gap |delta| / |F(x) - F(x')|)
        and `converged` (rtol only), and per call `n_forward` (path points run forward,
        besides the 3 forwards of the ends) and `n_backward` (backward passes), `rounds`,
        and the rows' samples `alphas` / `weights` (T, S) (rtol only; NaN / 0 padded).
        Errors: ValueError / TypeError naming the argument, before any model call.
    Cost: 3 forwards (h(x), h(x'), both ends) + per chunk of path points one forward and
    one backward per row that needs them (all T without rtol).
    """
    # -- every check before the first model call
    layer = input_embeddings(model)
    kind = task_of_class_name(type(model).__name__)
    if kind is not None and kind != "causal_lm":
        raise ValueError(f"model ({type(model).__name__}) is not a causal LM: generation attribution needs one "
                         f"(use attribute_tokens for a {kind.replace('_', ' ')} model)")
    m = methods.get(method)
    if m.NAME != "ig":
        raise ValueError(f"method must be 'ig' for generation attribution (one schedule serves every position); "
                         f"got {method!r}")
    if method_kwargs:  # this loop reads n_steps/rule or rtol/min_steps/max_steps only; an ignored setting is an error
        raise TypeError(f"attribute_generation has no setting {next(iter(method_kwargs))!r}: its quadrature is "
                        f"n_steps and rule, or rtol, min_steps and max_steps")
    cfg = m.settings(n_steps=n_steps, rule=rule)
    tol = check_tolerance(rtol, RTOL_MIN_STEPS if min_steps is None and rtol is not None else min_steps, max_steps)
    check_choice(output, "output", OUTPUTS)
    check_choice(attribute_to, "attribute_to", ATTRIBUTE_TO)
    check_bool(keep_special_tokens, "keep_special_tokens")
    check_bool(return_embeddings, "return_embeddings")
    ibs = check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True)
    deadline = resolve_deadline(deadline)  # TypeError naming it
    check_baseline_arg(baseline)
    if baseline == "pad" and tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError("baseline='pad': the tokenizer has no pad token; pass baseline='unk', 'eos', 'zeros', an "
                         "int token id, or set tokenizer.pad_token")
    vocab = vocab_size(layer)
    p_ids = _ids(prompt, tokenizer, vocab, "prompt", special=True)
    if (continuation is None) == (max_new_tokens is None):
        raise ValueError("pass exactly one of continuation= (the explained tokens) and max_new_tokens= (generate them)")
    limit = _max_positions(model)
    if continuation is not None:
        c_ids = _ids(continuation, tokenizer, vocab, "continuation", special=False).to(p_ids.device)
        if limit is not None and p_ids.numel() + c_ids.numel() > limit:
            raise ValueError(f"prompt + continuation has {p_ids.numel() + c_ids.numel()} tokens, past the model's "
                             f"{limit} positions")
    else:
        n_new = check_positive_int(max_new_tokens, "max_new_tokens")
        if limit is not None and p_ids.numel() + n_new > limit:
            raise ValueError(f"max_new_tokens: prompt ({p_ids.numel()}) + {n_new} new tokens is past the model's "
                             f"{limit} positions")
    P = p_ids.numel()
    if continuation is None:  # the model's own greedy continuation, through the runner
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        pad = pad if pad is not None else getattr(getattr(model, "config", None), "eos_token_id", None)
        pad = pad[0] if isinstance(pad, (list, tuple)) and pad else pad
        with torch.no_grad():
            seq = ModelRunner(_Generate(model, n_new, pad)).call(p_ids.view(1, -1))
        c_ids = seq[0, P:].to(p_ids.device)
        if c_ids.numel() == 0:
            raise ValueError("max_new_tokens: model.generate produced no new token (it ended the text at once)")
    ids = torch.cat([p_ids, c_ids])
    N, T = ids.numel(), c_ids.numel()
    base_ids, moving = _baseline(baseline, ids, P, attribute_to, tokenizer, model, keep_special_tokens, vocab)
    # -- the runs
    values = Values(model, c_ids, output)
    ends = ModelRunner(values, None, ibs)
    x_in = ids[:-1].view(1, -1)
    h_x = activations(values, layer, x_in, (), False, ends)  # (1, N-1, E)
    if not h_x.is_floating_point():
        raise TypeError(f"model.get_input_embeddings() gives dtype {h_x.dtype}; attribution needs floating point")
    if base_ids is None:
        h_b = torch.where(moving[:-1].view(1, -1, 1), torch.zeros_like(h_x), h_x)
    else:
        h_b = activations(values, layer, base_ids[:-1].view(1, -1), (), False, ends)
    forced = TeacherForced(model, layer, P, c_ids, output, ibs)
    ends_h, ends_in = torch.cat([h_x, h_b]), x_in.expand(2, -1)
    with torch.no_grad():
        f = forced.runner.call(ends_h, (ends_in,))
    if not bool(torch.isfinite(f).all()):
        raise FloatingPointError("the model's values of the continuation at the prompt (or its baseline) are not "
                                 "finite (NaN/Inf)")
    acc_dtype = torch.float64 if h_x.dtype == torch.float64 else torch.float32
    n_calls = forced.check_segments(ends_h, ends_in, f)
    # row k sees positions < P + k only (causal); the rest is zeroed exactly
    seen = torch.arange(N - 1, device=h_x.device).view(1, -1) < (P + torch.arange(T, device=h_x.device)).view(-1, 1)
    if tol:
        ref = integrate_to_tolerance(forced, h_x, h_b, x_in, seen, tol, acc_dtype, deadline)
        attr, details = ref.attr, dict(n_evaluations=ref.n_evaluations, error_estimate=ref.error_estimate,
                                       converged=ref.converged, n_forward=ref.n_forward, n_backward=ref.n_backward,
                                       rounds=ref.rounds, alphas=ref.alphas, weights=ref.weights)
    else:
        acc, details = _integrate(forced, h_x, h_b, x_in, T, cfg, acc_dtype)
        attr = acc * (h_x[0] - h_b[0]).to(acc_dtype) * seen.unsqueeze(-1).to(acc_dtype)  # (T, N-1, E)
    attr = torch.cat([attr, attr.new_zeros(T, 1, attr.shape[-1])], 1).to(h_x.dtype)  # the last token is no source
    f = f.to(acc_dtype)
    total = attr.to(acc_dtype).sum((1, 2))
    delta = total - (f[0] - f[1])
    if not tol:  # docs/methods.md §14 "Without rtol": the relative completeness gap
        details["error_estimate"] = completeness_gap(delta, f[0], f[1])
    tokens = None
    if tokenizer is not None and callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    return GenerationAttribution(
        matrix=attr.sum(-1), norms=attr.norm(dim=-1), input_ids=ids, prompt_length=P, continuation_ids=c_ids,
        values=f[0], baseline_values=f[1], delta=delta, baseline_ids=base_ids, tokens=tokens,
        embeddings=attr if return_embeddings else None, output=output, attribute_to=attribute_to, method=m.NAME,
        settings=dict(tol if tol else cfg, baseline=baseline if isinstance(baseline, (str, int)) else "ids",
                      keep_special_tokens=keep_special_tokens, segments=n_calls), **details)


def _integrate(forced: TeacherForced, h_x: torch.Tensor, h_b: torch.Tensor, x_in: torch.Tensor, T: int, cfg,
               acc_dtype):
    """sum_s w_s dF_k/dh(h_b + alpha_s (h_x - h_b)) for every k: (T, N-1, E), and the counts
    (n_evaluations, n_forward, n_backward, rounds) of GenerationAttribution.

    One forward per chunk of path points, then the T gradients of its outputs
    (ModelRunner.backward_columns: T backward passes over one graph), folded with the
    quadrature weights. The weights
    go into the fold, not into the backward's cotangent: near a zero-embedding baseline
    a normalisation layer's backward cancels large terms, and a scaled cotangent moved
    Llama's result by 1e-6 relative in fp64 (Captum and a plain loop use unit cotangents)."""
    sched = schedules.uniform(cfg["rule"], cfg["n_steps"], 1)
    alphas = sched.alphas[0].to(device=h_x.device, dtype=h_x.dtype)
    weights = sched.weights[0].to(device=h_x.device, dtype=acc_dtype)
    S = alphas.numel()
    diff = h_x - h_b
    acc = torch.zeros((T,) + tuple(h_x.shape[1:]), dtype=acc_dtype, device=h_x.device)
    chunks = [0]

    def step(s, n):
        pts = (h_b + alphas[s:s + n].view(n, 1, 1) * diff).requires_grad_(True)
        return forced.run(pts, x_in.expand(n, -1))[1]  # (T, n, N-1, E)

    def fold(s, n, grads):
        chunks[0] += 1
        acc.add_((grads.to(acc_dtype) * weights[s:s + n].view(1, n, 1, 1)).sum(1))

    # The runner's element budget per chunk, with each point counted 1/T: a chunk's one graph
    # serves T backward passes, so its per-call overheads weigh T times. Measured on this
    # project's shared CPU (tiny GPT-2, hidden 128, P=32, T=16, 50 points, process time):
    # one chunk of 50 took 3.7 s, three chunks of 17 (the plain budget) 8.6 s.
    forced.runner.chunks(S, max(1, h_x[0].numel() // T), h_x.device.type, step, fold)
    if not bool(torch.isfinite(acc).all()):
        raise FloatingPointError("the model's gradients along the path from the baseline to the prompt are not "
                                 "finite (NaN/Inf)")
    return acc, dict(n_evaluations=torch.full((T,), S, dtype=torch.long), n_forward=S, n_backward=T * chunks[0],
                     rounds=1)
