#!/usr/bin/env bash
# One process vs `torchrun --nproc-per-node=2` (gloo, CPU) on the same split and seed:
# fit with default settings, sample as many users as the train split, evaluate with EASE.
# Usage: benchmarks/ddp_parity.sh [NAME] [SEED]   (NAME-train/holdout.parquet in benchmarks/data)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-ml100k}; SEED=${2:-0}
DATA=benchmarks/data; OUT=benchmarks/results/ddp_parity_${NAME}_s${SEED}
RS=".venv/bin/recsynth"; TORCHRUN=".venv/bin/torchrun"
MINR=(); [ "$NAME" = ml100k ] && MINR=(--min-rating 4)
mkdir -p "$OUT"
USERS=$(.venv/bin/python -c "import polars as pl; print(pl.scan_parquet('$DATA/$NAME-train.parquet').select(pl.first().n_unique()).collect().item())")
for procs in 1 2; do
  start=$(date +%s.%N)
  if [ "$procs" = 1 ]; then
    $RS fit "$DATA/$NAME-train.parquet" --out "$OUT/model$procs" --seed "$SEED" --overwrite -q
  else
    $TORCHRUN --nproc-per-node=2 -m recsynth fit "$DATA/$NAME-train.parquet" \
      --out "$OUT/model$procs" --seed "$SEED" --overwrite -q 2>/dev/null
  fi
  end=$(date +%s.%N)
  $RS sample "$OUT/model$procs" --users "$USERS" --out "$OUT/syn$procs.parquet" --seed "$SEED" \
    --overwrite -q
  $RS evaluate --train "$DATA/$NAME-train.parquet" --holdout "$DATA/$NAME-holdout.parquet" \
    --synthetic "$OUT/syn$procs.parquet" "${MINR[@]}" --recommenders ease --k 10 \
    --out "$OUT/eval$procs.json" --overwrite -q
  .venv/bin/python - "$OUT/eval$procs.json" "$OUT/model$procs/manifest.json" "$procs" \
    "$start" "$end" <<'PY'
import json, sys
ev, man = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
tstr = ev["utility"]["ease"]["ratio"]["ndcg@10"]
p = ev["privacy"]
print(json.dumps({"processes": int(sys.argv[3]), "fit_s": round(float(sys.argv[5]) - float(sys.argv[4]), 1),
                  "train_s": man["timings_s"]["train"], "best_epoch": man["best_epoch"],
                  "tstr_ease_ndcg10": round(tstr, 3), "mia_auc": round(p["mia_auc"], 3),
                  "dcr_share": round(p["dcr_share"], 3)}))
PY
done | tee "$OUT/summary.jsonl"
