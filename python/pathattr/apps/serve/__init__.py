"""`pathattr.apps.serve`: attributions over HTTP with dynamic batching (needs the
`serve` extra: pip install 'pathattr[serve]').

    from pathattr.apps.serve import ExplanationService, ModelSpec, build_app, ServerThread
    svc = ExplanationService(ModelSpec("digits", model, (1, 8, 8)), "idg", max_batch=32)
    with ServerThread(build_app(svc)) as srv: ...   # or pathattr.apps.serve.run(build_app(svc), port=8080)
    TextExplanationService(load_text_spec("my-hf-folder"), "ig")  # texts in, per-token scores out (serve/text.py)
"""
from ..extras import require

require("serve", "fastapi", "uvicorn", "prometheus_client")  # MissingExtra naming pathattr[serve]

from .app import build_app  # noqa: E402
from .batcher import BatcherClosed, DynamicBatcher, QueueFull  # noqa: E402
from .runner import ServerThread, run  # noqa: E402
from .service import ExplanationService  # noqa: E402
from .spec import ModelSpec, load_spec  # noqa: E402
from .text import TextExplanationService, TextModelSpec, load_text_spec  # noqa: E402

__all__ = ["ExplanationService", "ModelSpec", "load_spec", "build_app", "DynamicBatcher", "QueueFull",
           "BatcherClosed", "ServerThread", "run", "TextExplanationService", "TextModelSpec", "load_text_spec"]
