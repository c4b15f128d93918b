"""The HTTP face of an ExplanationService (FastAPI on uvicorn).

Routes: POST /v1/models/{name}:explain (KServe v1), POST /explanations/{name}
(TorchServe style), GET /v1/models/{name}, /healthz, /readyz, /metrics, /openapi.json.
The handlers parse the body themselves (not through pydantic) so that each kind of bad
input gets its own 4xx with a JSON body {"error": ...}; the schema in /openapi.json is
written out by hand to match.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...engine.deadline import DeadlineExceeded
from .batcher import BatcherClosed, QueueFull
from .codec import BadRequest, decode_instances, encode_array, heatmap_png, parse_options, parse_rtol, parse_targets
from .metrics import CONTENT_TYPE_LATEST

log = logging.getLogger("pathattr.serve")

_ARRAY = {"type": "object", "required": ["b64", "shape"], "properties": {
    "b64": {"type": "string", "description": "little-endian raw bytes, base64"},
    "dtype": {"type": "string", "enum": ["float16", "float32", "float64"], "default": "float32"},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
_NESTED = {"type": "array", "description": "nested lists of numbers with the model's input shape", "items": {}}
# A text model's instances (serve/text.py): a string, or {"text": str}.
_TEXT = {"anyOf": [{"type": "string", "minLength": 1},
                   {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}]}
REQUEST_SCHEMA = {
    "type": "object", "required": ["instances"],
    "properties": {
        "instances": {"type": "array", "minItems": 1, "items": {"anyOf": [_NESTED, _ARRAY, _TEXT]}},
        "parameters": {"type": "object", "properties": {
            "target": {"description": "null (argmax), an int for all, or one int/null per instance",
                       "anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": ["integer", "null"]}},
                                 {"type": "null"}]},
            "encoding": {"type": "string", "enum": ["list", "base64"], "default": "list"},
            "dtype": {"type": "string", "enum": ["float32", "float16"], "default": "float32"},
            "heatmap": {"type": "boolean", "default": False, "description": "add a base64 PNG of |attributions|"},
            "timeout_ms": {"type": "number", "exclusiveMinimum": 0},
            "rtol": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                     "description": "refine each explanation to this relative error within the deadline "
                                    "(ig, idg, left_ig); the answer adds error_estimate, converged, n_evaluations"},
            "norms": {"type": "boolean", "default": False, "description": "text: also the L2 norm per token"}}}}}
RESPONSE_SCHEMA = {
    "type": "object", "properties": {
        "model_name": {"type": "string"}, "method": {"type": "string"},
        "explanations": {"type": "array", "items": {"type": "object", "properties": {
            "target": {"type": "integer"},
            "attributions": {"anyOf": [_NESTED, _ARRAY]},
            "heatmap_png": {"type": "string"},
            "tokens": {"type": "array", "items": {"type": "string"}, "description": "text models"},
            "token_ids": {"type": "array", "items": {"type": "integer"}},
            "scores": {"type": "array", "items": {"type": "number"}, "description": "per token: the sum over the "
                                                                                     "embedding's attributions"},
            "target_label": {"type": "string"}, "delta": {"type": "number"},
            "truncated": {"type": "boolean"}}}}}}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}}
_ERRORS = {str(c): {"description": d, "content": {"application/json": {"schema": ERROR_SCHEMA}}} for c, d in (
    (400, "malformed JSON"), (404, "unknown model"), (413, "payload or batch too large"),
    (422, "wrong shape, dtype, NaN, bad parameters, or inputs on which the model overflows"), (503, "not ready, shutting down or queue full"),
    (504, "deadline exceeded"))}
_EXPLAIN_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}},
                "responses": {"200": {"description": "attributions, one per instance",
                                      "content": {"application/json": {"schema": RESPONSE_SCHEMA}}}, **_ERRORS}}


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) a declared or actual size above `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"payload of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"payload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(service) -> FastAPI:
    """A FastAPI app serving `service` (an ExplanationService). Its lifespan starts the
    batcher and (if service.auto_warmup) the warm-up, and on shutdown, after uvicorn has
    finished the in-flight requests, drains the batcher."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, service.close)

    app = FastAPI(title="pathattr serve", version=_version(), lifespan=lifespan,
                  description=f"Path attributions ({service.method}) of model '{service.spec.name}'.")
    metrics = service.metrics
    app.state.service = service

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):  # unknown routes, wrong methods: JSON like the rest
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return _error(422, str(exc))

    async def explain(name: str, request: Request, route: str) -> Response:
        start = time.perf_counter()
        try:
            resp = await _explain(name, request)
        except BadRequest as err:
            resp = _error(err.status, err.message)
        except DeadlineExceeded as err:
            resp = _error(504, str(err))
        except QueueFull as err:
            resp = _error(503, str(err), headers={"Retry-After": "1"})
        except BatcherClosed as err:
            resp = _error(503, str(err))
        except FloatingPointError as err:  # finite inputs the model overflows on: the library names them
            resp = _error(422, f"the model gave non-finite values for these instances: {err}")
        except ValueError as err:  # the library's own argument checks
            resp = _error(422, str(err))
        except Exception as err:  # the model itself failed: still JSON, still counted; the worker lives on
            log.exception("explain failed")
            resp = _error(500, f"internal error: {type(err).__name__}: {err}")
        metrics.requests.labels(route, str(resp.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return resp

    async def _explain(name: str, request: Request) -> Response:
        if name != service.spec.name:
            raise BadRequest(404, f"unknown model {name!r}; this server serves {service.spec.name!r}")
        body = await _read_body(request, service.max_body_bytes)
        if not service.ready:
            raise BadRequest(503, "the model is still warming up; see /readyz")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(400, f"malformed JSON: {err}") from None
        except RecursionError:  # the decoder recurses once per nesting level
            raise BadRequest(400, "malformed JSON: nested too deeply for the decoder") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise BadRequest(422, "the body must be a JSON object with 'instances'")
        if getattr(service, "kind", "image") == "text":
            return await _explain_texts(payload)
        enc, dt, want_png, timeout_ms, target = parse_options(payload.get("parameters"))
        rtol = parse_rtol(payload.get("parameters"))
        ex = service.explainer_for(rtol)  # 422 where the method has no rtol
        spec = service.spec
        x = decode_instances(payload["instances"], spec.input_shape, spec.dtype, service.max_batch)
        targets = parse_targets(target, x.shape[0], spec.num_classes)
        timeout = (timeout_ms if timeout_ms is not None else service.timeout_ms) / 1e3
        fut = service.batcher.submit(x, targets, deadline=time.monotonic() + timeout, explainer=ex)
        try:
            attr, tout, *rest = await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except asyncio.TimeoutError:
            fut.cancel()
            metrics.deadline_exceeded.inc()
            raise DeadlineExceeded(f"deadline exceeded: no result within {timeout * 1e3:.3g} ms") from None
        out = []
        stats = rest[0] if rest else {}
        for i, (a, t) in enumerate(zip(attr, tout.tolist())):
            item = {"target": int(t), "attributions": encode_array(a, enc, dt)}
            for key, v in stats.items():  # rtol: how far this explanation got
                item[key] = v[i].item()
            if want_png:
                item["heatmap_png"] = heatmap_png(a)
            out.append(item)
        return JSONResponse({"model_name": spec.name, "method": service.method, "explanations": out})

    async def _explain_texts(payload) -> Response:
        """A text model's request (serve/text.py): texts in, per-token scores out."""
        ids, cut, targets, opts = service.decode(payload)
        timeout = (opts["timeout_ms"] if opts["timeout_ms"] is not None else service.timeout_ms) / 1e3
        fut = service.batcher.submit(ids, targets, deadline=time.monotonic() + timeout, explainer=opts["explainer"])
        try:
            results = await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except asyncio.TimeoutError:
            fut.cancel()
            metrics.deadline_exceeded.inc()
            raise DeadlineExceeded(f"deadline exceeded: no result within {timeout * 1e3:.3g} ms") from None
        return JSONResponse({"model_name": service.spec.name, "method": service.method,
                             "explanations": service.encode(results, cut, opts)})

    @app.post("/v1/models/{name}:explain", openapi_extra=_EXPLAIN_DOC, summary="Explain (KServe v1)")
    async def kserve_explain(name: str, request: Request):
        return await explain(name, request, "kserve")

    @app.post("/explanations/{name}", openapi_extra=_EXPLAIN_DOC, summary="Explain (TorchServe style)")
    async def torchserve_explain(name: str, request: Request):
        return await explain(name, request, "torchserve")

    @app.get("/v1/models/{name}", summary="Model readiness (KServe v1)")
    async def model_status(name: str):
        if name != service.spec.name:
            return _error(404, f"unknown model {name!r}; this server serves {service.spec.name!r}")
        if getattr(service, "kind", "image") == "text":
            return service.status()
        return {"name": name, "ready": service.ready, "method": service.method,
                "input_shape": list(service.spec.input_shape), "dtype": str(service.spec.dtype).replace("torch.", ""),
                "num_classes": service.spec.num_classes, "max_batch": service.max_batch}

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: 200 only after warm-up")
    async def readyz():
        if service.ready:
            return {"ready": True}
        body = {"ready": False}
        if service.warmup_error is not None:
            body["error"] = service.warmup_error
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _version() -> str:
    from ... import __version__

    return __version__
