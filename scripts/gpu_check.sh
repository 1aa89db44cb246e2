#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (not CI): CUDA tests, energy-kernel and training
# benchmarks on the GPU, the refill with and without CUDA graphs, and a short DW-4 training run at the
# paper preset, stopped with SIGTERM (which saves a checkpoint) and brought back for evaluation on a CPU machine.
#
#   OUT=gpu_out bash scripts/gpu_check.sh            # on the GPU machine, from the repo root
#   DEVICE=cpu SECONDS_PER_PART=20 bash scripts/gpu_check.sh   # dry run of the script itself
#
# Optional packages missing on the GPU image (ase, mdtraj) travel as wheels in .whl/.
set -u
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
T=${SECONDS_PER_PART:-0}  # 0: the budgets below
budget() { if [ "$T" -gt 0 ]; then echo "$T"; else echo "$1"; fi; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, e3nn, numba; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'numba', numba.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  nproc; } 2>&1 | tee "$OUT/machine.txt"

echo "== CUDA tests"; t0=$(date +%s)
timeout "$(budget 150)" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_graphs.py tests/test_dem.py tests/test_nn.py \
  tests/test_sampler.py 2>&1 | tee "$OUT/tests.log" | tail -n 12
echo "tests: $(( $(date +%s) - t0 )) s"

echo "== energy+forces throughput"; t0=$(date +%s)
timeout "$(budget 80)" python3 benchmarks/bench_kernels.py --device "$DEVICE" --gmm --compile 2>"$OUT/kernels.err" \
  | tee "$OUT/kernels.md" | tail -n 12
echo "kernels: $(( $(date +%s) - t0 )) s"

echo "== training benchmark (paper batch and K)"; t0=$(date +%s)
timeout "$(budget 130)" python3 benchmarks/bench_training.py --device "$DEVICE" --systems dw4 lj13 lj55 --repeats 5 \
  --sde-samples 1000 2>&1 | tee "$OUT/training.md" | tail -n 8
echo "training benchmark: $(( $(date +%s) - t0 )) s"

echo "== reverse-SDE refill: eager vs CUDA graphs (IDEMConfig.cuda_graphs)"; t0=$(date +%s)
timeout "$(budget 90)" python3 benchmarks/refill_graphs.py --device "$DEVICE" --systems dw4 lj13 lj55 --samples 1000 \
  --steps 50 --repeats 3 2>&1 | tee "$OUT/refill_graphs.md" | tail -n 6
echo "refill graphs: $(( $(date +%s) - t0 )) s"

echo "== DW-4, paper preset, stopped by SIGTERM"; t0=$(date +%s)
rm -rf /tmp/gpu_dw4
timeout -s TERM "$(budget 100)" python3 -m idem_md train --system dw4 --out /tmp/gpu_dw4 --device "$DEVICE" --quiet \
  > "$OUT/dw4_train.log" 2>&1
echo "train exit $? after $(( $(date +%s) - t0 )) s"; tail -n 3 "$OUT/dw4_train.log"
cp /tmp/gpu_dw4/checkpoint.pt "$OUT/dw4_checkpoint.pt" 2>/dev/null && cp /tmp/gpu_dw4/metrics.jsonl "$OUT/dw4_metrics.jsonl"
ls -la "$OUT"
