#!/usr/bin/env bash
# The blend of docs/results.md, from the project root: EASE + LightGCN + SASRec on the default
# ML-100K split. Each is validated, its top 100 of validation and test saved, refitted on
# everything for its best epoch and its export's top 100 saved; the weights are tuned on validation,
# the test figures printed beside each member's, and the blended submission written and checked.
#     bash scripts/blend_ml100k.sh [OUT]        (OUT: saved/blend-<time>/ by default; data: ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled
DATA="${RECSYS_SHARED_DATA:-../shared/data}"
D="--set data_loader.args.data_dir=$DATA --set trainer.threads=1"
SPLIT="--set evaluation.split=random --set evaluation.test=0.2 --set evaluation.valid=0.1"
STAMP="$(date +%m%d_%H%M%S)"
O="${1:-saved/blend-$STAMP}"
mkdir -p "$O"
python - "$DATA" "$O" <<'PY'
import sys, pandas as pd
ratings = pd.read_csv(f"{sys.argv[1]}/ml-100k/u.data", sep="\t", names=["user", "item", "rating", "time"])
ratings[["user", "item"]].to_csv(f"{sys.argv[2]}/known.csv", index=False)  # for the check below
PY
for m in ease lightgcn sasrec; do
  case $m in ease) C=configs/ease_ml100k.json; N=EASE_ml-100k;; lightgcn) C=configs/lightgcn_ml100k.json; N=LightGCN_ml-100k;; sasrec) C=configs/sasrec_ml100k.json; N=SASRec_ml-100k;; esac
  extra=""; [ $m = sasrec ] && extra="$SPLIT"
  python train.py -c $C $D $extra --run-id blend-valid-$STAMP > $O/$m-train.log 2>&1
  python test.py -r saved/models/$N/blend-valid-$STAMP/model_best.pth --split valid --scores-out $O/${m}_valid.npz --n 100 > $O/$m-sv.log 2>&1
  python test.py -r saved/models/$N/blend-valid-$STAMP/model_best.pth --split test --scores-out $O/${m}_test.npz --n 100 > $O/$m-st.log 2>&1
  python train.py -c $C $D $extra --set evaluation.split=none --epochs best-of saved/models/$N/blend-valid-$STAMP --run-id blend-all-$STAMP > $O/$m-all.log 2>&1
  python test.py -r saved/models/$N/blend-all-$STAMP/model_best.pth --scores-out $O/${m}_all.npz --n 100 > $O/$m-sa.log 2>&1
done
python scripts/blend.py --valid $O/ease_valid.npz $O/lightgcn_valid.npz $O/sasrec_valid.npz \
  --test $O/ease_test.npz $O/lightgcn_test.npz $O/sasrec_test.npz \
  --submission $O/ease_all.npz $O/lightgcn_all.npz $O/sasrec_all.npz --out $O/submission.csv \
  --metric recall --k 20 > $O/blend.log 2>&1
python scripts/competition.py check $O/submission.csv --data $O/known.csv --k 20 >> $O/blend.log 2>&1
grep -v "^weights" $O/blend.log
