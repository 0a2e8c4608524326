#!/usr/bin/env bash
# MASAC with centralised critics (the global state and the joint action) against independent SAC
# learners (each critic sees its own agent only) on spread, 3 agents, same budget, over seeds.
# Usage: scripts/spread-centralised.sh [STEPS] [SEEDS...]   (defaults: 20000 steps, seeds 0 1 2)
# RRL=path uses that binary; OUT_DIR the runs' folder; OPTIONS more options for every run (for example
# OPTIONS="--envs 8 --critic-interval 8": eight copies and one update per eight steps, the longer budget's setting;
# options given there override the script's, e.g. --eval-interval; --critic-network mlp gives every arm MLP critics);
# CRITICS the arms compared (default "globalState independent"; also agentSpecific, jointObservation), each a
# critic input, optionally with :currentPolicy for the other agents' actions from their current policies in
# the actor's update (e.g. CRITICS="globalState globalState:currentPolicy independent").
# Then scripts/spread-heuristics.py gives the scale: hand-written teams with and without coordination.
set -euo pipefail
steps=${1:-20000}
shift || true
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/spread-centralised}
rrl=${RRL:-.build/release/rrl}
arms=${CRITICS:-globalState independent}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
for seed in $seeds; do
  for arm in $arms; do
    critics=${arm%%:*}
    other=replay
    [ "$arm" = "$critics" ] || other=${arm#*:}
    # shellcheck disable=SC2086
    $rrl train masac --env spread --critic-input "$critics" --other-actions "$other" --steps "$steps" \
      --eval-interval $((steps / 8)) --eval-episodes 20 ${OPTIONS:-} --seed "$seed" \
      --run-dir "$out/${arm/:/-}-seed$seed" --overwrite --quiet > /dev/null
  done
done
printf "%-26s %s\n" arm "final evaluation return per seed (mean); the return is the sum over the 3 agents"
for arm in $arms; do
  finals=$(for seed in $seeds; do tail -n 1 "$out/${arm/:/-}-seed$seed/metrics.csv" | cut -d, -f4; done | tr '\n' ' ')
  printf "%-26s %s(%s)\n" "$arm" "$finals" "$(echo "$finals" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }')"
done
