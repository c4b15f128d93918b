"""Token attribution for Hugging Face models in one call (docs/methods.md §15).

Layer IG (or IDG, Left-IG, Expected Gradients, distribution baselines) at the output of
`model.get_input_embeddings()`, through the project's layer code (layers/layer.py): the
model adds position and token-type embeddings itself; those are not on the path.
Every argument of every text is checked before the first model call; ragged inputs
run per length bucket (buckets.py), each padded only to its own longest text.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, List, Optional

import torch

from .. import methods
from ..baselines.sets import distribution_baseline
from ..engine.checks import check_bool, check_choice, check_positive_int
from ..engine.deadline import resolve_deadline
from ..engine.runner import ModelRunner, outside_inference_mode
from ..layers.hooks import activations
from ..layers.layer import _check_layer_call, run_on_activations
from .baselines import baseline_ids, check_baseline_arg, pinned
from .buckets import AUTO_MAX_PADDING, check_padding, length_buckets
from .inputs import Padded, Rows, check_ids, encode, input_embeddings, pad_rows, vocab_size
from .results import TokenAttribution
from .targets import resolve_position, resolve_target
from .tasks import TextForward, resolve_task

METHODS = ("ig", "idg", "left_ig", "expected_gradients")
# Per-text details of the engine's result kept in TokenAttribution (docs/methods.md §14):
# with rtol, how many gradient evaluations each text took, its estimated relative L2 error
# and whether it reached rtol; a fixed-step call reports the first two (its estimate is
# the relative completeness gap).
PER_TEXT_STATS = ("n_evaluations", "error_estimate", "converged")
OUTPUTS = ("logit", "log_softmax", "softmax")


@dataclass
class _Group:
    """One model batch: the user's text indices and everything checked for them."""

    index: List[int]
    ids: torch.Tensor
    mask: torch.Tensor
    token_types: Optional[torch.Tensor]
    position: Optional[torch.Tensor]
    target: Optional[torch.Tensor]
    base_ids: Optional[torch.Tensor]  # None: zero embeddings (or a reference set)
    refs: Optional[torch.Tensor] = None  # (R, L) reference ids fit to this text


def _method_settings(m, n_steps, rule, method_kwargs):
    """The method's settings from n_steps / rule (where it has them) and **method_kwargs."""
    known = inspect.signature(m.settings).parameters
    given = dict(method_kwargs)
    if "n_steps" in known:
        given.setdefault("n_steps", n_steps)
    if "rule" in known:
        given.setdefault("rule", rule)
    unknown = [k for k in given if k not in known]
    if unknown:
        raise TypeError(f"method {m.NAME!r} has no setting {unknown[0]!r}; its settings are {', '.join(known)}")
    return given


def _fit_references(references: Any, length: int, pad_id: int, tokenizer, vocab) -> torch.Tensor:
    """Reference ids (R, length): each reference cut or right-padded (pad id) to the text's length."""
    if isinstance(references, torch.Tensor):
        if references.dim() != 2 or references.shape[0] == 0:
            raise ValueError(f"references must be token ids (R, L) with R >= 1, got shape {tuple(references.shape)}")
        rows = [check_ids(references, vocab, "references")[i] for i in range(references.shape[0])]
    else:
        enc = encode(list(references) if isinstance(references, (list, tuple)) else references, tokenizer, vocab,
                     "references")
        rows = enc.ids if isinstance(enc, Rows) else [r[m.bool()] for r, m in zip(enc.ids, enc.mask)]
    out = torch.full((len(rows), length), int(pad_id), dtype=torch.long)
    for i, r in enumerate(rows):
        n = min(length, r.numel())
        out[i, :n] = r[:n]
    return out


def _groups(enc, tokenizer, model, task, target, position, baseline, references, keep_special, batch_size,
            max_tokens, max_padding, vocab, pad_id) -> List[_Group]:
    """Split into model batches and check every text's position, target and baseline."""
    if isinstance(enc, Padded):
        padded = [(list(range(enc.ids.shape[0])), enc)]
    else:
        sizes = [r.numel() for r in enc.ids]
        # a reference set is pinned per text (its specials), so references run one text at a time
        if max_padding == "auto":
            max_padding = AUTO_MAX_PADDING.get(enc.ids[0].device.type) if len(sizes) else None
        groups = [[i] for i in range(len(sizes))] if references is not None else \
            length_buckets(sizes, max_batch=batch_size, max_tokens=max_tokens, max_padding=max_padding)
        padded = [(g, pad_rows([enc.ids[i] for i in g], pad_id,
                               None if enc.token_types is None else [enc.token_types[i] for i in g])) for g in groups]
    B = sum(len(g) for g, _ in padded)
    tgt = resolve_target(target, B, model, task, tokenizer)
    pos_all = position
    if isinstance(position, (list, tuple)) or (isinstance(position, torch.Tensor) and position.dim() == 1):
        pos_all = torch.as_tensor(position)
        if pos_all.numel() != B:
            raise ValueError(f"position must be an int or one int per text ({B}); got {pos_all.numel()} values")
    out = []
    for idx, p in padded:
        pos = pos_all[idx] if isinstance(pos_all, torch.Tensor) and pos_all.dim() == 1 else pos_all
        position_i = resolve_position(pos, p.ids, p.mask, task, tokenizer, model)
        t = None if tgt is None else tgt[idx].to(p.ids.device)
        if references is not None:
            refs = _fit_references(references, p.ids.shape[1], pad_id, tokenizer, vocab).to(p.ids.device)
            out.append(_Group(idx, p.ids, p.mask, p.token_types, position_i, t, None, refs))
            continue
        if isinstance(baseline, torch.Tensor) and isinstance(enc, Rows):
            raise ValueError("baseline: token ids as a baseline need inputs of the same shape (a padded tensor "
                             "batch); for texts pass 'pad', 'unk', 'mask', 'zeros' or an int id")
        base = baseline_ids(baseline, p.ids, p.mask, tokenizer, model, keep_special, vocab)
        out.append(_Group(idx, p.ids, p.mask, p.token_types, position_i, t, base))
    return out


def _pad_id(tokenizer, model) -> int:
    """The id padding positions get (masked, so any in-vocabulary id; the pad token when there is one)."""
    for source in (tokenizer, getattr(model, "config", None)):
        v = getattr(source, "pad_token_id", None) if source is not None else None
        if isinstance(v, int) and v >= 0:
            return v
    return 0


@outside_inference_mode  # attributions are gradients (engine/runner.py)
def attribute_tokens(model, inputs, *, tokenizer=None, target=None, position=None, task: str = "auto",
                     method: str = "ig", baseline: Any = "pad", references: Any = None,
                     keep_special_tokens: bool = True, n_steps: int = 50, rule: str = "gausslegendre",
                     output: str = "logit", internal_batch_size: Optional[int] = None,
                     batch_size: int = 32, max_tokens: Optional[int] = None, max_padding: Any = "auto",
                     return_embeddings: bool = False,
                     return_convergence_delta: bool = True, return_details: bool = False,
                     deadline: Optional[float] = None, **method_kwargs) -> TokenAttribution:
    """Attribute a Hugging Face model's prediction to its input tokens.

    Args:
        model: a Hugging Face model (sequence classification, masked LM or causal LM),
            eval mode; anything with get_input_embeddings() and forward(input_ids=,
            attention_mask=[, token_type_ids=]) returning `.logits`.
        inputs: a str or list of str (with tokenizer=); token ids (L,) or (B, L) int64;
            a dict / BatchEncoding with input_ids (+ attention_mask, token_type_ids);
            or a list of 1-D id tensors / lists (ragged). Ragged inputs are bucketed by
            length (length_buckets(batch_size, max_tokens)) and padded per bucket only.
        tokenizer: a Hugging Face tokenizer: for strings, token strings, and the
            pad/unk/mask ids of the baseline.
        target: the explained class (sequence classification) or token id (LM): None
            (the argmax at the input), an int, a (B,) tensor / list, or a str (a label of
            config.label2id, or a token with tokenizer=).
        position: masked LM: the [MASK] position explained (None: the first mask token of
            each text); causal LM: the position whose next-token prediction is explained
            (None: the last real token); int or (B,). Not for sequence classification.
        task: "auto" (from the model's class), "sequence_classification", "masked_lm", "causal_lm".
        method: "ig", "idg", "left_ig" or "expected_gradients" (needs references=).
        baseline: "pad", "unk", "mask" (that token's embedding at every position),
            "zeros" (a zero embedding), an int token id, or ids (B, L) / (L,).
        references: reference texts (list of str) or ids (R, L'): a distribution baseline
            over them for "ig"/"idg" (docs/methods.md §7), the reference set for
            "expected_gradients"; each reference is cut / padded (pad id) to a text's
            length, its special tokens and padding pinned to the text's own (one text per run).
        keep_special_tokens: special tokens ([CLS], [SEP], BOS, EOS, [MASK]) keep their own
            id in the baseline (their attribution is then 0).
        n_steps, rule: the quadrature (as layer_integrated_gradients; rule is its `method`).
        output: "logit", "log_softmax" or "softmax" of the explained class.
        internal_batch_size: path points per model call (None: the engine's budget).
        batch_size, max_tokens: the length buckets for ragged inputs.
        max_padding: a bucket's padded tokens at most (1 + max_padding) times its texts' own
            (length_buckets); "auto": 0 on CPU (only texts of one length share a bucket:
            measured fastest, text/buckets.py), no limit elsewhere; None: no limit.
        return_embeddings: also the full (B, L, E) embedding attributions.
        return_convergence_delta: compute delta (two extra forwards per text).
        return_details: keep the engine's AttributionResult per bucket.
        deadline: with rtol, a `time.monotonic()` value after which no text is refined
            further (each keeps what it reached; `converged` says which did); unused
            without rtol (the service's per-request deadline, docs/methods.md §14).
        **method_kwargs: passed to the method's settings (e.g. IDG's schedule, Left-IG's
            r, n_references / seed for Expected Gradients; rtol, min_steps, max_steps:
            each text refined to that relative L2 error, docs/methods.md §14; the result's
            n_evaluations, error_estimate and converged say what each text took).
    Returns: TokenAttribution. Errors: ValueError / TypeError naming the argument, before
        any model call.
    """
    # -- every check before the first model call (docs/design.md: bad input)
    layer = input_embeddings(model)
    task = resolve_task(model, task)
    m = methods.get(method)
    if m.NAME not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))} for token attribution; got {method!r}")
    settings = _method_settings(m, n_steps, rule, method_kwargs)
    check_choice(output, "output", OUTPUTS)
    for flag, name in ((keep_special_tokens, "keep_special_tokens"), (return_embeddings, "return_embeddings"),
                       (return_convergence_delta, "return_convergence_delta"), (return_details, "return_details")):
        check_bool(flag, name)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(max_tokens, "max_tokens", allow_none=True)
    if not (isinstance(max_padding, str) and max_padding == "auto"):
        max_padding = check_padding(max_padding, "max_padding")
    if deadline is not None:
        deadline = resolve_deadline(deadline)  # TypeError / ValueError naming it
    if m.NAME == "expected_gradients" and references is None:
        raise ValueError("references: method='expected_gradients' needs reference texts or ids (references=...)")
    if references is not None:
        if m.NAME not in ("ig", "idg", "expected_gradients"):
            raise ValueError(f"references work with 'ig', 'idg' (a distribution baseline) and 'expected_gradients'; "
                             f"got method {method!r}")
        if isinstance(references, str) or not isinstance(references, (list, tuple, torch.Tensor)) or not len(references):
            raise TypeError("references must be a non-empty list of texts or token ids (R, L)")
    else:
        check_baseline_arg(baseline)
        if baseline == "pad" and tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError("baseline='pad': the tokenizer has no pad token; pass baseline='unk', 'zeros', an int "
                             "token id, or set tokenizer.pad_token")
    vocab = vocab_size(layer)
    pad_id = _pad_id(tokenizer, model)
    enc = encode(inputs, tokenizer, vocab)
    groups = _groups(enc, tokenizer, model, task, target, position, baseline, references, keep_special_tokens,
                     batch_size, max_tokens, max_padding, vocab, pad_id)
    fwd = TextForward(model, task)
    engine_settings = dict(output=output, internal_batch_size=internal_batch_size)
    want_delta = return_convergence_delta
    runs = []
    for g in groups:
        base = g.base_ids if g.base_ids is not None else g.ids
        # validates the method's settings, the engine settings and the target with the engine's own checks
        mm, cfg, engine, xs, _ = _check_layer_call(m.NAME, fwd, layer, g.ids, base, g.target, False, want_delta,
                                                   return_details, engine_settings, settings)
        if deadline is not None and cfg.get("rtol") is not None:  # rtol mode stops refining there (§14)
            cfg = dict(cfg, deadline=deadline)
        runs.append((g, cfg, engine))
    # -- the runs, one model batch (bucket) at a time
    B = sum(len(g.index) for g in groups)
    Lmax = max(g.ids.shape[1] for g in groups)
    dev = groups[0].ids.device
    res = _Collect(B, Lmax, dev, return_embeddings, want_delta)
    details = [] if return_details else None
    for g, cfg, engine in runs:
        args = (g.mask, g.token_types, g.position)
        runner = ModelRunner(fwd, None, engine.internal_batch_size, engine.probe_batch_size)
        h_x = activations(fwd, layer, g.ids, args, False, runner)
        if not h_x.is_floating_point():
            raise TypeError(f"model.get_input_embeddings() gives dtype {h_x.dtype}; attribution needs floating point")
        keep = pinned(g.ids, g.mask, tokenizer, model, keep_special_tokens).unsqueeze(-1)
        if g.refs is not None:
            h_r = activations(fwd, layer, g.refs, (g.mask.expand(g.refs.shape[0], -1), None if g.token_types is None
                              else g.token_types.expand(g.refs.shape[0], -1), None if g.position is None
                              else g.position.expand(g.refs.shape[0])), False, runner)
            h_r = torch.where(keep, h_x, h_r)  # the text's specials and padding are not on the path
            start = h_r if m.NAME == "expected_gradients" else distribution_baseline(h_r)
        elif g.base_ids is None:  # baseline="zeros": the zero embedding at every content position
            start = torch.where(keep, h_x, torch.zeros_like(h_x))
        else:
            start = activations(fwd, layer, g.base_ids, args, False, runner)
        out = run_on_activations(m, cfg, engine, h_x, start, g.target, (g.ids,) + args, want_delta, return_details)
        res.add(g, out)
        if details is not None:
            details.append(out)
    tokens = None
    if tokenizer is not None and callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        tokens = [tokenizer.convert_ids_to_tokens(res.ids[i][res.mask[i].bool()].tolist()) for i in range(B)]
    shown = dict(settings, batch_size=batch_size, max_tokens=max_tokens, max_padding=max_padding,
                 keep_special_tokens=keep_special_tokens,
                 baseline=baseline if isinstance(baseline, (str, int)) else "ids",
                 references=None if references is None else len(references))
    return TokenAttribution(
        scores=res.scores, norms=res.norms, input_ids=res.ids, attention_mask=res.mask, lengths=res.mask.sum(1),
        target=res.target, baseline_ids=None if (references is not None or baseline == "zeros") else res.base,
        position=None if task == "sequence_classification" else res.position, tokens=tokens,
        delta=res.delta if want_delta else None, embeddings=res.emb, task=task, method=m.NAME, output=output,
        settings=shown, details=details, buckets=[g.index for g in groups] if return_details else None,
        **res.tolerance())


class _Collect:
    """The buckets' results put back in the user's order, right-padded to the longest text."""

    def __init__(self, B: int, L: int, device, embeddings: bool, delta: bool):
        self.B, self.L, self.device = B, L, device
        self.ids = torch.zeros((B, L), dtype=torch.long, device=device)
        self.mask = torch.zeros_like(self.ids)
        self.base = self.ids.clone()
        self.position = torch.zeros(B, dtype=torch.long, device=device)
        self.target = torch.zeros(B, dtype=torch.long, device=device)
        self.scores = self.norms = self.emb = self.delta = None
        self.want_emb, self.want_delta = embeddings, delta
        self.stats = {}  # PER_TEXT_STATS each bucket's engine result reports, in the user's order
        self.missing = set()  # ... and those some bucket did not report (then left out)

    def add(self, g: _Group, out) -> None:
        attr = out.attributions if hasattr(out, "attributions") else out
        idx = torch.tensor(g.index, device=self.device)
        n, L, E = attr.shape
        if self.scores is None:
            self.scores = torch.zeros((self.B, self.L), dtype=attr.dtype, device=self.device)
            self.norms = torch.zeros_like(self.scores)
            if self.want_emb:
                self.emb = torch.zeros((self.B, self.L, E), dtype=attr.dtype, device=self.device)
            if self.want_delta:
                self.delta = torch.zeros(self.B, dtype=attr.dtype, device=self.device)
        attr = attr * g.mask.unsqueeze(-1).to(attr.dtype)  # padding: exactly 0 (its path is empty anyway)
        self.scores[idx, :L] = attr.sum(-1)
        self.norms[idx, :L] = attr.norm(dim=-1)
        if self.emb is not None:
            self.emb[idx, :L] = attr
        self.ids[idx, :L] = g.ids
        self.mask[idx, :L] = g.mask
        self.base[idx, :L] = g.base_ids if g.base_ids is not None else g.ids
        if g.position is not None:
            self.position[idx] = g.position
        self.target[idx] = out.target.to(self.device)
        if self.delta is not None and out.delta is not None:
            self.delta[idx] = out.delta.to(self.delta.dtype)
        extras = getattr(out, "extras", None) or {}
        for key in PER_TEXT_STATS:
            v = extras.get(key)
            if not isinstance(v, torch.Tensor) or v.shape != (n,):
                self.missing.add(key)
                continue
            if key not in self.stats:
                self.stats[key] = torch.zeros(self.B, dtype=v.dtype)
            self.stats[key][idx.cpu()] = v.detach().cpu()

    def tolerance(self) -> dict:
        """The per-text cost and error estimate every bucket reported (docs/methods.md §14)."""
        return {k: v for k, v in self.stats.items() if k not in self.missing}
