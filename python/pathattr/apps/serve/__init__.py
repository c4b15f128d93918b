"""`pathattr.apps.serve`: attributions over HTTP with dynamic batching (needs fastapi,
uvicorn and prometheus-client, installed with pathattr).

    from pathattr.apps.serve import ExplanationService, ModelSpec, build_app, ServerThread
    svc = ExplanationService(ModelSpec("digits", model, (1, 8, 8)), "idg", max_batch=32)
    with ServerThread(build_app(svc)) as srv: ...   # or pathattr.apps.serve.run(build_app(svc), port=8080)
"""
from .app import build_app
from .batcher import BatcherClosed, DynamicBatcher, QueueFull
from .runner import ServerThread, run
from .service import ExplanationService
from .spec import ModelSpec, load_spec

__all__ = ["ExplanationService", "ModelSpec", "load_spec", "build_app", "DynamicBatcher", "QueueFull",
           "BatcherClosed", "ServerThread", "run"]
