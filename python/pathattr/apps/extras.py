"""Optional extras: what each app needs beyond `import pathattr`, and the message that names
the extra to install when a piece is missing.

    pathattr[job]    `pathattr attribute`, `report`, `lpi-bank`, `demo`: zarr 3 (Python 3.11+),
                     tqdm, pillow, matplotlib
    pathattr[serve]  `pathattr serve`: fastapi, uvicorn, prometheus-client (pillow and
                     matplotlib for heatmaps)
    pathattr[text]   text data in `pathattr attribute`, text models in `pathattr serve`:
                     transformers, tokenizers
"""
from __future__ import annotations

import importlib.util

# The import name of each distribution, as pyproject.toml's extras list them.
EXTRAS = {
    "job": {"zarr": "zarr>=3", "tqdm": "tqdm", "PIL": "pillow", "matplotlib": "matplotlib"},
    "serve": {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client",
              "PIL": "pillow", "matplotlib": "matplotlib"},
    "text": {"transformers": "transformers", "tokenizers": "tokenizers"},
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(extra: str, *modules: str) -> None:
    """Raise MissingExtra unless every module (default: all of `extra`'s) can be imported."""
    wanted = EXTRAS[extra]
    missing = [wanted[m] for m in (modules or wanted) if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"this needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                           f"installed: pip install 'pathattr[{extra}]'")
