#!/usr/bin/env bash
# The founding question on a task built for it: MASAC with recurrent actors on team-recall (each
# agent must name, after a delay, the private cue it saw at the first step; episodes of delay + 2
# steps; memoryless ceiling 1/cues), trained with each hidden-state strategy of the sampler, over
# seeds; then one HTML report (curves and a table) and a plain table of final returns.
# Windows are shorter than an episode and start anywhere in it, so a strategy has to carry the cue
# into the window: only stored states (or whole episodes) can.
# Usage: scripts/masac-strategies.sh [STEPS] [SEEDS...]   (defaults: 8000 steps, seeds 0 1 2)
set -euo pipefail
steps=${1:-8000}
shift || true
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/masac-strategies}
# RRL=path uses that binary (for example a copy, while the package is rebuilt); else this package's.
rrl=${RRL:-.build/release/rrl}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
common=(train masac --env team-recall --env-option delay=5 --steps "$steps" --eval-interval $((steps / 8)) --eval-episodes 20 --quiet --overwrite)
declare -A strategy=(
  [zero-per-transition]="--sequence-length 1 --initial-state zero --no-start-at-episode-start"
  [zero-windows]="--sequence-length 4 --initial-state zero --no-start-at-episode-start"
  [zero-burn-in]="--sequence-length 6 --burn-in 2 --initial-state zero --no-start-at-episode-start"
  [stored]="--sequence-length 4 --initial-state stored --no-start-at-episode-start"
  [stored-burn-in]="--sequence-length 6 --burn-in 2 --initial-state stored+burnIn --no-start-at-episode-start"
  [whole-episodes]="--sequence-length full"
)
names=(zero-per-transition zero-windows zero-burn-in stored stored-burn-in whole-episodes)
for seed in $seeds; do
  for name in "${names[@]}"; do
    # shellcheck disable=SC2086
    $rrl "${common[@]}" ${strategy[$name]} --seed "$seed" --run-dir "$out/$name-seed$seed" > /dev/null
  done
done
$rrl report "$out"/*-seed* --output "$out/report.html" --title "MASAC hidden-state strategies on team-recall" > /dev/null
printf "%-22s %s\n" strategy "final evaluation return per seed (mean) [memoryless ceiling 0.25]"
for name in "${names[@]}"; do
  finals=$(for seed in $seeds; do tail -n 1 "$out/$name-seed$seed/metrics.csv" | cut -d, -f4; done | tr '\n' ' ')
  mean=$(echo "$finals" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }')
  printf "%-22s %s(%s)\n" "$name" "$finals" "$mean"
done
echo "report: $out/report.html"
