# The two README commands: `make demo` and `make test`. Both create .venv on first use.
# Python 3.11+ (the job's zarr 3 needs it).
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch on this project's machines; override for other set-ups,
# e.g. `make test TORCH_SPEC=torch` (the GPU image builds with
# `pip install --no-build-isolation --no-deps -e .`, see benchmarks/gpu_suite.sh).
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pathattr-installed

.PHONY: install demo test wheel-check bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.hpp)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)" -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the bundled default: attribute the held-out digits into a resumable
# Zarr store, then the HTML report (`pathattr demo` still draws the IG/IDG pictures).
demo: $(STAMP)
	$(VENV)/bin/pathattr attribute --method idg --steps 50 --out demo_out/run
	$(VENV)/bin/pathattr report demo_out/run
	$(VENV)/bin/pathattr demo --out demo_out/pictures --quiet

test: $(STAMP)
	$(PY) -m pytest -q

# The built wheel in a fresh venv, run from outside the checkout (CI runs it first).
wheel-check:
	TORCH_SPEC='$(TORCH_SPEC)' PYTHON='$(PYTHON)' bash .ci/wheel_check

bench: $(STAMP)
	$(PY) -m benchmarks.cpu

clean:
	rm -rf build *.egg-info demo_out .pytest_cache
