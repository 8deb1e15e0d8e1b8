#!/usr/bin/env bash
# The one prepared GPU check, for a fresh machine with about 10 usable minutes:
#     bash bench/gpu_check.sh OUT_DIR
# 0. (2 to 4 minutes) bench/gpu_diagnose.py at batch 128, every launch synchronized and named:
#    a whole training step, then conv1's weight gradient with every config (it faulted on the
#    first run, 2026-11-28) and the fused LRN -> max-pool backward's walk on lrn1 and lrn2 (new
#    since); where one faulted, under compute-sanitizer's memcheck at batch 8 (it names the
#    access);
# 1. the GPU tests on AlexNet's shapes (compiled, first config of each list:
#    TRITONALEX_AUTOTUNE=0, so each shape costs one compile), then `tritonalex bench --net
#    alexnet` (inference and a training step vs cuDNN/cuBLAS, bf16; the step also replayed from a
#    CUDA graph and compiled by torch.compile, both paths), first configs too: the first run's
#    autotuning of a whole training step outlasted its 130 s;
# 2. the static model's calibration (first configs): one profiled alexnet training step, measured
#    time per layer beside the model's estimate (`python -m tritonalex.perf.measure`);
# 3. the per-layer sweep, cut to fit: every layer, bf16, channels_last, forward+backward, eager
#    and replayed from CUDA graphs (GPU time alone; torch.compile skipped for time), then the
#    conv layers in NCHW; then the speedup plot;
# 4. a short `tritonalex train` (triton backend) and `eval`;
# 5. the whole test suite, compiled, in what is left. Every step's limit is cut to what is left
#    of BUDGET seconds (default 560); a step with nothing left is skipped.
# Writes gpu_check.log, diagnose.log, pytest.xml, bench.csv, calibration.json, speedup.png,
# train_metrics.jsonl and pytest_all.xml under OUT_DIR (eight files: the device tool brings back
# at most eight; the checkpoints stay in a temporary folder). The bench command appends to its
# CSV after every case, so a step cut short keeps what it measured.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export BUDGET=${BUDGET:-560}
train=$(mktemp -d)
source "$(dirname "$0")/gpu_env.sh"

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo none)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

  {
    # The whole step first (with this commit's paths: does a training step run?), then each
    # case alone.
    timed 45 "diagnose step (batch 128)" python "$repo/bench/gpu_diagnose.py" step
    for case in conv1-weight-grad lrn-backward; do
      timed 30 "diagnose $case (batch 128)" python "$repo/bench/gpu_diagnose.py" "$case"
    done
  } 2>&1 | tee "$out/diagnose.log"
  for case in conv1-weight-grad lrn-backward; do
    if grep -q "^FAULT.*\|illegal memory" <(sed -n "/diagnose $case/,/^== /p" "$out/diagnose.log"); then
      timed 60 "memcheck $case (batch 8)" compute-sanitizer --tool memcheck \
          --print-limit 3 python "$repo/bench/gpu_diagnose.py" "$case" --batch 8
    fi
  done

  # Most telling first: AlexNet's layer shapes, then the LRN/pool and FC suites.
  timed 120 "tests on the GPU (AlexNet shapes first)" env TRITONALEX_AUTOTUNE=0 \
      python -m pytest -q -p no:cacheprovider -rf --junitxml="$out/pytest.xml" \
      "$repo/tests/test_conv.py::test_alexnet_layers" \
      "$repo/tests/test_conv.py::test_weight_gradient_split_reduction_in_one_launch" \
      "$repo/tests/test_graphed.py::test_replays_draw_new_dropout_masks" \
      "$repo/tests/test_lrn_pool.py" "$repo/tests/test_linear.py" "$repo/tests/test_library.py"
  timed 130 "alexnet spec: inference and training step (eager, CUDA graph, torch.compile) vs torch backend (bf16)" \
      env TRITONALEX_AUTOTUNE=0 python -m tritonalex.cli bench --csv "$out/bench.csv" --net alexnet --dtype bf16
  timed 100 "static model calibration: measured vs estimated, per layer" \
      env TRITONALEX_AUTOTUNE=0 python -m tritonalex.perf.measure --spec alexnet --out "$out/calibration.json"
  timed 120 "every layer: bf16, channels_last, forward+backward, eager and CUDA-graph replays" \
      python -m tritonalex.cli bench --csv "$out/bench.csv" --layer all --dtype bf16 \
      --layout channels_last --direction both --cuda-graph --no-compile
  timed 40 "conv layers: NCHW bf16, forward+backward" \
      python -m tritonalex.cli bench --csv "$out/bench.csv" --layer conv --dtype bf16 \
      --layout nchw --direction both --no-compile
  python -m tritonalex.cli bench --csv "$out/bench.csv" --plot "$out/speedup.png" || true
  timed 40 "train alexnet-small, triton backend, bf16, 1 epoch" \
      python -m tritonalex.cli train --epochs 1 --precision bf16 --out "$train/run"
  cp "$train/run/metrics.jsonl" "$out/train_metrics.jsonl" 2>/dev/null
  timed 20 "10-crop eval" python -m tritonalex.cli eval --checkpoint "$train/run/last.pt"
  timed 600 "the whole test suite, compiled" env TRITONALEX_AUTOTUNE=0 \
      python -m pytest -q -p no:cacheprovider -rf --junitxml="$out/pytest_all.xml" "$repo/tests"
} 2>&1 | tee "$out/gpu_check.log"
