#!/usr/bin/env bash
# The one prepared GPU check, for a fresh machine with about 10 usable minutes:
#     bash bench/gpu_check.sh OUT_DIR
# 1. (first 4 minutes, compiles included) the GPU tests on AlexNet's shapes (compiled kernels, first
#    config of each list: TRITONALEX_AUTOTUNE=0, so each shape costs one compile), then
#    `tritonalex bench --net alexnet` (inference and a training step vs cuDNN/cuBLAS, bf16; the
#    step also replayed from a CUDA graph and compiled by torch.compile, both paths);
# 2. the static model's calibration: one profiled alexnet training step, measured time per layer
#    beside the model's estimate (`python -m tritonalex.perf.measure`, calibration.json);
# 3. the per-layer sweep, cut to fit: every layer, bf16, channels_last, forward+backward, then the
#    conv layers in NCHW; then the speedup plot;
# 4. if time is left, a short `tritonalex train` (triton backend) and `eval`.
# Writes gpu_check.log, pytest.xml, bench.csv, calibration.json, speedup.png, train/ under OUT_DIR.
# Each step has its own time limit and prints its time; the bench command appends to its CSV after
# every case, so a step cut short keeps what it measured.
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

# timed SECONDS TITLE COMMAND...: one step under its own time limit, with its time printed.
timed() {
  local limit=$1 title=$2 start=$SECONDS
  shift 2
  echo "== $title (limit ${limit}s)"
  timeout "$limit" "$@"
  echo "-- exit code $?, $((SECONDS - start)) s"
}

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

  # Most telling first: AlexNet's layer shapes, then the LRN/pool and FC suites.
  timed 120 "tests on the GPU (AlexNet shapes first)" env TRITONALEX_AUTOTUNE=0 \
      python -m pytest -q -p no:cacheprovider -rf -x --junitxml="$out/pytest.xml" \
      tests/test_conv.py::test_alexnet_layers \
      tests/test_conv.py::test_weight_gradient_split_reduction_in_one_launch \
      tests/test_graphed.py::test_replays_draw_new_dropout_masks \
      tests/test_lrn_pool.py tests/test_linear.py tests/test_library.py
  timed 130 "alexnet spec: inference and training step (eager, CUDA graph, torch.compile) vs torch backend (bf16)" \
      python -m tritonalex.cli bench --csv "$out/bench.csv" --net alexnet --dtype bf16
  timed 100 "static model calibration: measured vs estimated, per layer" \
      python -m tritonalex.perf.measure --spec alexnet --out "$out/calibration.json"
  timed 120 "every layer: bf16, channels_last, forward+backward, with torch.compile" \
      python -m tritonalex.cli bench --csv "$out/bench.csv" --layer all --dtype bf16 \
      --layout channels_last --direction both
  timed 50 "conv layers: NCHW bf16, forward+backward" \
      python -m tritonalex.cli bench --csv "$out/bench.csv" --layer conv --dtype bf16 \
      --layout nchw --direction both --no-compile
  python -m tritonalex.cli bench --csv "$out/bench.csv" --plot "$out/speedup.png" || true
  timed 45 "train alexnet-small, triton backend, bf16, 1 epoch" \
      python -m tritonalex.cli train --epochs 1 --precision bf16 --out "$out/train"
  timed 20 "10-crop eval" python -m tritonalex.cli eval --checkpoint "$out/train/last.pt"
} 2>&1 | tee "$out/gpu_check.log"
