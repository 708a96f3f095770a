#!/usr/bin/env bash
# The README's evaluate tables: a popularity sampler vs the real data, 80/20 user split.
#   bash benchmarks/popularity_tables.sh [SHARED_DATA_DIR]   (default ../shared/data)
# Writes benchmarks/results/{online_retail,ml100k}_popularity.{json,txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/data}
py=.venv/bin/python
rs=".venv/bin/recsynth"
out=benchmarks/results; work=benchmarks/data
mkdir -p "$out" "$work"

table() {  # name data users-table extra-args...
  local name=$1 data=$2 users=$3; shift 3
  $rs split "$data" --train "$work/$name-train.parquet" --holdout "$work/$name-holdout.parquet" \
      --holdout-frac 0.2 --seed 0 --overwrite >/dev/null
  $py benchmarks/baselines.py "$work/$name-train.parquet" --out "$work/$name-popularity.parquet" \
      --seed 0 --overwrite >/dev/null
  COLUMNS=100 $rs evaluate --train "$work/$name-train.parquet" --holdout "$work/$name-holdout.parquet" \
      --synthetic "$work/$name-popularity.parquet" --users "$users" --seed 0 "$@" \
      --out "$out/${name}_popularity.json" --overwrite 2> >(grep -v '^recsynth: \[' > "$out/${name}_popularity.txt")
}

if [ -f "$shared/online-retail/interactions.parquet" ]; then
  table online_retail "$shared/online-retail/interactions.parquet" "$shared/online-retail/users.parquet"
fi
if $py benchmarks/fetch_ml100k.py "$work/ml100k" >/dev/null; then
  [ -f "$work/ml100k/interactions.parquet" ] && \
    table ml100k "$work/ml100k/interactions.parquet" "$work/ml100k/users.parquet" --min-rating 4
fi
ls "$out"
