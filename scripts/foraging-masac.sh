#!/usr/bin/env bash
# MASAC on level-based foraging (8x8, 2 players, 2 foods, lbforaging's Foraging-8x8-2p-2f-v3; the
# sight-2 variant with ENV=foraging-2s-8x8-2p-2f), over seeds: recurrent actors (GRU 32) on whole
# 50-step episodes, α from 0.01, 8 copies with one update per 8 environment steps, evaluated every
# 20k steps on 20 deterministic episodes. Prints each seed's evaluation curve, and the first step
# at which the evaluation return reached 0.9.
# Usage: scripts/foraging-masac.sh [STEPS] [SEEDS...]   (defaults: 2000000 steps, seeds 0 1 2)
# RRL=path uses that binary; OUT_DIR the runs' folder; ENV the environment; OPTIONS more options.
set -euo pipefail
steps=${1:-2000000}
shift || true
seeds=${*:-0 1 2}
env=${ENV:-foraging}
out=${OUT_DIR:-runs/foraging-masac}
rrl=${RRL:-.build/release/rrl}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
for seed in $seeds; do
  # shellcheck disable=SC2086
  $rrl train masac --env "$env" --steps "$steps" --envs 8 --critic-interval 8 --eval-interval 20000 --eval-episodes 20 \
    ${OPTIONS:-} --seed "$seed" --run-dir "$out/seed$seed" --overwrite --quiet > /dev/null &
done
wait
for seed in $seeds; do
  echo "seed $seed (step: evaluation return):"
  awk -F, 'NR > 1 { printf "%s:%.2f ", $1, $4; if (!hit && $4 >= 0.9) hit = $1 } END { print ""; print "  first at 0.9 or above: " (hit ? "step " hit : "never") }' "$out/seed$seed/metrics.csv"
done
