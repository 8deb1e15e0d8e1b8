#!/usr/bin/env bash
# The one prepared GPU check: run on a CUDA machine as
#     bash bench/gpu_check.sh OUT_DIR
# 1. the test suite on the GPU (compiled kernels, not the interpreter; first config of each list,
#    TRITONALEX_AUTOTUNE=0, so every layer shape costs one compile),
# 2. `tritonalex bench --layer all` (bf16, channels_last, forward / backward / forward+backward,
#    tritonalex vs torch eager vs torch.compile, batch 128),
# 3. the conv layers in NCHW (bf16), and in fp32 (IEEE) and tf32, training step, no torch.compile,
# 4. `tritonalex bench --net` (alexnet: inference and a training step, bf16), and the plot,
# 5. `tritonalex train` on the built-in data with the triton backend (2 epochs, bf16) and `eval`,
# writing gpu_check.log, pytest.xml, bench.csv (every measured row), speedup.png and train/
# (checkpoints, metrics.jsonl, curves.png) under OUT_DIR.
# Each step has its own time limit (120 + 160 + 60 + 70 + 80 + 60 s: under 9.5 minutes on one H100);
# the bench command appends to its CSV after every case, so a step cut short keeps what it measured.
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

# step SECONDS TITLE BENCH-ARGS...: one `tritonalex bench` run under its own time limit.
step() {
  local limit=$1 title=$2
  shift 2
  echo "== $title"
  timeout "$limit" python -m tritonalex.cli bench --csv "$out/bench.csv" "$@"
  echo "bench exit code: $?"
}

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

  echo "== tests on the GPU"
  # Most telling first (each new shape costs a compile on the GPU, so 120 s may not cover all):
  # AlexNet's layer shapes, then the LRN/pool, FC and compiler suites, then everything else.
  TRITONALEX_AUTOTUNE=0 timeout 120 python -m pytest -q -p no:cacheprovider -rf \
      --junitxml="$out/pytest.xml" -k "not ahead_of_time" \
      tests/test_conv.py::test_alexnet_layers tests/test_lrn_pool.py tests/test_linear.py \
      tests/test_compiler.py tests
  echo "pytest exit code: $?"

  step 160 "every layer: bf16, channels_last, three directions, with torch.compile" \
      --layer all --dtype bf16 --layout channels_last --direction all
  step 60 "conv layers: NCHW bf16, training step" \
      --layer conv --dtype bf16 --layout nchw --direction both --no-compile
  step 70 "conv layers: fp32 (IEEE) and tf32, both layouts, training step" \
      --layer conv --dtype fp32 tf32 --direction both --no-compile
  step 80 "alexnet spec: inference and training step, triton vs torch backend vs torch.compile (bf16)" \
      --net alexnet --dtype bf16
  python -m tritonalex.cli bench --csv "$out/bench.csv" --plot "$out/speedup.png" || true

  echo "== train alexnet-small on the built-in data, triton backend, bf16, 2 epochs; 10-crop eval"
  timeout 60 python -m tritonalex.cli train --epochs 2 --precision bf16 --out "$out/train"
  echo "train exit code: $?"
  timeout 20 python -m tritonalex.cli eval --checkpoint "$out/train/last.pt"
  echo "eval exit code: $?"
} 2>&1 | tee "$out/gpu_check.log"
