#!/usr/bin/env bash
# Recurrent PPO steadiness on cartpole-position: each recipe over several seeds with one evaluation
# protocol (10 deterministic episodes every 10k steps, observation statistics frozen), then per
# recipe the final evaluation of every seed, the lowest evaluation after a seed first reached 500,
# and how many seeds meet the target (final >= 475 and nothing below 400 after the first 500).
# Usage: scripts/ppo-steadiness.sh [RECIPES_FILE] [SEEDS...]
#   RECIPES_FILE: lines "name|rrl train ppo options" ('#' comments); default: the recipes below.
# Environment: STEPS (default 100000), OUT_DIR (default runs/ppo-steadiness), ENV (default
# cartpole-position), JOBS (runs at once; default 1).
set -euo pipefail
recipes=${1:-}
shift || true
seeds=${*:-0 1 2 3 4}
steps=${STEPS:-100000}
out=${OUT_DIR:-runs/ppo-steadiness}
env=${ENV:-cartpole-position}
jobs=${JOBS:-1}
default_recipes='rl-zoo|--preset rl-zoo
default|
slower-encoders|--encoder-lr 3e-4'
if [ -n "$recipes" ]; then list=$(grep -v '^#' "$recipes" | grep -v '^$'); else list=$default_recipes; fi
swift build -c release --product rrl > /dev/null
rrl=.build/release/rrl
mkdir -p "$out"
# One line per run: the command; run them JOBS at a time.
while IFS='|' read -r name options; do
  for seed in $seeds; do
    echo "$rrl train ppo --env $env --steps $steps --eval-interval 10000 --eval-episodes 10 $options --seed $seed --run-dir $out/$name/seed$seed --overwrite --quiet > /dev/null"
  done
done <<< "$list" | xargs -P "$jobs" -I{} bash -c '{}'
# Columns: step (1), eval_return_mean (5).
printf "%-28s %-34s %-34s %s\n" recipe "final evaluation per seed" "lowest after first 500" "seeds on target"
while IFS='|' read -r name options; do
  finals=""; lows=""; ok=0; n=0
  for seed in $seeds; do
    read -r final low < <(awk -F, 'NR > 1 && $5 != "" { if (reached && $5 < low) low = $5
        if ($5 >= 500 && !reached) { reached = 1; low = 500 }; last = $5 }
      END { printf "%.0f %s\n", last, reached ? sprintf("%.0f", low) : "-" }' "$out/$name/seed$seed/metrics.csv")
    finals="$finals $final"; lows="$lows $low"; n=$((n + 1))
    if [ "$final" -ge 475 ] && [ "$low" != "-" ] && [ "$low" -ge 400 ]; then ok=$((ok + 1)); fi
  done
  printf "%-28s %-34s %-34s %d/%d\n" "$name" "$finals" "$lows" "$ok" "$n"
done <<< "$list"
