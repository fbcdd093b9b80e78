#!/usr/bin/env bash
# The checks a person with an NVIDIA GPU runs, from the project root, after the README's install
# (the CUDA build of torch): bash scripts/gpu_check.sh
#
#   1. the tests marked `cuda`, on the GPU (RECSYS_TEST_DEVICE=cuda)
#   2. with two GPUs or more: train.py under torchrun, 2 processes on NCCL, and a resume
#   3. python -m bench --device cuda on Gowalla, NGCF and LightGCN, in float32 and in bf16
#   4. NGCF on MovieLens-100K for a few epochs on the GPU and on the CPU: the test Recall@20 of both
#   5. the scale benchmark on the GPU: every shipped model on the synthetic competition-size data
#
# Data: ../shared/data (or RECSYS_SHARED_DATA) with ml-100k/ and gowalla/. Everything it writes goes
# to $OUT (default gpu_check/); the figures are in $OUT/summary.txt at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${RECSYS_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
OUT="${OUT:-gpu_check}"
EPOCHS="${EPOCHS:-10}"
mkdir -p "$OUT"
export WANDB_MODE=disabled
summary="$OUT/summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

python - <<'PY' | tee -a "$summary"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a machine with an NVIDIA GPU"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
PY

say "== 1. tests marked cuda, on the GPU"
RECSYS_TEST_DEVICE=cuda RECSYS_SHARED_DATA="$DATA" python -m pytest -m cuda -q -p no:cacheprovider 2>&1 | tail -3 | tee -a "$summary"

GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  say "== 2. torchrun, 2 processes on NCCL"
  torchrun --standalone --nproc_per_node=2 train.py -c config.json -d cuda --epochs 3 --run-id ddp \
    --set data_loader.args.data_dir="$DATA" --set trainer.save_dir="$OUT/saved" --set trainer.save_period=1 \
    > "$OUT/ddp.log" 2>&1 && say "torchrun: ok" || { say "torchrun: FAILED (see $OUT/ddp.log)"; exit 1; }
  rm "$OUT/saved/models/NGCF_ml-100k/ddp/checkpoint-epoch3.pth"
  torchrun --standalone --nproc_per_node=2 train.py -r "$OUT/saved/models/NGCF_ml-100k/ddp/checkpoint-epoch2.pth" \
    -d cuda --epochs 3 > "$OUT/ddp_resume.log" 2>&1 && say "torchrun resume: ok" || { say "torchrun resume: FAILED"; exit 1; }
  tail -n 3 "$OUT/saved/models/NGCF_ml-100k/ddp/metrics.jsonl" | tee -a "$summary"
else
  say "== 2. torchrun on NCCL: skipped, this machine has $GPUS GPU"
fi

say "== 3. python -m bench --device cuda on Gowalla"
for amp in off bf16; do
  python -m bench --dataset gowalla --device cuda --amp "$amp" --data-dir "$DATA" --out "$OUT/bench_gowalla_$amp.json" \
    2>&1 | tail -n 5 | tee -a "$summary"
done
python -m bench --dataset gowalla --device cuda --impl fused --models NGCF --data-dir "$DATA" \
  --out "$OUT/bench_gowalla_fused.json" 2>&1 | tail -n 4 | tee -a "$summary"

say "== 4. NGCF on MovieLens-100K, $EPOCHS epochs: test Recall@20 on the GPU and on the CPU"
for device in cuda cpu; do
  python train.py -c config.json -d "$device" --epochs "$EPOCHS" --run-id "short-$device" \
    --set data_loader.args.data_dir="$DATA" --set data_loader.args.cache=false --set trainer.save_dir="$OUT/saved" \
    > "$OUT/short_$device.log" 2>&1
  python test.py -r "$OUT/saved/models/NGCF_ml-100k/short-$device/model_best.pth" -d "$device" \
    > "$OUT/short_${device}_test.log" 2>&1
  say "$device: $(grep -E 'recall@20' "$OUT/short_${device}_test.log" | tail -n 1)"
done
python - "$OUT" <<'PY' | tee -a "$summary"
import json, sys
out = sys.argv[1]
gpu, cpu = (json.load(open(f"{out}/saved/models/NGCF_ml-100k/short-{d}/test_metrics.json"))["recall@20"] for d in ("cuda", "cpu"))
print(f"test Recall@20: cuda {gpu:.4f}, cpu {cpu:.4f}, difference {gpu - cpu:+.4f} "
      "(the runs draw different random numbers on the two devices: expect a difference of the order of "
      "the seed-to-seed spread, about 0.005 on this split)")
PY
say "== 5. every model at a competition's size on the GPU (data generated into $OUT/data)"
python -m bench --dataset synthetic-competition --device cuda --data-dir "$OUT/data" \
  --out "$OUT/bench_competition.json" 2>&1 | tail -n 15 | tee -a "$summary"
say "done: $summary"
