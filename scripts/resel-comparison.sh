#!/usr/bin/env bash
# RESeL's recipe against the MLP agent and the recurrent SAC recipe on one task, same budget, over
# seeds: three `rrl sweep`s and one report over all their runs.
# Usage: scripts/resel-comparison.sh ENV STEPS [AGENTS]   (seeds 0 1 2; AGENTS from "resel-quarter
# resel mlp gru", default "resel-quarter mlp gru")
#   resel-quarter: `--preset resel` at a quarter of its widths (GRU 64, dense 64 before it and 32
#     after, embeddings and projection 32, heads [64, 64]) and batches of about 1000 valid steps
#     (5 rows; rows of 500 steps and more: 2), through a config file over the preset;
#   resel: `--preset resel` as it is (GRU 256, about 2000 valid steps per batch: hours per run here);
#   mlp: `rrl train sac --env ENV` (MLP 64x64, batch 100, single transitions);
#   gru: `rrl train sac --env ENV --network gru` (the recurrent recipe: GRU 32, windows of 48 from
#     stored states after 16 of burn-in).
# RRL=path uses that binary; OUT_DIR the sweeps' folder (default runs/resel-ENV); SEEDS the seeds;
# JOBS runs at a time (default: the CPUs).
set -euo pipefail
env=${1:?usage: scripts/resel-comparison.sh ENV STEPS [AGENTS]}
steps=${2:?usage: scripts/resel-comparison.sh ENV STEPS [AGENTS]}
agents=${3:-resel-quarter mlp gru}
out=${OUT_DIR:-runs/resel-$env}
rrl=${RRL:-.build/release/rrl}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
mkdir -p "$out"
cat > "$out/resel-quarter.json" <<'JSON'
{"agent": {"contextEncoder": {"after": 32, "before": [64], "inputEmbedding": 32, "projection": 32},
 "headHiddenSizes": [64, 64], "hiddenSize": 64, "batchSize": 5}}
JSON
runs=()
for agent in $agents; do
  case $agent in
    resel-quarter) options=(--preset resel --config "$out/resel-quarter.json")
      # Rows as long as the episodes: keep a batch near 1000 valid steps when they are long.
      case $env in cartpole*) options+=(--batch-size 2) ;; esac ;;
    resel) options=(--preset resel) ;;
    mlp) options=() ;;
    gru) options=(--network gru) ;;
    *) echo "unknown agent '$agent' (resel-quarter, resel, mlp or gru)" >&2; exit 64 ;;
  esac
  # shellcheck disable=SC2086
  $rrl sweep --seeds ${SEEDS:-0 1 2} ${JOBS:+--jobs $JOBS} --output "$out/$agent" -- \
    sac "${options[@]}" --env "$env" --steps "$steps" --eval-interval 2000 | sed -n "s/^  /$agent: /p" | grep -v "done:" || true
  for seed in ${SEEDS:-0 1 2}; do runs+=("$out/$agent/seed$seed"); done
done
$rrl report "${runs[@]}" --output "$out/report.html" --title "RESeL on $env, $steps steps"
