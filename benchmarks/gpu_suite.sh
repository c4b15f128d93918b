#!/usr/bin/env bash
# One call on a GPU machine: build, run the `cuda` tests, run the benchmarks, write
# JSON under $OUT (default ./gpu_out). The device image has torch/triton preinstalled
# and no network, hence --no-build-isolation --no-deps.
#
#   OUT=/tmp/out bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"

python -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -n 3
python - <<'EOF' | tee "$OUT/environment.txt"
import torch, platform
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton not installed")
EOF

# Kernel and engine tests natively on the GPU (the CPU suite runs them in the interpreter).
python -m pytest -q -m cuda tests/ -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt" | tail -n 5

# First ResNet-50 timings against Captum and the bare model cost (fp32 and bf16).
python -m benchmarks.gpu --out "$OUT/gpu-resnet50.json" | tail -n 30
echo "results in $OUT"
