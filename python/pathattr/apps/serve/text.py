"""Text requests: texts in, per-token scores out, on the same routes as images
(KServe v1 `POST /v1/models/{name}:explain`, TorchServe-style `/explanations/{name}`).

    {"instances": ["a text", {"text": "another"}],
     "parameters": {"target": null | 2 | "positive" | [per instance], "norms": false, "timeout_ms": 500,
                    "rtol": 0.01}}
    -> {"model_name", "method", "explanations": [{"target", "target_label", "tokens", "token_ids",
        "scores", "delta", "truncated", ("norms"), ("error_estimate", "converged", "n_evaluations")}]}

`parameters.rtol` (or the service's own --rtol) refines each text until its embedding map is
within that relative L2 error (docs/methods.md §14), within the request's deadline: when time
runs out the answer has what was reached, and each explanation says its estimate, whether it
converged and its gradient evaluations. Only requests with the same rtol are merged.

Requests that arrive within --max-wait-ms are merged (the image path's DynamicBatcher,
rows = texts) and the merged texts go to ONE `pathattr.text.attribute_tokens` call, which
groups them into length buckets (--max-batch texts, --max-tokens padded tokens): a short
text is never padded to a long one of another request. Each text is tokenised when its
request is decoded, so an empty text or a bad target is a 422 before the queue.
"""
from __future__ import annotations

import functools
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from .. import text_inputs as ti
from ...engine.checks import check_tolerance
from .batcher import DynamicBatcher, _refine_until
from .codec import BadRequest, parse_flag, parse_rtol, parse_timeout_ms
from .service import ServiceBase

log = logging.getLogger("pathattr.serve")
TEXT_PARAMETERS = ("target", "norms", "timeout_ms", "rtol")
# What an rtol explanation adds (TokenAttribution.text(i) carries them; docs/methods.md §14).
TOLERANCE_FIELDS = ("error_estimate", "converged", "n_evaluations")


@dataclass
class TextModelSpec:
    """A served text model: its route name, the model and tokenizer, the tokens kept per
    text, and its classes (config.num_labels / id2label / label2id when it has them)."""

    name: str
    text_model: ti.TextModel
    max_length: int
    task: str = "auto"  # "auto": from the model's class name (pathattr.text.tasks)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name or ":" in self.name:
            raise ValueError(f"name must be a non-empty string without '/' or ':', got {self.name!r}")
        self.task = ti.app_task(self.model, self.task)

    @property
    def model(self):
        return self.text_model.model

    @property
    def language_model(self) -> bool:
        """A masked or causal LM: targets are token ids, the explained position is the first
        mask token (masked LM) or the last token (causal LM: the next token's prediction)."""
        return self.task != "sequence_classification"

    @property
    def num_classes(self) -> Optional[int]:
        if self.language_model:  # the vocabulary
            n = getattr(self.model.get_input_embeddings(), "num_embeddings", None)
        else:
            n = getattr(getattr(self.model, "config", None), "num_labels", None)
        return n if isinstance(n, int) else None

    @property
    def device(self) -> torch.device:
        for t in self.model.parameters():
            return t.device
        return torch.device("cpu")


class TextBatcher(DynamicBatcher):
    """The DynamicBatcher over texts: a request's inputs are its texts' token id lists; one
    merged call attributes them all (`attribute(ids, target, deadline)` -> TokenAttribution).
    A request's `explainer` is the service's attribute function for its rtol (merged only
    with requests of the same one); in rtol mode refining stops before the earliest deadline."""

    @staticmethod
    def rows_of(inputs) -> int:
        return len(inputs)

    def _attribute(self, reqs):
        ids = [row for r in reqs for row in r.inputs]
        targets = [t for r in reqs for t in r.targets]
        attribute = reqs[0].explainer or self.explainer
        limit = _refine_until(reqs)  # used by rtol mode only
        start = time.perf_counter()
        # As the image path: rows without a target get the library's argmax; a merged batch
        # that mixes both makes one call per kind.
        out: List[Optional[Dict[str, Any]]] = [None] * len(ids)
        for group in ([i for i, t in enumerate(targets) if t is None], [i for i, t in enumerate(targets) if t is not None]):
            if not group:
                continue
            tg = None if targets[group[0]] is None else torch.tensor([targets[i] for i in group], dtype=torch.long)
            res = attribute([ids[i] for i in group], tg, deadline=limit)
            for j, i in enumerate(group):
                out[i] = res.text(j)
        self.record(len(ids), len(reqs), time.perf_counter() - start)
        results, at = [], 0
        for r in reqs:
            results.append(out[at:at + len(r.inputs)])
            at += len(r.inputs)
        return results


class TextExplanationService(ServiceBase):
    """Serve one text model with one method (the text counterpart of ExplanationService;
    the same app, routes, batching, deadlines, metrics and readiness).

    Args:
        spec: the TextModelSpec.
        method: "ig" (default), "idg" or "left_ig".
        max_batch / max_wait_ms / max_queue / timeout_ms / max_body_bytes / auto_warmup /
            torch_threads: as ExplanationService (rows are texts).
        max_tokens: padded tokens per length bucket (None: max_batch texts per bucket only).
        token_baseline: "pad", "unk", "mask" or "zeros"; output: "logit", "softmax", "log_softmax".
        attribute_kwargs: more of attribute_tokens' settings (n_steps, internal_batch_size,
            rtol, min_steps, max_steps, ...).
    """

    kind = "text"

    def __init__(self, spec: TextModelSpec, method: str = "ig", *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, timeout_ms: float = 30_000.0, max_body_bytes: int = 8 << 20,
                 auto_warmup: bool = True, torch_threads: Optional[int] = None, max_tokens: Optional[int] = None,
                 token_baseline: str = "pad", output: str = "logit",
                 attribute_kwargs: Optional[Dict[str, Any]] = None):
        from ...text import attribute_tokens
        if not isinstance(spec, TextModelSpec):
            raise TypeError(f"spec must be a TextModelSpec, got {type(spec).__name__}")
        if method not in ti.TEXT_METHODS:
            raise ValueError(f"method must be one of {', '.join(ti.TEXT_METHODS)} for a text model, got {method!r}")
        self._setup(max_batch, timeout_ms, max_body_bytes, auto_warmup, torch_threads)
        self.spec, self.method = spec, method
        kw = dict(attribute_kwargs or {})
        ti.check_settings(method, kw)
        check_tolerance(kw.get("rtol"), kw.get("min_steps"), kw.get("max_steps"))  # ValueError naming it
        self._settings = kw
        tok = spec.text_model.tokenizer

        def attribute(ids, target, rtol=None, deadline=None):
            settings = dict(kw, **({"rtol": rtol} if rtol is not None else {}))
            return attribute_tokens(spec.model, [torch.tensor(r, dtype=torch.long) for r in ids], tokenizer=tok,
                                    target=target, task=spec.task, method=method,
                                    baseline=token_baseline, output=output, batch_size=max_batch,
                                    max_tokens=max_tokens, return_convergence_delta=True, deadline=deadline,
                                    **settings)

        self._attribute = attribute
        self._by_rtol: Dict[float, Any] = {}
        self.batcher = TextBatcher(attribute, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                   metrics=self.metrics)

    def warmup(self) -> None:
        """One attribution of a one-word text on the worker thread, then ready."""
        t0 = time.perf_counter()
        try:
            mask = getattr(self.spec.text_model.tokenizer, "mask_token", None)
            text = f"warm {mask}" if self.spec.task == "masked_lm" and mask else "warm up"
            ids, _ = ti.encode(self.spec.text_model, [text], self.spec.max_length)
            self._attribute(ids, None)
        except Exception as err:  # keep serving /healthz and say why on /readyz and in the log
            self.warmup_error = "".join(traceback.format_exception_only(type(err), err)).strip()
            log.error("warm-up failed; the service stays unready (see /readyz): %s", self.warmup_error, exc_info=err)
            return
        self._mark_ready()
        log.info("ready: text model %r, method %s, %.2f s of warm-up", self.spec.name, self.method,
                 time.perf_counter() - t0)

    def explainer_for(self, rtol: Optional[float]):
        """The attribute function for a request's rtol (None: the service's own), one per
        value (so the batcher merges requests of equal rtol only); 422 for bounds it breaks."""
        if rtol is None:
            return None
        fn = self._by_rtol.get(rtol)
        if fn is None:
            try:
                check_tolerance(rtol, self._settings.get("min_steps"), self._settings.get("max_steps"))
            except (TypeError, ValueError) as err:
                raise BadRequest(422, f"parameters.rtol: {err}") from None
            fn = functools.partial(self._attribute, rtol=rtol)
            if len(self._by_rtol) < 16:  # a few distinct values are usual; do not grow without bound
                self._by_rtol[rtol] = fn
        return fn

    # -- the request's side (app.py calls these for a text service) ---------------------
    def decode(self, payload: Dict[str, Any]):
        """The body -> (token ids per text, which were cut, targets, options); BadRequest (4xx)
        for anything wrong, before the request is queued."""
        params = payload.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest(422, "'parameters' must be an object")
        unknown = sorted(set(params) - set(TEXT_PARAMETERS))
        if unknown:
            raise BadRequest(422, f"unknown parameters {unknown} for a text model; known: {list(TEXT_PARAMETERS)}")
        norms = parse_flag(params, "norms")
        to = parse_timeout_ms(params)
        attribute = self.explainer_for(parse_rtol(params))
        texts = decode_texts(payload["instances"], self.max_batch)
        try:
            ids, cut = ti.encode(self.spec.text_model, texts, self.spec.max_length, lambda i: f"instances[{i}]")
        except Exception as err:  # JobError naming the instance
            raise BadRequest(422, str(err)) from None
        if self.spec.task == "masked_lm":  # the explained prediction is at the first mask token
            tok = self.spec.text_model.tokenizer
            for i, row in enumerate(ids):
                if tok.mask_token_id not in row:
                    raise BadRequest(422, f"instances[{i}] has no {tok.mask_token} token: this masked LM explains "
                                          f"its prediction at the first one")
        targets = self.parse_targets(params.get("target"), len(texts))
        return ids, cut, targets, {"norms": norms, "timeout_ms": to, "explainer": attribute}

    def parse_targets(self, target: Any, n: int) -> List[Optional[int]]:
        """null (argmax), a class index or label name for all, or one per text; for a
        language model a token id or a token (string) of the vocabulary."""
        items = [target] * n if not isinstance(target, list) else target
        if len(items) != n:
            raise BadRequest(422, f"parameters.target has {len(items)} entries for {n} instances")
        lm = self.spec.language_model
        label2id, k = self.spec.text_model.label2id or {}, self.spec.num_classes
        what = "a token or a token id" if lm else "a label name or a class index"
        out: List[Optional[int]] = []
        for t in items:
            if isinstance(t, str):
                t = self._token_id(t) if lm else label2id.get(t)
                if t is None:
                    known = "a token of the model's vocabulary" if lm else f"one of the model's labels {sorted(label2id)}"
                    raise BadRequest(422, f"parameters.target {items[len(out)]!r} is not {known}")
                t = int(t)
            if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0 or (k is not None and t >= k)):
                raise BadRequest(422, f"parameters.target entries must be null, {what} in [0, {k}), got {t!r}")
            out.append(t)
        return out

    def _token_id(self, token: str) -> Optional[int]:
        """A token's id, or None when the tokenizer does not know it (no unk fallback)."""
        tok = self.spec.text_model.tokenizer
        i = tok.convert_tokens_to_ids(token)
        return None if i is None or (i == tok.unk_token_id and token != tok.unk_token) else int(i)

    def encode(self, results: List[Dict[str, Any]], cut: List[bool], opts: Dict[str, Any]) -> List[Dict[str, Any]]:
        id2label = self.spec.text_model.id2label or {}
        tok = self.spec.text_model.tokenizer
        out = []
        for r, c in zip(results, cut):
            ids = [int(i) for i in _list(r["ids"])]
            item = {"target": r["target"], "tokens": [str(t) for t in (r["tokens"] or tok.convert_ids_to_tokens(ids))],
                    "token_ids": ids, "scores": [float(v) for v in _list(r["scores"])], "delta": r["delta"],
                    "truncated": bool(c)}
            if self.spec.language_model:  # the explained token and where its prediction is read
                item["target_token"] = str(tok.convert_ids_to_tokens(int(r["target"])))
                item["position"] = r["position"]
            elif r["target"] in id2label:
                item["target_label"] = str(id2label[r["target"]])
            if opts["norms"]:
                item["norms"] = [float(v) for v in _list(r["norms"])]
            if r.get("converged") is not None:  # rtol mode: how far this text got
                item.update({k: r[k] for k in TOLERANCE_FIELDS})
            out.append(item)
        return out

    def status(self) -> Dict[str, Any]:
        return {"name": self.spec.name, "ready": self.ready, "method": self.method, "kind": "text", "task": self.spec.task,
                "num_classes": self.spec.num_classes, "labels": self.spec.text_model.id2label,
                "max_length": self.spec.max_length, "max_batch": self.max_batch}


def decode_texts(instances: Any, max_batch: int) -> List[str]:
    """`instances`: a non-empty list of strings or {"text": str} objects (413 beyond max_batch)."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest(422, "'instances' must be a non-empty list of texts")
    if len(instances) > max_batch:
        raise BadRequest(413, f"{len(instances)} instances exceed this server's max batch of {max_batch}")
    texts = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            if set(inst) != {"text"}:
                raise BadRequest(422, f"instances[{i}]: a text instance is a string or {{'text': str}}; got keys "
                                      f"{sorted(inst)}")
            inst = inst["text"]
        if not isinstance(inst, str):
            raise BadRequest(422, f"instances[{i}] must be a text (a string or {{'text': str}}), got {type(inst).__name__}")
        if not inst.strip():
            raise BadRequest(422, f"instances[{i}] is an empty text")
        texts.append(inst)
    return texts


def load_text_spec(model: str, tokenizer: Optional[str] = None, name: Optional[str] = None, device: str = "auto",
                   checkpoint: Optional[str] = None, dtype: str = "fp32", max_length: Optional[int] = None,
                   task: str = "auto") -> TextModelSpec:
    """The TextModelSpec for `pathattr serve --model FOLDER|module:factory [--tokenizer T]`."""
    from ..loading import resolve_device

    if dtype not in ("fp32", "fp64"):
        raise ValueError(f"--dtype {dtype} is not available for a text model; fp32 or fp64")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"--max-length must be an int >= 1, got {max_length!r}")
    tm = ti.load_text_model(model, tokenizer, checkpoint, task)
    tm.model = (tm.model.double() if dtype == "fp64" else tm.model.float()).to(resolve_device(device))
    return TextModelSpec(name or tm.name, tm, ti.max_length(tm, max_length), task)


def _list(v) -> list:
    return v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v)
