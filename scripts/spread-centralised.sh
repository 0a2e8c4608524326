#!/usr/bin/env bash
# MASAC with centralised critics (the global state and the joint action) against independent SAC
# learners (each critic sees its own agent only) on spread, 3 agents, same budget, over seeds.
# Usage: scripts/spread-centralised.sh [STEPS] [SEEDS...]   (defaults: 20000 steps, seeds 0 1 2)
# RRL=path uses that binary; OUT_DIR the runs' folder; OPTIONS more options for every run (for example
# OPTIONS="--envs 8 --critic-interval 8": eight copies and one update per eight steps, the longer budget's setting);
# CRITICS the critic inputs compared (default "globalState independent"; also agentSpecific, jointObservation).
set -euo pipefail
steps=${1:-20000}
shift || true
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/spread-centralised}
rrl=${RRL:-.build/release/rrl}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
for seed in $seeds; do
  for critics in ${CRITICS:-globalState independent}; do
    # shellcheck disable=SC2086
    $rrl train masac --env spread --critic-input $critics --steps "$steps" --eval-interval $((steps / 8)) --eval-episodes 20 \
      ${OPTIONS:-} --seed "$seed" --run-dir "$out/$critics-seed$seed" --overwrite --quiet > /dev/null
  done
done
printf "%-14s %s\n" critics "final evaluation return per seed (mean); the return is the sum over the 3 agents"
for critics in ${CRITICS:-globalState independent}; do
  finals=$(for seed in $seeds; do tail -n 1 "$out/$critics-seed$seed/metrics.csv" | cut -d, -f4; done | tr '\n' ' ')
  printf "%-14s %s(%s)\n" "$critics" "$finals" "$(echo "$finals" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }')"
done
