#!/usr/bin/env bash
# The one prepared GPU check: run on a CUDA machine as
#     bash bench/gpu_check.sh OUT_DIR
# 1. the test suite on the GPU (compiled kernels, not the interpreter; first config of each list,
#    TRITONALEX_AUTOTUNE=0, so every layer shape costs one compile),
# 2. the conv benchmark against cuDNN at batch 128 (autotuned),
# 3. the LRN / max-pool / fused LRN->max-pool benchmark against torch at batch 128,
# 4. the fused linear+ReLU+dropout benchmark against cuBLAS + torch at batch 128,
# 5. a training step and an inference pass of the alexnet spec, triton vs torch backend (bf16),
# writing gpu_check.log, pytest.xml, conv.csv, lrn_pool.csv, linear.csv and net.csv under OUT_DIR.
# Each step has its own time limit (120 + 110 + 45 + 35 + 45 s: under 6 minutes on one H100);
# the benchmarks rewrite their CSV after every case, so a step cut short keeps what it measured.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# Use the machine's torch and triton as they are (nothing can be downloaded there): put the
# package on the path through a shim that maps tritonalex.kernels to kernels/, as the install does.
shim=$(mktemp -d)
mkdir "$shim/tritonalex"
ln -s "$repo"/tritonalex/* "$shim/tritonalex/"
ln -s "$repo/kernels" "$shim/tritonalex/kernels"
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"

# step SECONDS TITLE SCRIPT ARGS...: one benchmark script under its own time limit.
step() {
  local limit=$1 title=$2
  shift 2
  echo "== $title"
  timeout "$limit" python "$@"
  echo "$1 exit code: $?"
}

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

  echo "== tests on the GPU"
  # Most telling first (each new shape costs a compile on the GPU, so 120 s may not cover all):
  # AlexNet's layer shapes, then the LRN/pool, FC and compiler suites, then everything else.
  TRITONALEX_AUTOTUNE=0 timeout 120 python -m pytest -q -p no:cacheprovider -rf \
      --junitxml="$out/pytest.xml" -k "not ahead_of_time and not benchmark_script" \
      tests/test_conv.py::test_alexnet_layers tests/test_lrn_pool.py tests/test_linear.py \
      tests/test_compiler.py tests
  echo "pytest exit code: $?"

  step 110 "conv benchmark (batch 128, bf16 and fp32, channels_last and NCHW)" \
      bench/bench_conv.py --out "$out/conv.csv"
  step 45 "LRN / max-pool / fused LRN->max-pool benchmark (batch 128, bf16 and fp32)" \
      bench/bench_lrn_pool.py --out "$out/lrn_pool.csv"
  step 35 "fused linear benchmark (fc6, fc7, fc8 at batch 128, bf16 and fp32, peak memory)" \
      bench/bench_linear.py --out "$out/linear.csv"
  step 45 "alexnet spec: training step and inference, triton vs torch backend (batch 128, bf16)" \
      bench/bench_net.py --out "$out/net.csv"
} 2>&1 | tee "$out/gpu_check.log"
