#!/usr/bin/env bash
# Hidden-state refreshing in recurrent PPO, over conditions and seeds: every condition runs with
# refreshing off (sb3-contrib's behaviour), on (states, values and advantages recomputed at each
# epoch start), and on for the states only (--no-refresh-advantages). Prints per condition and mode
# the mean final evaluation and the mean of the last three evaluations over seeds (with their
# spread), the mean epochs run per update (KL early stopping ends them sooner), and the approximate
# KL of each update to the collecting policy measured with the collected (stale) states and with
# states recomputed by the updated actor (refreshed: the true one), averaged over updates.
# Usage: scripts/refresh-study.sh CONDITIONS_FILE [SEEDS...]   (default seeds 0 1 2)
#   CONDITIONS_FILE: lines "name|rrl train ppo options" ('#' comments), e.g.
#   big-lr|--env goal-cycle --network gru --lr 2e-3 --epochs 16 --target-kl 0.01 --steps 200000
# Environment: OUT_DIR (default runs/refresh-study), MODES (default "off on states"), JOBS (runs at
# once; default 1).
set -euo pipefail
conditions=$1
shift
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/refresh-study}
modes=${MODES:-off on states}
jobs=${JOBS:-1}
list=$(grep -v '^#' "$conditions" | grep -v '^$')
swift build -c release --product rrl > /dev/null
rrl=.build/release/rrl
mkdir -p "$out"
switch() { case $1 in off) echo --no-refresh ;; on) echo --refresh ;; states) echo --refresh --no-refresh-advantages ;; esac; }
while IFS='|' read -r name options; do
  for mode in $modes; do
    for seed in $seeds; do
      echo "$rrl train ppo $options $(switch "$mode") --seed $seed --run-dir $out/$name/$mode-seed$seed --overwrite --quiet > /dev/null"
    done
  done
done <<< "$list" | xargs -P "$jobs" -I{} bash -c '{}'
# Columns: step (1), eval_return_mean (5), kl_stale (11), kl_refreshed (12), epochs (14).
printf "%-24s %-7s %16s %16s %8s %10s %12s\n" condition refresh "final (sd)" "last 3 (sd)" epochs kl_stale kl_refreshed
while IFS='|' read -r name options; do
  for mode in $modes; do
    for seed in $seeds; do
      awk -F, 'NR > 1 { if ($5 != "") { e[++n] = $5 }; s += $11; r += $12; ep += $14; u++ }
        END { l = 0; k = 0; for (i = n; i > n - 3 && i > 0; i--) { l += e[i]; k++ }
              printf "%f %f %f %f %f\n", e[n], l / k, ep / u, s / u, r / u }' "$out/$name/$mode-seed$seed/metrics.csv"
    done | awk -v name="$name" -v mode="$mode" '{ f += $1; ff += $1 * $1; l += $2; ll += $2 * $2; ep += $3; s += $4; r += $5; n++ }
      END { mf = f / n; ml = l / n; vf = ff / n - mf * mf; vl = ll / n - ml * ml; if (vf < 0) vf = 0; if (vl < 0) vl = 0
            printf "%-24s %-7s %8.2f (%5.2f) %8.2f (%5.2f) %8.2f %10.5f %12.5f\n", name, mode, mf, sqrt(vf), ml, sqrt(vl), ep / n, s / n, r / n }'
  done
done <<< "$list"
